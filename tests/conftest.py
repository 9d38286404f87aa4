"""Fixtures shared by every test folder."""

from __future__ import annotations

import functools

import numpy as np
import pytest


@functools.lru_cache(maxsize=1)
def _ort_u8s8_gemm_is_exact() -> bool:
    """Whether ONNX Runtime's u8 × s8 integer GEMM is exact on this CPU.

    On x86 CPUs with AVX2 but no VNNI, ORT's MLAS kernel adds pairs of u8·s8 products in 16
    bits with saturation (``vpmaddubsw``), so large operands give wrong sums; the tests that
    take ORT's integer kernels as the reference cannot hold there. The probe multiplies
    255 by 127 over 64 terms, where every pair sum (64 770) overflows int16."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = np.full((2, 64), 255, np.uint8)
    b = np.full((64, 3), 127, np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    graph = helper.make_graph(
        [node], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape),
         helper.make_tensor_value_info("b", TensorProto.INT8, b.shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"a": a, "b": b})[0]
    return bool(np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64)))


ORT_INEXACT = ("onnxruntime's u8 x s8 integer GEMM saturates its 16-bit pair sums on this CPU "
               "(AVX2 without VNNI), so it is no exact integer reference here")


@pytest.fixture
def require_exact_ort_integer_gemm() -> None:
    """Skip a test that compares integer outputs with ORT's where ORT's own are wrong."""
    if not _ort_u8s8_gemm_is_exact():
        pytest.skip(ORT_INEXACT)


@pytest.fixture
def ort_integer_gemm_exact() -> bool:
    """True where ORT's u8 × s8 integer GEMM is exact on this CPU (see the probe)."""
    return _ort_u8s8_gemm_is_exact()
