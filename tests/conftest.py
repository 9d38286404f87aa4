"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest


def _ort_u8s8_gemm_is_exact() -> bool:
    """Whether ONNX Runtime's u8 × s8 integer GEMM is exact on this CPU.

    On x86 CPUs with AVX2 but no VNNI, ORT's MLAS kernel adds pairs of u8·s8 products in 16
    bits with saturation (``vpmaddubsw``), so large operands give wrong sums; the tests that
    take ORT's integer kernels as the reference cannot hold there. The SDK's own check
    (``sdk.backends.onnxruntime.cpu_check``: feature flags, then a 255 × 127 probe) decides."""
    from sdk.backends.onnxruntime.cpu_check import integer_gemm_hazard
    return integer_gemm_hazard() is None


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
