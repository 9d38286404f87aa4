"""Session on integer graphs: float in/out through the boundary by default, raw integers with
``integer_io=True``."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.graph import Graph, QuantParams, Tensor
from sdk.runtime import Session

SCALE_IN, ZP_IN = 0.05, 3


def _boundary_graph() -> Graph:
    """x float → QuantizeLinear → int8 ReLU (QClamp at the zero point) → Transpose →
    DequantizeLinear → y float: the shape sdk.quant gives compiled graphs."""
    qp = QuantParams(np.float32(SCALE_IN), np.int32(ZP_IN))
    g = Graph("int_relu")
    g.add_tensor(Tensor("x", "float32", (2, 3)))
    g.add_tensor(Tensor("xq", "int8", (2, 3), qp))
    g.add_tensor(Tensor("rq", "int8", (2, 3), qp))
    g.add_tensor(Tensor("tq", "int8", (3, 2), qp))
    g.add_tensor(Tensor("y", "float32", (3, 2)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_node("QuantizeLinear", ["x"], ["xq"], scale=SCALE_IN, zero_point=ZP_IN, dtype="int8")
    g.add_node("QClamp", ["xq"], ["rq"], min=ZP_IN, max=127)
    g.add_node("Transpose", ["rq"], ["tq"], perm=[1, 0])
    g.add_node("DequantizeLinear", ["tq"], ["y"], scale=SCALE_IN, zero_point=ZP_IN)
    return g


def _expected_float(x: np.ndarray) -> np.ndarray:
    q = np.clip(np.rint(x / np.float32(SCALE_IN)) + ZP_IN, -128, 127)
    q = np.maximum(q, ZP_IN)
    return ((q - ZP_IN) * np.float32(SCALE_IN)).astype(np.float32).T


X = np.array([[-1.0, -0.02, 0.0], [0.04, 0.5, 7.0]], np.float32)


@pytest.mark.parametrize("fast", [True, False])
def test_float_in_float_out_by_default(fast):
    sess = Session(_boundary_graph(), fast=fast)
    assert sess.inputs[0].dtype == "float32" and sess.outputs[0].dtype == "float32"
    np.testing.assert_array_equal(sess.run(None, {"x": X})["y"], _expected_float(X))


def test_integer_io_takes_and_returns_raw_int8():
    sess = Session(_boundary_graph(), integer_io=True)
    info = sess.inputs[0]
    assert info.name == "x" and info.dtype == "int8"
    assert float(info.quant.scale) == pytest.approx(SCALE_IN) and int(info.quant.zero_point) == 3
    q = np.array([[-128, 0, 3], [4, 13, 127]], np.int8)
    out = sess.run(None, {"x": q})["y"]
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, np.maximum(q, 3).T)


def test_integer_io_rejects_float_feeds():
    sess = Session(_boundary_graph(), integer_io=True)
    with pytest.raises(InputError, match="input 'x': expected dtype int8, given float32"):
        sess.run(None, {"x": X})


def test_graph_with_quantized_integer_inputs_quantizes_float_feeds():
    """A graph without boundary nodes, whose input and output are quantized int8 tensors."""
    qp = QuantParams(np.float32(0.1), np.int32(-2))
    g = Graph("layout_only")
    g.add_tensor(Tensor("a", "int8", (2, 2), qp))
    g.add_tensor(Tensor("b", "int8", (4,), qp))
    g.add_constant("shape", np.array([4], np.int64))
    g.inputs, g.outputs = ["a"], ["b"]
    g.add_node("Reshape", ["a", "shape"], ["b"])
    x = np.array([[0.1, -0.3], [1.04, 50.0]], np.float32)
    out = Session(g).run(None, {"a": x})["b"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.1, -0.3, 1.0, 12.9], atol=1e-6)  # 50.0 saturates at 127
    raw = Session(g, integer_io=True).run(None, {"a": np.array([[1, 2], [3, 4]], np.int8)})["b"]
    np.testing.assert_array_equal(raw, np.array([1, 2, 3, 4], np.int8))


def test_compiled_bundle_integer_io_agrees_with_its_float_boundary(tmp_path):
    """A real compiled model (sdk.compile_model on a generated CNN), saved and reopened:
    dequantizing the raw integer output gives exactly the float-out session's output."""
    import onnx

    import sdk
    from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
    from sdk.kernels.quantize import quantize_linear

    onnx_path = tmp_path / "cnn.onnx"
    onnx.save(build_demo_cnn(), onnx_path)
    bundle = sdk.compile_model(onnx_path, {"x": synthetic_images(16, seed=1)})
    bundle.save(tmp_path / "cnn.edge")
    float_sess = Session(tmp_path / "cnn.edge")
    int_sess = Session(tmp_path / "cnn.edge", integer_io=True)
    x = synthetic_images(1, seed=3)[0]
    q_in = int_sess.inputs[0].quant
    xq = quantize_linear(x, q_in.scale, q_in.zero_point, int_sess.inputs[0].dtype)
    name = float_sess.output_names[0]
    raw = int_sess.run(None, {"x": xq})[name]
    q_out = int_sess.outputs[0].quant
    assert raw.dtype.kind == "i"
    dequantized = (raw.astype(np.float32) - q_out.zero_point) * q_out.scale
    np.testing.assert_allclose(float_sess.run(None, {"x": x})[name], dequantized, rtol=1e-6)
