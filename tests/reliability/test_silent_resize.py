"""Resize(mode=linear) compiles to the integer ResizeBilinear (was silently nearest), and every
Resize attribute the integer ops do not compute is refused by name."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.errors import UnsupportedOpError
from sdk.frontends.onnx_import import load_onnx
from sdk.quant import quantize
from sdk.quant.trace import trace


def _model(seed=0, **resize_attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 4, 3, 3)) / 6).astype(np.float32)
    w2 = (rng.standard_normal((4, 8, 1, 1)) / 3).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Resize", ["r", "", "scales"], ["u"], name="up", **resize_attrs),
             helper.make_node("Conv", ["u", "w2"], ["y"])]
    g = helper.make_graph(nodes, "bilinear_up",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _cos(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("coord", ["half_pixel", "asymmetric", "align_corners",
                                   "pytorch_half_pixel"])
def test_bilinear_upsample_matches_float_ort(coord):
    m = _model(mode="linear", coordinate_transformation_mode=coord)
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((32, 1, 4, 8, 8)).astype(np.float32)
    test = rng.standard_normal((8, 1, 4, 8, 8)).astype(np.float32)
    ig = quantize(load_onnx(m), {"x": calib})
    ops = [n.op for n in ig.nodes]
    assert "ResizeBilinear" in ops and "ResizeNearest" not in ops
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    f = np.stack([sess.run(None, {"x": x})[0] for x in test])
    q = np.stack([trace(ig, {"x": x})["y"] for x in test])
    assert _cos(f, q) >= 0.999, _cos(f, q)   # nearest gave ~0.4 on a MobileNet-style model


@pytest.mark.parametrize("attrs, named", [
    ({"mode": "cubic"}, "mode=cubic"),
    ({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
     "tf_crop_and_resize"),
    ({"mode": "linear", "exclude_outside": 1}, "exclude_outside"),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "ceil"},
     "nearest_mode=ceil"),
])
def test_unimplemented_resize_refused_by_name(attrs, named):
    m = _model(**attrs)
    calib = np.random.default_rng(0).standard_normal((4, 1, 4, 8, 8)).astype(np.float32)
    with pytest.raises(UnsupportedOpError, match=named) as e:
        quantize(load_onnx(m), {"x": calib})
    assert "\n" not in str(e.value)


def test_nearest_equivalent_to_floor_still_compiles():
    m = _model(mode="nearest")  # half_pixel + round_prefer_floor at 2x == floor(i/2)
    calib = np.random.default_rng(0).standard_normal((4, 1, 4, 8, 8)).astype(np.float32)
    ig = quantize(load_onnx(m), {"x": calib})
    assert "ResizeNearest" in [n.op for n in ig.nodes]
