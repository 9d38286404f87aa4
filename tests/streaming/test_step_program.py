"""A Program on the Numba kernels (the prepared streaming executor) gives the interpreter's
NumPy bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from step_graphs import calibration, frames, recurrent_step

import sdk
from sdk.ops.interpreter import Interpreter
from sdk.ops.program import Program

ROOT = Path(__file__).resolve().parents[2]
KWS_ONNX = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.onnx"


def _raw_io(graph: sdk.Graph) -> tuple[list[str], list[str]]:
    """The integer tensors behind the QuantizeLinear inputs and DequantizeLinear outputs."""
    cons, prods = graph.consumers(), graph.producers()
    fed = [cons[i][0].outputs[0] if cons.get(i) and cons[i][0].op == "QuantizeLinear" else i
           for i in graph.inputs]
    reads = [prods[o].inputs[0] if prods[o].op == "DequantizeLinear" else o
             for o in graph.outputs]
    return fed, reads


def _random_feeds(graph: sdk.Graph, fed: list[str], rng: np.random.Generator) -> dict:
    out = {}
    for name in fed:
        t = graph.tensor(name)
        info = np.iinfo(t.dtype)
        out[name] = rng.integers(info.min, info.max + 1, size=t.shape).astype(t.dtype)
    return out


def _compare(graph: sdk.Graph, trials: int = 40) -> Program:
    fed, reads = _raw_io(graph)
    program = Program(graph, fed, reads, fast=True)
    spec = Interpreter(graph, fast=False)
    rng = np.random.default_rng(0)
    for _ in range(trials):
        feeds = _random_feeds(graph, fed, rng)
        want = spec.run(feeds, reads)
        got = program.run(feeds)
        for r, g in zip(reads, got):
            assert g.dtype == want[r].dtype, r
            assert np.array_equal(g, want[r]), r
    return program


def test_recurrent_step_bits_equal_the_numpy_reference(tmp_path):
    path = tmp_path / "rs.onnx"
    onnx.save(recurrent_step(0), path)
    graph = sdk.compile_model(path, calibration(0)).graph
    program = _compare(graph)
    assert program.fast_nodes >= 6  # FC, adds, concat, slice on the fast path
    assert {n.op for n in program.nodes} >= {"QFullyConnected", "QAdd", "QLut", "Slice"}


@pytest.mark.skipif(not KWS_ONNX.is_file(), reason="trained keyword model not committed yet")
def test_keyword_step_bits_equal_the_numpy_reference():
    fs = sdk.StreamingSession(KWS_ONNX)
    xs = (np.random.default_rng(1).normal(8, 3, (150, 1, 40))).astype(np.float32)
    graph = sdk.compile_model(KWS_ONNX, fs.record_feeds(xs)).graph
    program = _compare(graph, trials=25)
    assert program.fast_nodes == len(program.nodes)  # every node of this graph is fast


def test_broadcast_and_unusual_nodes_fall_back_to_the_registry():
    """A dynamic operand broadcast against another and a negative-step Slice take the
    registry path and still give the reference bits."""
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(np.array([3], np.int64), "s"),
             numpy_helper.from_array(np.array([-100], np.int64), "e"),
             numpy_helper.from_array(np.array([1], np.int64), "ax"),
             numpy_helper.from_array(np.array([-1], np.int64), "st")]
    nodes = [helper.make_node("Add", ["a", "b"], ["y"]),
             helper.make_node("Slice", ["y", "s", "e", "ax", "st"], ["z"])]
    g = helper.make_graph(nodes, "bc", [vi("a", TensorProto.FLOAT, [2, 4]),
                                        vi("b", TensorProto.FLOAT, [1, 4])],
                          [vi("z", TensorProto.FLOAT, [2, 4])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    rng = np.random.default_rng(2)
    calib = {"a": rng.normal(size=(32, 2, 4)).astype(np.float32),
             "b": rng.normal(size=(32, 1, 4)).astype(np.float32)}
    graph = sdk.compile_model(model, calib).graph
    program = _compare(graph)
    assert program.fast_nodes == 0


def test_streaming_session_uses_it_and_keeps_the_bits(tmp_path):
    path = tmp_path / "rs.onnx"
    onnx.save(recurrent_step(0), path)
    bundle = sdk.compile_model(path, calibration(0))
    fast = sdk.StreamingSession(bundle, fast=True)
    spec = sdk.StreamingSession(bundle, fast=False)
    xs = frames(80, 9)
    assert np.array_equal(fast.steps(xs)["y"], spec.steps(xs)["y"])
