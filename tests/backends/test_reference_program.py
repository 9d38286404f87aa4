"""The prepared reference path (Program) gives the bits of the plain per-node path.

Every sample graph and a CNN compiled from float ONNX by sdk.compile_model run three ways:
the plain loop on the NumPy kernels (the specification), the plain loop on the Numba kernels,
and the prepared Program (what Interpreter(fast=True) and Session use by default).
Outputs and intermediate tensors must be identical, dtype included.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdk
from sdk import sample_graphs as sg
from sdk.errors import GraphError, InputError
from sdk.graph.ir import Tensor
from sdk.ops.interpreter import Interpreter
from sdk.ops.program import Program

SAMPLES = {"fc": sg.fc_graph, "conv": sg.conv_graph, "add": sg.add_graph,
           "cnn": lambda: sg.cnn_graph(hw=16, width=8),
           "cnn_wide": lambda: sg.cnn_graph(hw=32, width=16),
           "segmentation": sg.segmentation_graph, "attention": sg.attention_graph,
           "step": sg.step_graph}


def _float_cnn(seed: int = 0) -> onnx.ModelProto:
    """Conv+ReLU → depthwise Conv → Add → MaxPool → 1×1 Conv+Clip → Sigmoid/Concat →
    GlobalAveragePool → Flatten → Gemm; x [1, 3, 12, 12] → y [1, 6]."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []

    def const(shape: tuple[int, ...], scale: float) -> str:
        name = f"w{len(inits)}"
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    mk = helper.make_node
    clip_lo = numpy_helper.from_array(np.float32(0.0), "lo")
    clip_hi = numpy_helper.from_array(np.float32(6.0), "hi")
    nodes = [mk("Conv", ["x", const((8, 3, 3, 3), 0.3), const((8,), 0.1)], ["c1"],
                pads=[1, 1, 1, 1]),
             mk("Relu", ["c1"], ["r1"]),
             mk("Conv", ["r1", const((8, 1, 3, 3), 0.3), const((8,), 0.1)], ["dw"],
                pads=[1, 1, 1, 1], group=8),
             mk("Add", ["r1", "dw"], ["res"]),
             mk("MaxPool", ["res"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             mk("Conv", ["p", const((8, 8, 1, 1), 0.3), const((8,), 0.1)], ["pw"]),
             mk("Clip", ["pw", "lo", "hi"], ["pc"]),
             mk("Sigmoid", ["p"], ["sg"]),
             mk("Concat", ["pc", "sg"], ["cat"], axis=1),
             mk("GlobalAveragePool", ["cat"], ["gap"]),
             mk("Flatten", ["gap"], ["flat"]),
             mk("Gemm", ["flat", const((6, 16), 0.3), const((6,), 0.1)], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "float_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], inits + [clip_lo, clip_hi])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def compiled_cnn() -> sdk.Graph:
    rng = np.random.default_rng(5)
    calib = {"x": rng.normal(0, 1, (24, 1, 3, 12, 12)).astype(np.float32)}
    return sdk.compile_model(_float_cnn(), calib).graph


def _feeds(graph: sdk.Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        if t.dtype == "float32":
            out[name] = rng.normal(0, 1.5, t.shape).astype(np.float32)
        else:
            info = np.iinfo(t.dtype)
            out[name] = rng.integers(info.min, info.max + 1, t.shape).astype(t.dtype)
    return out


def _all_tensors(graph: sdk.Graph) -> list[str]:
    """Every tensor a node produces (intermediates and outputs)."""
    return [o for n in graph.nodes for o in n.outputs if o]


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        assert np.array_equal(got[name], value), name


def _check_graph(graph: sdk.Graph, seeds: range = range(6)) -> Interpreter:
    prepared = Interpreter(graph, fast=True)
    plain_fast = Interpreter(graph, fast=True, prepared=False)
    spec = Interpreter(graph, fast=False)
    every = _all_tensors(graph)
    for seed in seeds:
        feeds = _feeds(graph, seed)
        want = spec.run(feeds)
        _assert_same(prepared.run(feeds), want)
        _assert_same(plain_fast.run(feeds), want)
        _assert_same(prepared.run(feeds, every), spec.run(feeds, every))
    return prepared


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_graph_bits_equal_the_plain_path(name):
    exe = _check_graph(SAMPLES[name]())
    program = next(iter(exe._programs.values()))
    assert program.fast_nodes >= 1  # the prepared kernels really ran


def test_cnn_runs_every_node_prepared():
    graph = sg.cnn_graph(hw=16, width=8)
    program = Program(graph, graph.inputs, graph.outputs)
    assert program.fast_nodes == len(program.nodes) == len(graph.nodes)


def test_compiled_cnn_bits_equal_the_plain_path(compiled_cnn):
    exe = _check_graph(compiled_cnn, range(8))
    ops = {n.op for n in compiled_cnn.nodes}
    assert {"QConv2d", "QAdd", "QuantizeLinear", "DequantizeLinear"} <= ops
    program = exe._programs[(tuple(compiled_cnn.outputs), frozenset(compiled_cnn.inputs))]
    assert program.fast_nodes >= 4


def test_session_default_path_matches_the_numpy_session(compiled_cnn):
    fast, spec = sdk.Session(compiled_cnn), sdk.Session(compiled_cnn, fast=False)
    assert fast._exe.prepared and not spec._exe.prepared
    inner = [n.outputs[0] for n in compiled_cnn.nodes if n.op == "QConv2d"]
    for seed in range(4):
        feeds = _feeds(compiled_cnn, seed)
        _assert_same(fast.run(feeds), spec.run(feeds))
        wanted = inner + fast.output_names
        _assert_same(fast.run(wanted, feeds), spec.run(wanted, feeds))


def test_integer_io_session_matches_the_numpy_session(compiled_cnn):
    fast = sdk.Session(compiled_cnn, integer_io=True)
    spec = sdk.Session(compiled_cnn, integer_io=True, fast=False)
    info = fast.inputs[0]
    assert info.dtype == "int8"
    rng = np.random.default_rng(3)
    for _ in range(4):
        x = rng.integers(-128, 128, info.shape).astype(np.int8)
        _assert_same(fast.run({info.name: x}), spec.run({info.name: x}))


def test_other_shape_or_dtype_than_declared_falls_back_and_keeps_the_bits():
    graph = sg.fc_graph(batch=4, k=32, n=16)
    prepared, spec = Interpreter(graph), Interpreter(graph, fast=False)
    x = np.random.default_rng(0).integers(-128, 128, (7, 32)).astype(np.int8)
    name = graph.inputs[0]
    _assert_same(prepared.run({name: x}), spec.run({name: x}))
    wide = np.random.default_rng(1).integers(-30000, 30000, (4, 32)).astype(np.int16)
    _assert_same(prepared.run({name: wide}), spec.run({name: wide}))  # not the declared int8
    step = sg.step_graph()  # FC then QAdd: both see 3 rows where the graph declares 1
    prepared, spec = Interpreter(step), Interpreter(step, fast=False)
    feeds = {k: np.concatenate([v] * 3) for k, v in _feeds(step, 2).items()}
    _assert_same(prepared.run(feeds), spec.run(feeds))


def test_kernel_failure_names_the_node():
    graph = sdk.Graph("bad_reshape")
    graph.add_tensor(Tensor("x", "int8", (2, 3)))
    graph.add_constant("shape", np.array([5], np.int64))
    graph.add_tensor(Tensor("y", "int8", (5,)))
    graph.add_node("Reshape", ["x", "shape"], ["y"], name="r")
    graph.inputs, graph.outputs = ["x"], ["y"]
    feeds = {"x": np.zeros((2, 3), np.int8)}
    for exe in (Interpreter(graph), Interpreter(graph, prepared=False)):
        with pytest.raises(GraphError, match=r"node 'r' \(Reshape\) failed on input shapes"):
            exe.run(feeds)


def test_sdk_errors_pass_through_unchanged():
    graph = sg.cnn_graph(hw=16, width=8)
    bad = {graph.inputs[0]: np.zeros((1, 3, 16), np.int8)}
    for exe in (Interpreter(graph), Interpreter(graph, prepared=False)):
        with pytest.raises(InputError, match=r"Conv2d needs x \[N,C,H,W\]"):
            exe.run(bad)


def test_unknown_output_and_unfed_input_are_clear_errors():
    graph = sg.step_graph()
    exe = Interpreter(graph)
    feeds = _feeds(graph, 0)
    with pytest.raises(GraphError, match="no tensor named 'nope'"):
        exe.run(feeds, ["nope"])
    partial = dict(list(feeds.items())[:1])
    with pytest.raises(GraphError, match="neither fed, constant nor produced"):
        exe.run(partial)


def test_intermediates_are_freed_but_reads_are_kept():
    graph = sg.cnn_graph(hw=16, width=8)
    feeds = _feeds(graph, 1)
    program = Program(graph, graph.inputs, ["dw", "logits"])
    freed = {k for step in program._steps for k in step[3]}
    assert freed and set(program._read_slots).isdisjoint(freed)
    got = dict(zip(program.reads, program.run(feeds)))
    _assert_same(got, Interpreter(graph, fast=False).run(feeds, ["dw", "logits"]))
