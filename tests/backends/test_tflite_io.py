"""The .tflite writer and reader: round trip, alignment, a foreign model, bad files."""

from __future__ import annotations

import foreign_tflite
import numpy as np
import pytest
import tflite

from sdk.backends import sample_graphs as sg
from sdk.compile.tflite_writer import write_tflite
from sdk.errors import ModelFormatError, UnsupportedOpError
from sdk.frontends.tflite_import import read_tflite
from sdk.ops.interpreter import run_graph

GRAPHS = {"fc": sg.fc_graph, "conv": sg.conv_graph, "add": sg.add_graph, "cnn": sg.cnn_graph,
          "step": sg.step_graph, "segmentation": sg.segmentation_graph}


def _same_graph(a, b) -> None:
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert [n.op for n in a.nodes] == [n.op for n in b.nodes]
    for x, y in zip(a.nodes, b.nodes):
        assert x.inputs == y.inputs and x.outputs == y.outputs, x.name
        assert set(x.attrs) == set(y.attrs), x.name
        for k in x.attrs:
            assert np.array_equal(np.asarray(x.attrs[k]), np.asarray(y.attrs[k])), (x.name, k)
    for name, t in a.tensors.items():
        u = b.tensor(name)
        assert (t.dtype, t.shape, t.quant) == (u.dtype, u.shape, u.quant), name
        if t.is_constant:
            assert np.array_equal(t.data, u.data), name


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_ir_to_tflite_to_ir_is_the_same_graph(name: str) -> None:
    graph = GRAPHS[name]()
    back = read_tflite(write_tflite(graph).data, graph.name)
    _same_graph(graph, back)
    feeds = sg.random_feeds(graph, seed=1)
    want, got = run_graph(graph, feeds, fast=False), run_graph(back, feeds, fast=False)
    for o in graph.outputs:
        assert np.array_equal(want[o], got[o])


def test_buffer_data_is_16_byte_aligned() -> None:
    data = write_tflite(sg.cnn_graph()).data
    model = tflite.Model.GetRootAs(data, 0)
    checked = 0
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            tab = buf._tab
            start = tab.Vector(tab.Offset(4))
            assert start % 16 == 0, f"buffer {i} data at offset {start}"
            checked += 1
    assert checked >= 10  # weights, biases, shapes, perms


def test_writer_refuses_what_tflite_cannot_compute_exactly() -> None:
    graph = sg.fc_graph()
    graph.nodes[0].attrs["m0"] = np.asarray(graph.nodes[0].attrs["m0"]) + 1
    with pytest.raises(UnsupportedOpError, match="multiplier"):
        write_tflite(graph)


def test_model_from_another_writer_imports_and_runs() -> None:
    """Converter layout: NHWC float input, QUANTIZE, SAME pads, RELU6 fused, per-tensor FC."""
    data = foreign_tflite.build()
    graph = read_tflite(data, "converted")
    assert [n.op for n in graph.nodes] == ["QuantizeLinear", "QConv2d", "QDepthwiseConv2d",
                                           "QAvgPool2d", "Transpose", "Reshape",
                                           "QFullyConnected", "DequantizeLinear"]
    assert graph.tensor(graph.inputs[0]).shape == (1, 3, 8, 8)  # NHWC -> NCHW
    x = np.random.default_rng(0).uniform(-3, 3, (1, 8, 8, 3)).astype(np.float32)
    ours = run_graph(graph, {graph.inputs[0]: x.transpose(0, 3, 1, 2).copy()}, fast=False)
    y = ours[graph.outputs[0]]
    from sdk.backends.litert.runtime import interpreter_module

    mod = interpreter_module()
    it = mod.Interpreter(model_content=data,
                         experimental_op_resolver_type=mod.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    theirs = it.get_tensor(it.get_output_details()[0]["index"])
    # float outputs are (q - zp)·scale; LiteRT's single rounding may move q by 1 step
    out_scale = float(graph.tensor(graph.nodes[-1].inputs[0]).quant.scale)
    assert np.abs(theirs - y).max() <= out_scale * 1.0001
    pytest.importorskip("tflite_micro", reason="tflite-micro not installed")
    import pathlib
    import tempfile

    import tflite_micro

    with tempfile.TemporaryDirectory() as tmp:
        p = pathlib.Path(tmp) / "m.tflite"
        p.write_bytes(data)
        micro = tflite_micro.runtime.Interpreter.from_file(str(p))
        micro.set_input(x, 0)
        micro.invoke()
        assert np.array_equal(micro.get_output(0), y)  # TFLite Micro: same bits


def test_truncated_file_is_a_clear_error(tmp_path) -> None:
    data = write_tflite(sg.fc_graph()).data
    with pytest.raises(ModelFormatError, match="truncated or corrupted"):
        read_tflite(data[: len(data) // 3])
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFormatError, match="not a .tflite"):
        read_tflite(bad)


def test_unsupported_ops_are_listed_by_name() -> None:
    data = bytearray(write_tflite(sg.fc_graph()).data)
    model = tflite.Model.GetRootAs(bytes(data), 0)
    code = model.OperatorCodes(0)
    # rewrite FULLY_CONNECTED (9) into SVDF (27) in place: both fields are scalars
    pos = code._tab.Pos + code._tab.Offset(10)  # builtin_code field
    assert int.from_bytes(data[pos:pos + 4], "little") == 9
    data[pos:pos + 4] = (27).to_bytes(4, "little")
    pos = code._tab.Pos + code._tab.Offset(4)  # deprecated_builtin_code
    data[pos] = 27
    with pytest.raises(UnsupportedOpError, match="SVDF"):
        read_tflite(bytes(data))


def test_converted_classifier_with_logistic_mean_softmax_imports() -> None:
    """LOGISTIC → table, MEAN over H,W → QGlobalAvgPool, SOFTMAX → float island.

    These three are not defined bit-for-bit across TFLite kernels (LiteRT builds float tables,
    TFLite Micro has its own exp), so the check is 1 LSB of the 1/256 probability scale."""
    import tempfile
    from pathlib import Path

    pytest.importorskip("tflite_micro", reason="tflite-micro not installed")
    import tflite_micro

    from sdk.backends.litert.runtime import interpreter_module

    data = foreign_tflite.build(head="classifier")
    graph = read_tflite(data, "classifier")
    ops = [n.op for n in graph.nodes]
    assert {"QLut", "QGlobalAvgPool", "Softmax"} <= set(ops)
    mod = interpreter_module()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cls.tflite"
        path.write_bytes(data)
        for seed in range(3):
            x = np.random.default_rng(seed).uniform(-3, 3, (1, 8, 8, 3)).astype(np.float32)
            ours = run_graph(graph, {graph.inputs[0]: x.transpose(0, 3, 1, 2).copy()},
                             fast=False)[graph.outputs[0]]
            micro = tflite_micro.runtime.Interpreter.from_file(str(path))
            micro.set_input(x, 0)
            micro.invoke()
            it = mod.Interpreter(model_content=data,
                                 experimental_op_resolver_type=mod.OpResolverType.BUILTIN_REF)
            it.allocate_tensors()
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            lite = it.get_tensor(it.get_output_details()[0]["index"])
            for theirs in (micro.get_output(0), lite):
                assert np.abs(theirs - ours).max() <= 1 / 256 + 1e-7
