"""Every ONNX operator the importer accepts, one small graph each, against ONNX Runtime.

Float outputs must agree within 1e-4 relative error (max|diff| / max|ort|); integer and
boolean outputs exactly. The shapes inferred at import must equal the shapes ORT produced.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from frontends_oracle import ort_run, random_feed, relative_error, single_op_model

from sdk.frontends import load_onnx, supported_onnx_ops
from sdk.runtime import Session

F, I64 = "float32", "int64"
X4 = [("x", (2, 3, 7, 8), F)]
X2 = [("x", (3, 5), F)]
AB = [("a", (2, 3, 4), F), ("b", (3, 1), F)]
BOOL2 = [("a", (3, 4), "bool"), ("b", (3, 4), "bool")]
i64 = lambda *v: np.asarray(v, np.int64)
f32 = lambda *v: np.asarray(v, np.float32)
rs = np.random.default_rng(7)


def w(*shape: int) -> np.ndarray:
    return rs.standard_normal(shape).astype(np.float32)


# (case id, op, graph inputs, attrs, initializers, n_outputs, opset)
CASES = [
    ("Abs", "Abs", X2, {}, {}, 1, 17),
    ("Add", "Add", AB, {}, {}, 1, 17),
    ("And", "And", BOOL2, {}, {}, 1, 17),
    ("ArgMax", "ArgMax", X4, {"axis": 1}, {}, 1, 17),
    ("ArgMin_last", "ArgMin", X4, {"axis": -1, "keepdims": 0, "select_last_index": 1}, {}, 1, 17),
    ("AveragePool", "AveragePool", X4, {"kernel_shape": [3, 3], "strides": [2, 2]}, {}, 1, 17),
    ("AveragePool_pad_incl", "AveragePool", X4, {"kernel_shape": [3, 2], "pads": [1, 1, 1, 0],
                                                 "count_include_pad": 1}, {}, 1, 17),
    ("AveragePool_ceil", "AveragePool", X4, {"kernel_shape": [2, 2], "strides": [2, 2],
                                             "ceil_mode": 1, "pads": [1, 0, 0, 0]}, {}, 1, 17),
    ("AveragePool_same", "AveragePool", X4, {"kernel_shape": [3, 3], "strides": [2, 2],
                                             "auto_pad": "SAME_UPPER"}, {}, 1, 17),
    ("BatchNormalization", "BatchNormalization", X4, {"epsilon": 1e-3},
     {"s": w(3), "b": w(3), "m": w(3), "v": np.abs(w(3)) + 0.5}, 1, 15),
    ("Cast", "Cast", X2, {"to": 7}, {}, 1, 17),
    ("Ceil", "Ceil", X2, {}, {}, 1, 17),
    ("Clip", "Clip", X2, {}, {"lo": f32(-0.5), "hi": f32(0.7)}, 1, 13),
    ("Clip_opset9", "Clip", X2, {"min": -0.5, "max": 0.7}, {}, 1, 9),
    ("Concat", "Concat", [("a", (2, 3), F), ("b", (2, 5), F)], {"axis": 1}, {}, 1, 17),
    ("Constant", "Constant", [], {"value": __import__("onnx").numpy_helper.from_array(w(2, 3))},
     {}, 1, 17),
    ("ConstantOfShape", "ConstantOfShape", [], {}, {"shape": i64(2, 3)}, 1, 17),
    ("Conv", "Conv", X4, {"pads": [1, 1, 1, 1]}, {"w": w(4, 3, 3, 3), "b": w(4)}, 1, 17),
    ("Conv_strided_dilated", "Conv", X4, {"strides": [2, 1], "dilations": [1, 2],
                                          "pads": [0, 1, 2, 1]}, {"w": w(5, 3, 3, 2)}, 1, 17),
    ("Conv_grouped", "Conv", [("x", (1, 4, 6, 6), F)], {"group": 2},
     {"w": w(6, 2, 3, 3), "b": w(6)}, 1, 17),
    ("Conv_depthwise", "Conv", [("x", (1, 4, 6, 6), F)], {"group": 4, "pads": [1, 1, 1, 1],
                                                           "strides": [2, 2]},
     {"w": w(4, 1, 3, 3)}, 1, 17),
    ("Conv_same_upper", "Conv", X4, {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
     {"w": w(2, 3, 4, 4)}, 1, 17),
    ("Conv_1d", "Conv", [("x", (2, 3, 11), F)], {"pads": [2, 0]}, {"w": w(4, 3, 3)}, 1, 17),
    ("Cos", "Cos", X2, {}, {}, 1, 17),
    ("DepthToSpace_DCR", "DepthToSpace", [("x", (1, 8, 2, 3), F)], {"blocksize": 2}, {}, 1, 17),
    ("DepthToSpace_CRD", "DepthToSpace", [("x", (1, 8, 2, 3), F)],
     {"blocksize": 2, "mode": "CRD"}, {}, 1, 17),
    ("Div", "Div", AB, {}, {}, 1, 17),
    ("Div_int", "Div", [("a", (3, 4), "int32")], {}, {"b": np.array([3, -2, 4, -5], np.int32)},
     1, 17),
    ("Dropout", "Dropout", X2, {}, {}, 1, 17),
    ("Elu", "Elu", X2, {"alpha": 0.7}, {}, 1, 17),
    ("Equal", "Equal", [("a", (3, 4), "int64"), ("b", (4,), "int64")], {}, {}, 1, 17),
    ("Erf", "Erf", X2, {}, {}, 1, 17),
    ("Exp", "Exp", X2, {}, {}, 1, 17),
    ("Expand", "Expand", [("x", (3, 1), F)], {}, {"shape": i64(2, 1, 4)}, 1, 17),
    ("Flatten", "Flatten", X4, {"axis": 2}, {}, 1, 17),
    ("Floor", "Floor", X2, {}, {}, 1, 17),
    ("Gather", "Gather", X4, {"axis": 1}, {"idx": i64(2, -1, 0)}, 1, 17),
    ("Gelu", "Gelu", X2, {}, {}, 1, 20),
    ("Gelu_tanh", "Gelu", X2, {"approximate": "tanh"}, {}, 1, 20),
    ("Gemm", "Gemm", [("a", (4, 6), F)], {"transB": 1, "alpha": 0.5, "beta": 2.0},
     {"b": w(3, 6), "c": w(3)}, 1, 17),
    ("Gemm_transA", "Gemm", [("a", (6, 4), F)], {"transA": 1}, {"b": w(6, 3)}, 1, 17),
    ("GlobalAveragePool", "GlobalAveragePool", X4, {}, {}, 1, 17),
    ("GlobalMaxPool", "GlobalMaxPool", X4, {}, {}, 1, 17),
    ("Greater", "Greater", AB, {}, {}, 1, 17),
    ("GreaterOrEqual", "GreaterOrEqual", AB, {}, {}, 1, 17),
    ("HardSigmoid", "HardSigmoid", X2, {"alpha": 0.3}, {}, 1, 17),
    ("HardSwish", "HardSwish", X2, {}, {}, 1, 17),
    ("Identity", "Identity", X2, {}, {}, 1, 17),
    ("InstanceNormalization", "InstanceNormalization", X4, {}, {"s": w(3), "b": w(3)}, 1, 17),
    ("LRN", "LRN", [("x", (2, 7, 4, 4), F)], {"size": 5, "alpha": 0.01, "beta": 0.6,
                                              "bias": 1.5}, {}, 1, 17),
    ("LRN_size3", "LRN", [("x", (1, 4, 3, 3), F)], {"size": 3}, {}, 1, 17),
    ("LayerNormalization", "LayerNormalization", [("x", (2, 5, 6), F)], {"epsilon": 1e-3},
     {"s": w(6), "b": w(6)}, 1, 17),
    ("LayerNormalization_axis", "LayerNormalization", [("x", (2, 5, 6), F)], {"axis": 1},
     {"s": w(5, 6)}, 1, 17),
    ("LeakyRelu", "LeakyRelu", X2, {"alpha": 0.2}, {}, 1, 17),
    ("Less", "Less", AB, {}, {}, 1, 17),
    ("LessOrEqual", "LessOrEqual", AB, {}, {}, 1, 17),
    ("Log", "Log", [("x", (3, 5), F)], {}, {}, 1, 17),
    ("LogSoftmax", "LogSoftmax", X4, {"axis": 2}, {}, 1, 17),
    ("MatMul", "MatMul", [("a", (2, 1, 3, 4), F), ("b", (5, 4, 6), F)], {}, {}, 1, 17),
    ("MatMul_vec", "MatMul", [("a", (4,), F), ("b", (2, 4, 3), F)], {}, {}, 1, 17),
    ("Max", "Max", AB, {}, {}, 1, 17),
    ("MaxPool", "MaxPool", X4, {"kernel_shape": [3, 3], "strides": [2, 2],
                                "pads": [1, 1, 1, 1]}, {}, 1, 17),
    ("MaxPool_ceil_dilated", "MaxPool", X4, {"kernel_shape": [2, 2], "strides": [2, 2],
                                             "dilations": [2, 1], "ceil_mode": 1}, {}, 1, 17),
    ("Mean", "Mean", AB, {}, {}, 1, 17),
    ("Min", "Min", AB, {}, {}, 1, 17),
    ("Mod", "Mod", [("a", (3, 4), "int64")], {}, {"b": i64(3, -2, 4, 5)}, 1, 17),
    ("Mod_fmod", "Mod", AB, {"fmod": 1}, {}, 1, 17),
    ("Mul", "Mul", AB, {}, {}, 1, 17),
    ("Neg", "Neg", X2, {}, {}, 1, 17),
    ("Not", "Not", [("a", (3, 4), "bool")], {}, {}, 1, 17),
    ("Or", "Or", BOOL2, {}, {}, 1, 17),
    ("PRelu", "PRelu", X4, {}, {"slope": w(3, 1, 1)}, 1, 17),
    ("Pad", "Pad", X4, {}, {"pads": i64(0, 0, 1, -1, 0, 1, 2, 2), "v": f32(0.5)}, 1, 17),
    ("Pad_reflect", "Pad", X4, {"mode": "reflect"}, {"pads": i64(0, 0, 2, 1, 0, 0, 1, 3)},
     1, 17),
    ("Pad_edge", "Pad", X4, {"mode": "edge"}, {"pads": i64(0, 0, 2, 1, 0, 0, 1, 3)}, 1, 17),
    ("Pad_opset9", "Pad", X4, {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "value": -1.0}, {}, 1, 9),
    ("Pow", "Pow", [("a", (3, 4), F)], {}, {"b": f32(2.0)}, 1, 17),
    ("Range", "Range", [], {}, {"s": np.array(1.0, np.float32), "l": np.array(7.5, np.float32), "d": np.array(1.5, np.float32)}, 1, 17),
    ("Reciprocal", "Reciprocal", X2, {}, {}, 1, 17),
    ("ReduceL2", "ReduceL2", X4, {"keepdims": 0}, {"axes": i64(1, 3)}, 1, 18),
    ("ReduceMax", "ReduceMax", X4, {}, {"axes": i64(-1)}, 1, 18),
    ("ReduceMean", "ReduceMean", X4, {}, {"axes": i64(2, 3)}, 1, 18),
    ("ReduceMean_opset13", "ReduceMean", X4, {"axes": [1], "keepdims": 0}, {}, 1, 13),
    ("ReduceMin", "ReduceMin", X4, {"keepdims": 0}, {}, 1, 18),
    ("ReduceProd", "ReduceProd", X4, {}, {"axes": i64(1)}, 1, 18),
    ("ReduceSum", "ReduceSum", X4, {}, {"axes": i64(0, 2)}, 1, 13),
    ("ReduceSumSquare", "ReduceSumSquare", X4, {}, {"axes": i64(3)}, 1, 18),
    ("Relu", "Relu", X2, {}, {}, 1, 17),
    ("Reshape", "Reshape", X4, {}, {"shape": i64(0, -1, 4)}, 1, 17),
    ("Resize_nearest", "Resize", X4, {"mode": "nearest"},
     {"_roi": None, "scales": f32(1, 1, 2, 1.5)}, 1, 17),
    ("Resize_nearest_asym_floor", "Resize", X4,
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     {"_roi": None, "scales": f32(1, 1, 3, 2)}, 1, 17),
    ("Resize_nearest_sizes_align", "Resize", X4,
     {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
      "nearest_mode": "round_prefer_ceil"},
     {"_roi": None, "_scales": None, "sizes": i64(2, 3, 5, 13)}, 1, 17),
    ("Resize_linear", "Resize", X4, {"mode": "linear"},
     {"_roi": None, "scales": f32(1, 1, 2, 2)}, 1, 17),
    ("Resize_linear_down", "Resize", X4, {"mode": "linear",
                                          "coordinate_transformation_mode": "pytorch_half_pixel"},
     {"_roi": None, "_scales": None, "sizes": i64(2, 3, 4, 3)}, 1, 17),
    ("Round", "Round", [("x", (3, 5), F)], {}, {}, 1, 17),
    ("Shape", "Shape", X4, {}, {}, 1, 17),
    ("Sigmoid", "Sigmoid", X2, {}, {}, 1, 17),
    ("Sign", "Sign", X2, {}, {}, 1, 17),
    ("Sin", "Sin", X2, {}, {}, 1, 17),
    ("Size", "Size", X4, {}, {}, 1, 17),
    ("Slice", "Slice", X4, {}, {"st": i64(1, -2), "en": i64(3, -7), "ax": i64(2, 3),
                                "sp": i64(1, -2)}, 1, 17),
    ("Slice_opset9", "Slice", X4, {"starts": [0, 2], "ends": [1, 100], "axes": [0, 3]}, {}, 1, 9),
    ("Softmax", "Softmax", X4, {"axis": 1}, {}, 1, 13),
    ("Softmax_opset11_coerce2d", "Softmax", X4, {"axis": 2}, {}, 1, 11),
    ("Softplus", "Softplus", X2, {}, {}, 1, 17),
    ("SpaceToDepth", "SpaceToDepth", [("x", (1, 2, 4, 6), F)], {"blocksize": 2}, {}, 1, 17),
    ("Split", "Split", X4, {"axis": 3}, {"split": i64(3, 5)}, 2, 17),
    ("Split_equal_opset11", "Split", X4, {"axis": 3}, {}, 2, 11),
    ("Split_num_outputs", "Split", [("x", (2, 7), F)], {"axis": 1, "num_outputs": 3}, {}, 3, 18),
    ("Sqrt", "Sqrt", [("x", (3, 5), F)], {}, {}, 1, 17),
    ("Squeeze", "Squeeze", [("x", (2, 1, 3, 1), F)], {}, {"axes": i64(1)}, 1, 17),
    ("Squeeze_opset11", "Squeeze", [("x", (2, 1, 3, 1), F)], {"axes": [-1]}, {}, 1, 11),
    ("Sub", "Sub", AB, {}, {}, 1, 17),
    ("Sum", "Sum", [("a", (2, 3, 4), F), ("b", (3, 1), F), ("c", (4,), F)], {}, {}, 1, 17),
    ("Tanh", "Tanh", X2, {}, {}, 1, 17),
    ("Tile", "Tile", X2, {}, {"r": i64(2, 3)}, 1, 17),
    ("Transpose", "Transpose", X4, {"perm": [0, 2, 3, 1]}, {}, 1, 17),
    ("Unsqueeze", "Unsqueeze", X2, {}, {"axes": i64(0, -1)}, 1, 17),
    ("Unsqueeze_opset11", "Unsqueeze", X2, {"axes": [1]}, {}, 1, 11),
    ("Upsample_opset9", "Upsample", X4, {"mode": "nearest"}, {"scales": f32(1, 1, 2, 3)}, 1, 9),
    ("Upsample_linear_opset9", "Upsample", X4, {"mode": "linear"}, {"scales": f32(1, 1, 2, 2)},
     1, 9),
    ("IsNaN", "IsNaN", X2, {}, {}, 1, 17),
    ("IsInf_neg", "IsInf", X2, {"detect_positive": 0}, {}, 1, 17),
    ("RMSNormalization", "RMSNormalization", [("x", (2, 5, 6), F)], {"epsilon": 1e-3},
     {"s": w(6)}, 1, 23),
    ("Resize_opset10", "Resize", X4, {"mode": "nearest"}, {"scales": f32(1, 1, 2, 3)}, 1, 10),
    ("Where", "Where", [("c", (3, 4), "bool"), ("a", (3, 4), F), ("b", (4,), F)], {}, {}, 1, 17),
    ("Xor", "Xor", BOOL2, {}, {}, 1, 17),
]


def test_every_supported_op_has_a_case():
    covered = {c[1] for c in CASES}
    assert set(supported_onnx_ops()) - covered == set()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_onnxruntime(case):
    _, op, inputs, attrs, inits, n_out, opset = case
    model = single_op_model(op, inputs, n_out, attrs, inits, opset)
    rng = np.random.default_rng(zlib.crc32(case[0].encode()))
    feeds = {n: random_feed(s, d, rng) for n, s, d in inputs}
    if op in ("Log", "Sqrt"):
        feeds["x"] = np.abs(feeds["x"]) + 0.1
    if op == "Round":  # ties at .5 exercise half-to-even
        feeds["x"] = np.round(feeds["x"] * 4) / 4
    ref = ort_run(model, feeds)
    sess = Session(load_onnx(model), fast=False)
    ours = sess.run(None, feeds)
    assert set(ours) == set(ref)
    for name, r in ref.items():
        o = ours[name]
        assert o.shape == r.shape, f"{name}: shape {o.shape} vs ORT {r.shape}"
        assert str(o.dtype) == str(r.dtype), f"{name}: dtype {o.dtype} vs ORT {r.dtype}"
        inferred = sess.output_shapes[name]
        assert inferred == r.shape, f"{name}: inferred shape {inferred} vs ORT {r.shape}"
        if r.dtype.kind == "f":
            assert relative_error(o, r) <= 1e-4, f"{name}: rel err {relative_error(o, r):.2e}"
        else:
            np.testing.assert_array_equal(o, r)
