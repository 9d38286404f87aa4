"""The compiled programs' own Numba kernels (``sdk.kernels.fast.fused`` broadcast-row
element-wise loops and the ``q·Kᵀ`` GEMM, ``sdk.kernels.fast.conv`` zero-bordered
im2col) against the NumPy reference kernels / the formula, bit for bit, on random inputs
(compiled-vs-interpreter tests cover them inside whole programs too)."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.kernels import elementwise as ref
from sdk.kernels.fast.conv import im2col_padded, to_hwc_at
from sdk.kernels.fast.fused import add_tile_loop, gemm_rows_nt, mul_tile_loop
from sdk.kernels.linear import matmul_int32
from sdk.kernels.requant import quantize_multiplier


def _ints(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_add_and_mul_of_a_broadcast_row_equal_the_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    r, p = int(rng.integers(1, 6)), int(rng.integers(1, 40))
    a, b = _ints(rng, dtype, (r, p)), _ints(rng, dtype, (p,))
    a_zp, b_zp, zp = (int(z) for z in rng.integers(-20, 21, 3))
    lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    s_a, s_b, s_o = (float(s) for s in rng.uniform(0.001, 0.1, 3))

    ls = ref.add_left_shift(dtype, dtype)
    q = ref.add_params(s_a, s_b, s_o, ls)
    want = ref.add(a, b[None, :], a_zp=a_zp, b_zp=b_zp, out_zp=zp, act_min=lo, act_max=hi,
                   dtype=dtype, **q)
    got = np.empty((r, p), dtype)
    add_tile_loop(a, b, a_zp, b_zp, ls, q["a_m0"], q["a_shift"], q["b_m0"], q["b_shift"],
                  q["out_m0"], q["out_shift"], zp, lo, hi, got)
    assert np.array_equal(got, want)

    m0, sh = quantize_multiplier(s_a * s_b / s_o)
    want = ref.mul(a, b[None, :], a_zp=a_zp, b_zp=b_zp, m0=m0, shift=sh, out_zp=zp,
                   act_min=lo, act_max=hi, dtype=dtype)
    got = np.empty((r, p), dtype)
    mul_tile_loop(a, b, a_zp, b_zp, m0, sh, zp, lo, hi, got)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtypes", [("int8", "int8"), ("int16", "int8"), ("int16", "int16")])
def test_gemm_with_b_given_by_its_rows_equals_matmul_int32(seed, dtypes):
    rng = np.random.default_rng(seed)
    m, k, n = (int(x) for x in rng.integers(1, 50, 3))
    a, bt = _ints(rng, dtypes[0], (m, k)), _ints(rng, dtypes[1], (n, k))
    a_zp, b_zp = (int(z) for z in rng.integers(-30, 31, 2))
    got = np.empty((m, n), np.int32)
    gemm_rows_nt(a, bt, np.int64(a_zp), np.int64(b_zp), got)
    assert np.array_equal(got, matmul_int32(a, bt.T, a_zp, b_zp))  # int16·int16 wraps alike


@pytest.mark.parametrize("seed", range(4))
def test_zero_bordered_im2col_equals_the_formula(seed):
    rng = np.random.default_rng(seed)
    c_all, h, w = int(rng.integers(2, 6)), int(rng.integers(3, 9)), int(rng.integers(3, 9))
    c0 = int(rng.integers(0, c_all))
    cg = int(rng.integers(1, c_all - c0 + 1))
    kh, kw = (int(x) for x in rng.integers(1, 4, 2))
    sh, sw = (int(x) for x in rng.integers(1, 3, 2))
    dh, dw = (int(x) for x in rng.integers(1, 3, 2))
    pt, pl = (int(x) for x in rng.integers(0, 3, 2))
    x = _ints(rng, "int8", (c_all, h, w))
    zp = int(rng.integers(-10, 11))

    # to_hwc_at: the group's channels, channel-last, minus the zero point, inside a border
    hp, wp = h + 2 * pt, w + 2 * pl
    xp = np.zeros((hp, wp, cg), np.int16)
    to_hwc_at(x, np.int64(zp), c0, cg, pt, pl, xp)
    want = np.zeros_like(xp)
    want[pt:pt + h, pl:pl + w] = (x[c0:c0 + cg].astype(np.int16) - zp).transpose(1, 2, 0)
    assert np.array_equal(xp, want)

    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    assert oh >= 1 and ow >= 1  # the seeds draw kernels that fit the bordered image
    extra = 3  # columns past kh·kw·C stay as they were (the GEMM's zero padding)
    cols = np.zeros((oh * ow, kh * kw * cg + extra), np.int16)
    im2col_padded(xp, kh, kw, sh, sw, dh, dw, oh, ow, cols)
    want = np.zeros_like(cols)
    for y in range(oh):
        for xo in range(ow):
            for i in range(kh):
                for j in range(kw):
                    t = (i * kw + j) * cg
                    want[y * ow + xo, t:t + cg] = xp[y * sh + i * dh, xo * sw + j * dw]
    assert np.array_equal(cols, want)
