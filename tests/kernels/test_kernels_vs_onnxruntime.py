"""Cross-checks against ONNX Runtime (a real, independent executor): MatMulInteger must agree
bit for bit (pure integer arithmetic), Resize nearest/asymmetric/floor element for element,
QLinearConv within 1 LSB (ORT requantizes with a float scale and rounds half to even, the SDK
uses TFLite's dyadic double rounding)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from sdk.kernels import conv, linear, resize
from sdk.kernels.fast import conv as fconv
from sdk.kernels.fast import linear as flinear
from sdk.kernels.requant import quantize_multiplier_array

ORT_INEXACT = ("onnxruntime's u8 x s8 integer GEMM saturates its 16-bit pair sums on this "
               "CPU (AVX2 without VNNI); the SDK's kernel was checked against exact int64")

RNG = np.random.default_rng(7)
ONNX_TYPE = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8,
             np.int32: TensorProto.INT32, np.float32: TensorProto.FLOAT}


def run_single_node(node: onnx.NodeProto, feeds: dict[str, np.ndarray], out_type: int,
                    inits: list[onnx.TensorProto] = (), opset: int = 21) -> np.ndarray:
    inputs = [helper.make_tensor_value_info(k, ONNX_TYPE[v.dtype.type], v.shape)
              for k, v in feeds.items()]
    out = helper.make_tensor_value_info(node.output[0], out_type, None)
    graph = helper.make_graph([node], "g", inputs, [out], initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


@pytest.mark.parametrize("m,k,n", [(1, 64, 256), (7, 33, 5), (64, 96, 48)])
def test_matmul_int32_equals_ort_matmulinteger(m: int, k: int, n: int,
                                              ort_integer_gemm_exact: bool) -> None:
    a = RNG.integers(0, 256, (m, k), dtype=np.uint8)
    b = RNG.integers(-128, 128, (k, n), dtype=np.int8)
    a_zp, b_zp = np.uint8(131), np.int8(-3)
    exact = (a.astype(np.int64) - int(a_zp)) @ (b.astype(np.int64) - int(b_zp))
    np.testing.assert_array_equal(linear.matmul_int32(a, b, int(a_zp), int(b_zp)), exact)
    if not ort_integer_gemm_exact:
        pytest.skip(ORT_INEXACT)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    inits = [helper.make_tensor("az", TensorProto.UINT8, [], [int(a_zp)]),
             helper.make_tensor("bz", TensorProto.INT8, [], [int(b_zp)])]
    want = run_single_node(node, {"a": a, "b": b}, TensorProto.INT32, inits)
    np.testing.assert_array_equal(linear.matmul_int32(a, b, int(a_zp), int(b_zp)), want)
    np.testing.assert_array_equal(flinear.matmul_int32(a, b, int(a_zp), int(b_zp)), want)


@pytest.mark.parametrize("shape,sizes", [((1, 3, 4, 5), (1, 3, 8, 10)),
                                         ((1, 2, 14, 14), (1, 2, 224, 224)),
                                         ((2, 1, 6, 9), (2, 1, 4, 5)),
                                         ((1, 1, 3, 7), (1, 1, 7, 3))])
def test_resize_nearest_equals_ort(shape, sizes) -> None:
    x = RNG.integers(-128, 128, shape, dtype=np.int8)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    inits = [helper.make_tensor("sizes", TensorProto.INT64, [4], list(sizes))]
    want = run_single_node(node, {"x": x}, TensorProto.INT8, inits)
    np.testing.assert_array_equal(resize.resize_nearest(x, sizes=sizes), want)


@pytest.mark.parametrize("group,strides,pads", [(1, (1, 1), (1, 1, 1, 1)), (4, (2, 2), (0, 1, 1, 0))])
def test_conv2d_within_one_lsb_of_ort_qlinearconv(group, strides, pads) -> None:
    c, o = 8, 8
    x = RNG.integers(-128, 128, (1, c, 10, 10), dtype=np.int8)
    w = RNG.integers(-127, 128, (o, c // group, 3, 3), dtype=np.int8)
    bias = RNG.integers(-2000, 2000, o).astype(np.int32)
    sx, zx, so, zo = np.float32(0.02), -5, np.float32(0.1), 7
    sw = RNG.uniform(0.002, 0.01, o).astype(np.float32)
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "so", "zo", "b"],
                            ["y"], group=group, strides=list(strides), pads=[pads[0], pads[1],
                                                                              pads[2], pads[3]])
    inits = [helper.make_tensor("sx", TensorProto.FLOAT, [], [float(sx)]),
             helper.make_tensor("zx", TensorProto.INT8, [], [zx]),
             helper.make_tensor("w", TensorProto.INT8, w.shape, w.ravel().tolist()),
             helper.make_tensor("sw", TensorProto.FLOAT, [o], sw.tolist()),
             helper.make_tensor("zw", TensorProto.INT8, [o], [0] * o),
             helper.make_tensor("so", TensorProto.FLOAT, [], [float(so)]),
             helper.make_tensor("zo", TensorProto.INT8, [], [zo]),
             helper.make_tensor("b", TensorProto.INT32, [o], bias.tolist())]
    want = run_single_node(node, {"x": x}, TensorProto.INT8, inits)
    m0, sh = quantize_multiplier_array(np.float64(sx) * sw.astype(np.float64) / np.float64(so))
    kw = dict(strides=strides, pads=pads, group=group, x_zp=zx, m0=m0, shift=sh, out_zp=zo)
    ours = conv.conv2d(x, w, bias, **kw)
    np.testing.assert_array_equal(fconv.conv2d(x, w, bias, **kw), ours)
    diff = np.abs(ours.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= 1
    assert (diff == 0).mean() > 0.9   # ties and float-scale rounding are rare
