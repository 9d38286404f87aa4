"""QDQ models from onnxruntime.quantization.quantize_static → the SDK's integer graph.

Acceptance: the SDK's integer outputs equal ONNX Runtime's quantized outputs within 1 LSB on
at least 99.9 % of elements. Tolerance reason: ORT's QLinear kernels requantize with a float
multiplier (``round(acc·M)``), the SDK with the dyadic TFLite rule (Q31 multiplier, double
rounding): the two differ by at most one step when ``acc·M`` lies near a half.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx_models import small_cnn, small_mlp
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from sdk.compile import Bundle
from sdk.frontends.onnx_qdq import load_qdq
from sdk.quant import assert_integer_only


class _Reader(CalibrationDataReader):
    def __init__(self, xs: np.ndarray) -> None:
        self._it = iter([{"x": x} for x in xs])

    def get_next(self):
        return next(self._it, None)


def _ort_qdq(tmp_path, model, calib, activation_type=QuantType.QInt8, per_channel=True):
    src, dst = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, src)
    quantize_static(str(src), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=activation_type,
                    weight_type=QuantType.QInt8)
    return dst


def _lsb_differences(qdq_path, held_out):
    sess = ort.InferenceSession(str(qdq_path), providers=["CPUExecutionProvider"])
    bundle = Bundle.from_graph(load_qdq(onnx.load(qdq_path)))
    assert_integer_only(bundle.graph)
    out = bundle.graph.tensor(bundle.graph.metadata["quantized_outputs"]["y"])
    s, z = float(out.quant.scale), int(out.quant.zero_point)
    diffs = []
    for x in held_out:
        # ORT's output is DequantizeLinear(q) = s·(q − z): recover its integers exactly
        q_ort = np.round(sess.run(None, {"x": x})[0] / s).astype(np.int64) + z
        q_sdk = bundle.run_quantized({"x": x})["y"].astype(np.int64)
        diffs.append(np.abs(q_ort - q_sdk).ravel())
    return np.concatenate(diffs), bundle


@pytest.mark.parametrize("build, shape", [(lambda: small_cnn(batchnorm=False), (1, 3, 16, 16)),
                                          (small_mlp, (4, 20))], ids=["cnn", "mlp"])
@pytest.mark.usefixtures("require_exact_ort_integer_gemm")
def test_integer_outputs_match_onnxruntime_within_one_lsb(tmp_path, build, shape):
    rng = np.random.default_rng(7)
    calib = rng.standard_normal((16, *shape)).astype(np.float32)
    held_out = rng.standard_normal((48, *shape)).astype(np.float32)
    d, bundle = _lsb_differences(_ort_qdq(tmp_path, build(), calib), held_out)
    assert d.size >= 480
    assert np.mean(d <= 1) >= 0.999, f"max diff {d.max()}, {np.mean(d <= 1):.4%} within 1 LSB"
    assert np.mean(d == 0) >= 0.5  # most elements are bit-exact
    assert bundle.graph.metadata["source"] == "onnx-qdq"
    w = [t for t in bundle.graph.initializers() if t.dtype == "int8" and t.data.ndim >= 2]
    assert w and all(t.quant.per_axis for t in w)


@pytest.mark.usefixtures("require_exact_ort_integer_gemm")
@pytest.mark.parametrize("per_channel", [True, False])
def test_batchnorm_kept_by_the_qdq_model_and_per_tensor_weights(tmp_path, per_channel):
    """ORT quantizes the Conv output before its BatchNormalization: the SDK keeps that
    rounding (BN becomes a 1×1 depthwise conv instead of folding) to stay within 1 LSB."""
    rng = np.random.default_rng(11)
    calib = rng.standard_normal((16, 1, 3, 16, 16)).astype(np.float32)
    held_out = rng.standard_normal((16, 1, 3, 16, 16)).astype(np.float32)
    path = _ort_qdq(tmp_path, small_cnn(batchnorm=True), calib, per_channel=per_channel)
    d, bundle = _lsb_differences(path, held_out)
    assert np.mean(d <= 1) >= 0.999, f"max diff {d.max()}"
    convs = [n for n in bundle.graph.nodes if n.op == "QConv2d"]
    assert bundle.graph.tensor(convs[0].inputs[1]).quant.per_axis == per_channel


@pytest.mark.usefixtures("require_exact_ort_integer_gemm")
def test_uint8_activations_map_to_the_same_grid_in_int8(tmp_path):
    rng = np.random.default_rng(8)
    calib = rng.standard_normal((8, 1, 3, 16, 16)).astype(np.float32)
    held_out = rng.standard_normal((8, 1, 3, 16, 16)).astype(np.float32)
    path = _ort_qdq(tmp_path, small_cnn(batchnorm=False), calib, QuantType.QUInt8)
    d, _ = _lsb_differences(path, held_out)
    assert np.mean(d <= 1) >= 0.999


def test_qdq_transformer_block_lowers_to_integer_transformer_ops(tmp_path):
    """ORT quantizes MatMul/Add/Softmax... of an encoder block; the SDK keeps ORT's scales but
    runs Shiftmax, I-LayerNorm and ShiftGELU, so agreement is close, not within 1 LSB."""
    from onnx_models import encoder_block

    rng = np.random.default_rng(9)
    calib = rng.standard_normal((16, 1, 8, 32)).astype(np.float32)
    held_out = rng.standard_normal((8, 1, 8, 32)).astype(np.float32)
    path = _ort_qdq(tmp_path, encoder_block(), calib)
    bundle = Bundle.from_graph(load_qdq(onnx.load(path)))
    assert_integer_only(bundle.graph)
    assert {"Shiftmax", "ILayerNorm", "ShiftGELU", "QMatMul"} <= set(bundle.manifest["ops"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    o = np.stack([sess.run(None, {"x": x})[0] for x in held_out]).ravel()
    s = np.stack([bundle.run({"x": x})["y"] for x in held_out]).ravel()
    assert o @ s / (np.linalg.norm(o) * np.linalg.norm(s)) >= 0.99


def test_asymmetric_uint8_weights_are_refused_with_a_hint(tmp_path):
    from sdk.errors import UnsupportedOpError

    rng = np.random.default_rng(12)
    calib = rng.standard_normal((4, 4, 20)).astype(np.float32)
    src, dst = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(small_mlp(), src)
    quantize_static(str(src), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8)
    with pytest.raises(UnsupportedOpError, match="weight_type=QInt8"):
        load_qdq(onnx.load(dst))
