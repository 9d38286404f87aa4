"""ONNX Runtime's saturating u8 x s8 GEMM (x86 AVX2 without VNNI): detected, and the ORT backend
then leaves the integer GEMMs to the SDK's exact kernels instead of returning wrong integers."""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import lsb_diff

import sdk.backends.onnxruntime as ort_backend
from sdk.backends import sample_graphs as sg
from sdk.backends.onnxruntime import cpu_check
from sdk.backends.partition import compile_for, partition

# flag lines as Linux prints them (trimmed); a fixture, not this machine's
_HASWELL = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma avx2 bmi2\n"
_ICELAKE = _HASWELL.replace("bmi2", "bmi2 avx512f avx512bw avx512_vnni")
_ALDERLAKE = _HASWELL.replace("bmi2", "bmi2 avx_vnni")
_OLD = "flags\t\t: fpu sse sse2 ssse3 sse4_1\n"
_PI = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"


def test_flags_mark_avx2_without_vnni() -> None:
    reason = cpu_check.cpu_flag_hazard(_HASWELL, "x86_64")
    assert reason is not None and "AVX2 without VNNI" in reason
    assert cpu_check.cpu_flag_hazard(_ICELAKE, "x86_64") is None
    assert cpu_check.cpu_flag_hazard(_ALDERLAKE, "AMD64") is None
    assert cpu_check.cpu_flag_hazard(_OLD, "x86_64") is None  # left to the probe
    assert cpu_check.cpu_flag_hazard(_PI, "aarch64") is None


@pytest.mark.skipif(cpu_check.integer_gemm_hazard() is not None,
                    reason="ORT's integer GEMM saturates on this CPU")
def test_where_no_hazard_is_found_ort_integer_gemm_is_exact() -> None:
    """An independent check of the verdict: random full-range operands at larger shapes than
    the probe's (ORT picks its kernel by shape), compared with exact int64 arithmetic."""
    rng = np.random.default_rng(5)
    for m, k, n in ((1, 256, 64), (33, 512, 65), (128, 96, 128)):
        a = rng.integers(0, 256, (m, k), dtype=np.uint8)
        a[:, :8] = 255  # and some pair sums that certainly overflow int16
        b = rng.integers(-128, 128, (k, n), dtype=np.int8)
        b[:8, :] = 127
        exact = a.astype(np.int64) @ b.astype(np.int64)
        np.testing.assert_array_equal(cpu_check.ort_matmul_integer(a, b), exact)


def test_gemms_stay_on_sdk_kernels_where_ort_saturates(monkeypatch) -> None:
    reason = cpu_check.cpu_flag_hazard(_HASWELL, "x86_64")
    monkeypatch.setattr(ort_backend, "integer_gemm_hazard", lambda: reason)
    graph = sg.attention_graph()
    plan = partition(graph, "onnxruntime", "laptop")
    by_op: dict[str, set[str]] = {}
    for a in plan.assignments:
        by_op.setdefault(a.op, set()).add(a.backend)
        if a.op in cpu_check.GEMM_OPS:
            assert a.backend == "reference" and "AVX2 without VNNI" in a.reason, a
    assert by_op["QFullyConnected"] == {"reference"} and by_op["QMatMul"] == {"reference"}
    assert "onnxruntime" in by_op["QAdd"]  # the rest is still delegated

    feeds = sg.random_feeds(graph, seed=11)
    expected = compile_for(graph, "reference-numpy", "laptop").run(feeds)
    got = compile_for(graph, "onnxruntime", "laptop").run(feeds)
    d = lsb_diff(got["y"], expected["y"])
    assert d.max() <= 1


@pytest.mark.skipif(cpu_check.integer_gemm_hazard() is not None,
                    reason="ORT's integer GEMM saturates on this CPU")
def test_gemms_are_delegated_where_ort_is_exact() -> None:
    plan = partition(sg.attention_graph(), "onnxruntime", "laptop")
    fc = [a for a in plan.assignments if a.op == "QFullyConnected"]
    assert fc and all(a.backend == "onnxruntime" for a in fc)

