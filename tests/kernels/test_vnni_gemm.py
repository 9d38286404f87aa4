"""The u8×s8 VNNI GEMM (sdk/kernels/fast/vnni.py) equals the specification's int32 product
bit for bit, GEMV rows and ragged tails included; the compiled program picks it for int8
fully-connected layers exactly when the CPU has it. On a CPU without AVX-512 VNNI the kernel
cannot run (the instruction is missing): those tests skip and the portable path is checked."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.backends import sample_graphs as sg
from sdk.kernels.fast import vnni
from sdk.kernels.linear import matmul_int32
from sdk.ops.codegen import CompiledProgram

needs_vnni = pytest.mark.skipif(not vnni.HAS_VNNI, reason="this CPU has no AVX-512 VNNI")


@needs_vnni
@pytest.mark.parametrize("m,k,n", [(1, 40, 12), (1, 512, 260), (3, 7, 5), (4, 64, 4),
                                   (9, 130, 67), (64, 256, 128)])
def test_vnni_gemm_equals_the_int32_specification(m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    for zp in (-128, -3, 0, 17, 127):
        got = vnni.matmul_nt(a, w, zp)
        want = matmul_int32(a, w.T, zp, 0)
        assert got.dtype == np.int32 and np.array_equal(got, want), zp


@needs_vnni
def test_vnni_gemm_wraps_like_int32() -> None:
    # K large enough that Σ (x+128)·w leaves int32: the corrected result still wraps exactly
    k = 140_000
    a = np.full((1, k), 127, np.int8)
    w = np.full((2, k), 127, np.int8)
    assert np.array_equal(vnni.matmul_nt(a, w, -128), matmul_int32(a, w.T, -128, 0))


def test_compiled_fully_connected_uses_vnni_exactly_when_the_cpu_has_it() -> None:
    g = sg.fc_graph(batch=2, k=128, n=64)
    prog = CompiledProgram(g, ["x"], ["y"], load=False)
    assert ("gemm_u8s8(" in prog.source) == vnni.HAS_VNNI
    assert vnni.gemm_path().startswith("vnni" if vnni.HAS_VNNI else ("int16", "portable"))
