"""The integer kernels approximate the float operators they replace: dequantized outputs are
compared with float math on the dequantized inputs, with the tolerance written per test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdk.kernels import conv, elementwise, linear, lut, pooling, transformer
from sdk.kernels.quantize import dequantize_linear, quantize_linear
from sdk.kernels.requant import quantize_multiplier, quantize_multiplier_array

RNG = np.random.default_rng(1234)
# Requantization error bound in output LSBs: 0.5 for the final rounding, + 0.5·2^-5 for the
# high-mul's rounding ahead of a right shift of at least 5 (TFLite's double rounding).
HALF_LSB_DOUBLE_ROUNDING = 0.5 + 0.5 / 32


def erf_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def affine(x: np.ndarray, dtype: str = "int8") -> tuple[float, int]:
    """Asymmetric int8 scale / zero point covering ``x`` (and 0)."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0
    return scale, round(-128 - lo / scale)


def float_conv2d(x, w, b, strides, pads, group):
    """Plain float64 grouped convolution (the test's own, independent of the kernels)."""
    t, l, bt, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bt), (l, r)))
    o, cg, kh, kw = w.shape
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1]]
    og = o // group
    outs = [np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og])
            for g in range(group)]
    return np.concatenate(outs, axis=1) + b[None, :, None, None]


@pytest.mark.parametrize("group,strides,pads", [(1, (1, 1), (1, 1, 1, 1)), (2, (2, 1), (0, 1, 2, 0)),
                                                (8, (1, 1), (1, 1, 1, 1))])
def test_int_conv_matches_float_conv_within_one_lsb(group, strides, pads) -> None:
    x = RNG.normal(0.5, 1.0, (2, 8, 9, 9))
    w = RNG.normal(0, 0.3, (8, 8 // group, 3, 3))
    b = RNG.normal(0, 0.5, 8)
    sx, zx = affine(x)
    qx = quantize_linear(x, sx, zx)
    sw = np.abs(w).reshape(8, -1).max(1) / 127.0                     # per output channel
    qw = np.clip(np.round(w / sw[:, None, None, None]), -127, 127).astype(np.int8)
    bias = np.round(b / (sx * sw)).astype(np.int32)
    ref = float_conv2d(dequantize_linear(qx, sx, zx).astype(np.float64),
                       qw * sw[:, None, None, None], bias * sx * sw, strides, pads, group)
    so, zo = affine(ref)
    m0, sh = quantize_multiplier_array(sx * sw / so)
    out = conv.conv2d(qx, qw, bias, strides=strides, pads=pads, group=group, x_zp=zx, m0=m0,
                      shift=sh, out_zp=zo)
    err = np.abs((out.astype(np.float64) - zo) * so - ref)
    # exact integer accumulation; only the requantization rounds: 0.5 LSB, plus the high-mul's
    # own rounding before the shift ("double rounding", 0.5·2^-shift LSB, shift ≥ 5 here)
    assert err.max() <= HALF_LSB_DOUBLE_ROUNDING * so


def test_fully_connected_matches_float_within_half_lsb() -> None:
    x = RNG.normal(0, 1.0, (5, 48))
    w = RNG.normal(0, 0.2, (12, 48))
    sx, zx = affine(x)
    qx = quantize_linear(x, sx, zx)
    sw = np.abs(w).max(1) / 127.0
    qw = np.clip(np.round(w / sw[:, None]), -127, 127).astype(np.int8)
    ref = dequantize_linear(qx, sx, zx).astype(np.float64) @ (qw * sw[:, None]).T
    so, zo = affine(ref)
    m0, sh = quantize_multiplier_array(sx * sw / so)
    out = linear.fully_connected(qx, qw, None, x_zp=zx, m0=m0, shift=sh, out_zp=zo)
    assert np.abs((out.astype(np.float64) - zo) * so - ref).max() <= HALF_LSB_DOUBLE_ROUNDING * so


def test_add_and_mul_match_float_within_one_lsb() -> None:
    a, b = RNG.normal(0, 2, (64,)), RNG.normal(1, 0.5, (64,))
    (sa, za), (sb, zb) = affine(a), affine(b)
    qa, qb = quantize_linear(a, sa, za), quantize_linear(b, sb, zb)
    da, db = dequantize_linear(qa, sa, za), dequantize_linear(qb, sb, zb)
    so, zo = affine(da + db)
    ls, twice = 20, 2 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice)
    bm, bsh = quantize_multiplier(sb / twice)
    om, osh = quantize_multiplier(twice / (2**ls * so))
    out = elementwise.add(qa, qb, a_zp=za, b_zp=zb, left_shift=ls, a_m0=am, a_shift=ash,
                          b_m0=bm, b_shift=bsh, out_m0=om, out_shift=osh, out_zp=zo)
    assert np.abs((out.astype(np.float64) - zo) * so - (da + db)).max() <= so
    sp, zp = affine(da * db)
    m0, sh = quantize_multiplier(sa * sb / sp)
    prod = elementwise.mul(qa, qb, a_zp=za, b_zp=zb, m0=m0, shift=sh, out_zp=zp)
    assert np.abs((prod.astype(np.float64) - zp) * sp - da * db).max() <= HALF_LSB_DOUBLE_ROUNDING * sp


def test_avg_pool_is_the_rounded_mean() -> None:
    x = RNG.integers(-128, 128, (1, 3, 6, 6)).astype(np.int8)
    out = pooling.avg_pool2d(x, kernel=(2, 2), strides=(2, 2))
    mean = x.astype(np.float64).reshape(1, 3, 3, 2, 3, 2).mean(axis=(3, 5))
    assert np.abs(out - mean).max() <= 0.5


@pytest.mark.parametrize("make,fn", [(lut.sigmoid_lut, lambda v: 1 / (1 + np.exp(-v))),
                                     (lut.tanh_lut, np.tanh)])
def test_lut_tables_round_the_float_function(make, fn) -> None:
    s_in, z_in = 0.05, 3
    table = make(s_in, z_in)
    q = np.arange(-128, 128, dtype=np.int8)
    out_scale, out_zp = (lut.SIGMOID_OUT if make is lut.sigmoid_lut else lut.TANH_OUT)
    got = (lut.lut_apply(q, table).astype(np.float64) - out_zp) * out_scale
    want = np.clip(fn(s_in * (q.astype(np.float64) - z_in)), -1.0, (127 - out_zp) * out_scale)
    assert np.abs(got - want).max() <= 0.5 * out_scale + 1e-12


@pytest.mark.parametrize("scale", [0.02, 0.05, 0.1])
def test_shiftmax_approximates_softmax(scale) -> None:
    x = RNG.normal(0, 2, (64, 50))
    q = np.clip(np.round(x / scale), -128, 127).astype(np.int8)
    xd = q * scale
    p = transformer.shiftmax(q, x0=math.floor(-1 / scale), n=15, out_bits=16) / 2.0**15
    sm = np.exp(xd - xd.max(-1, keepdims=True))
    sm /= sm.sum(-1, keepdims=True)
    # I-ViT's shift-exp (2^r ≈ 1 + r/2, log2 e ≈ 1.4375): measured max 0.021, mean 7e-4
    assert np.abs(p - sm).max() < 0.03
    assert np.abs(p - sm).mean() < 1e-3
    assert np.abs(p.sum(-1) - 1).max() < 0.02


def gelu_case(x: np.ndarray, lam: float | None) -> tuple[np.ndarray, np.ndarray]:
    """ShiftGELU of ``x`` quantized symmetric int8 on its own max; returns (out, reference)."""
    s = float(np.abs(x).max()) / 127
    q = np.clip(np.round(x / s), -127, 127).astype(np.int8)
    so = 2.0**-8
    m0, sh = quantize_multiplier(s * 2.0**-7 / so)
    x0 = math.floor(-1 / (1.702 * s))
    clip = {} if lam is None else {"clip_min": -round(lam / s), "clip_max": round(lam / s)}
    out = transformer.shift_gelu(q, x0=x0, n=transformer.shift_gelu_n(x0), m0=m0, shift=sh,
                                 dtype="int16", **clip)
    return out * so, erf_gelu(q * s)


def test_shift_gelu_approximates_gelu() -> None:
    y, ref = gelu_case(RNG.normal(0, 1.5, (32, 64)), None)
    # x·σ(1.702x) itself differs from erf-GELU by up to 0.02; σ has 8 bits
    assert np.abs(y - ref).max() < 0.06
    assert np.abs(y - ref).mean() < 0.015


def test_lambda_shift_gelu_beats_plain_on_long_tailed_inputs() -> None:
    x = RNG.standard_t(2, (32, 256))                       # heavy tails: rare |x| > 20
    plain, ref = gelu_case(x, None)
    clipped, _ = gelu_case(x, 4.0)
    err_plain, err_clip = np.abs(plain - ref), np.abs(clipped - ref)
    # the outliers set a wide grid and a large row max, so plain σ collapses towards 1/2
    assert err_clip.mean() < 0.5 * err_plain.mean()
    assert err_clip.max() < 0.5 * err_plain.max()


def test_lambda_clip_changes_nothing_on_a_narrow_range() -> None:
    x = RNG.normal(0, 1.0, (8, 64))
    x = np.clip(x, -3.5, 3.5)
    plain, _ = gelu_case(x, None)
    clipped, _ = gelu_case(x, 4.0)
    np.testing.assert_array_equal(plain, clipped)


@pytest.mark.parametrize("c", [64, 192, 768])
def test_i_layernorm_and_rmsnorm_approximate_float(c) -> None:
    x = RNG.normal(0.3, 1.2, (16, c))
    s = float(np.abs(x).max()) / 127
    q = np.clip(np.round(x / s), -127, 127).astype(np.int8)
    xd = q * s
    g, b, so = RNG.uniform(0.5, 1.5, c), RNG.normal(0, 0.2, c), 8 / 127
    m0, sh = quantize_multiplier_array(g * math.sqrt(c) / 2**30 / so)
    beta_q = np.round(b * 2**30 / (g * math.sqrt(c))).astype(np.int64)
    y = transformer.i_layernorm(q, beta_q, m0=m0, shift=sh) * so
    ref = (xd - xd.mean(-1, keepdims=True)) / xd.std(-1, keepdims=True) * g + b
    # integer mean, Newton sqrt and one floor division: within 1 output LSB (measured ≤ 0.97)
    assert np.abs(y - ref).max() <= so
    y = transformer.i_rmsnorm(q, None, m0=m0, shift=sh) * so
    ref = xd / np.sqrt((xd**2).mean(-1, keepdims=True)) * g
    assert np.abs(y - ref).max() <= so


def test_newton_isqrt_converges_to_floor_sqrt() -> None:
    v = np.array([0, 1, 2, 15, 16, 65535, 65536, 10**6, 123456789, 2**40])
    k = transformer.newton_isqrt(v, 30).tolist()
    # integer Newton ends on floor(√v), or alternates with floor(√v)+1 when v = m² − 1
    for t, got in zip(v.tolist(), k):
        r = max(1, math.isqrt(t))
        assert got == r or (got == r + 1 and t == (r + 1) ** 2 - 1), (t, got)
    assert k[4] == 4 and k[6] == 256 and k[9] == 2**20
