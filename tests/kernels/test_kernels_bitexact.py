"""Every Numba twin is bit-exact with its NumPy reference on random inputs, edge values
(−128, 127, extreme zero points, saturating multipliers) and empty / size-1 dimensions."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from kernel_cases import BITEXACT, dims, int_tensor, m0s, out_clamp, shifts, zero_points

from sdk.kernels import conv, elementwise, linear, lut, pooling, quantize, resize, transformer
from sdk.kernels.fast import conv as fconv
from sdk.kernels.fast import elementwise as felementwise
from sdk.kernels.fast import linear as flinear
from sdk.kernels.fast import lut as flut
from sdk.kernels.fast import pooling as fpooling
from sdk.kernels.fast import quantize as fquantize
from sdk.kernels.fast import resize as fresize
from sdk.kernels.fast import transformer as ftransformer
from sdk.kernels.fast.gemm import fits_int16


def same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


# -- linear ----------------------------------------------------------------------------------
@BITEXACT
@given(data=st.data(), m=dims(0, 9), k=dims(0, 40), n=dims(0, 9), a_zp=zero_points,
       b_zp=zero_points)
def test_matmul_int32(data, m, k, n, a_zp, b_zp) -> None:
    a = data.draw(int_tensor((m, k)))
    b = data.draw(int_tensor((k, n)))
    ref = linear.matmul_int32(a, b, a_zp, b_zp)
    same(flinear.matmul_int32(a, b, a_zp, b_zp), ref)
    same(flinear.matmul_int32_parallel(a, b, a_zp, b_zp), ref)


@BITEXACT
@given(data=st.data(), batch=st.sampled_from([(), (1,), (2,), (3, 1)]),
       bbatch=st.sampled_from([(), (1,), (2,)]), m=dims(1, 6), k=dims(1, 9), n=dims(1, 5),
       a_zp=zero_points, b_zp=zero_points, m0=m0s, shift=shifts, clamp=out_clamp())
def test_qmatmul_broadcast(data, batch, bbatch, m, k, n, a_zp, b_zp, m0, shift, clamp) -> None:
    assume(len(batch) < 2 or not bbatch or bbatch[-1] in (1, batch[-1]))
    a = data.draw(int_tensor(batch + (m, k)))
    b = data.draw(int_tensor(bbatch + (k, n)))
    zp, lo, hi = clamp
    kw = dict(a_zp=a_zp, b_zp=b_zp, m0=m0, shift=shift, out_zp=zp, act_min=lo, act_max=hi)
    same(flinear.qmatmul(a, b, **kw), linear.qmatmul(a, b, **kw))


@BITEXACT
@given(data=st.data(), m=dims(0, 6), k=dims(0, 70), n=dims(1, 6), a_zp=st.integers(-3000, 3000))
def test_matmul_int16_operands_and_fallback(data, m, k, n, a_zp) -> None:
    # int16 probabilities × int8 values (P·V); with a zero point the centred values may leave
    # int16 and the kernel must take its exact i-k-j fallback.
    a = data.draw(int_tensor((m, k), np.int16))
    b = data.draw(int_tensor((k, n)))
    same(flinear.matmul_int32(a, b, a_zp, 0), linear.matmul_int32(a, b, a_zp, 0))


def test_gemm_512_cube_bit_exact_serial_and_parallel() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (512, 512), dtype=np.int8)
    b = rng.integers(-128, 128, (512, 512), dtype=np.int8)
    ref = linear.matmul_int32(a, b, -128, 127)   # extreme zero points: |terms| up to 255²
    same(flinear.matmul_int32(a, b, -128, 127), ref)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        same(flinear.matmul_int32_parallel(a, b, -128, 127), ref)
    finally:
        numba.set_num_threads(threads)


def test_int32_accumulator_wraps_like_c() -> None:
    # K = 40000 terms of 255·255 overflow int32; both kernels wrap the same way.
    a = np.full((4, 40000), -128, np.int8)
    b = np.full((40000, 2), -128, np.int8)
    ref = linear.matmul_int32(a, b, 127, 127)
    assert int(ref[0, 0]) == ((40000 * 255 * 255 + 2**31) % 2**32) - 2**31
    same(flinear.matmul_int32(a, b, 127, 127), ref)


@BITEXACT
@given(data=st.data(), lead=st.sampled_from([(0,), (1,), (5,), (2, 3)]), k=dims(1, 40),
       n=dims(1, 9), x_zp=zero_points, clamp=out_clamp(), bias=st.booleans(),
       per_channel=st.booleans(), wide=st.booleans())
def test_fully_connected(data, lead, k, n, x_zp, clamp, bias, per_channel, wide) -> None:
    # wide: int16 activations (residual streams), whose centred values may leave int16
    x = data.draw(int_tensor(lead + (k,), np.int16 if wide else np.int8))
    w = data.draw(int_tensor((n, k), lo=-127))
    b = data.draw(int_tensor((n,), np.int32, -(2**20), 2**20)) if bias else None
    m0 = data.draw(st.lists(m0s, min_size=n, max_size=n)) if per_channel else data.draw(m0s)
    sh = data.draw(st.lists(shifts, min_size=n, max_size=n)) if per_channel else data.draw(shifts)
    zp, lo, hi = clamp
    kw = dict(x_zp=x_zp, m0=m0, shift=sh, out_zp=zp, act_min=lo, act_max=hi)
    same(flinear.fully_connected(x, w, b, **kw), linear.fully_connected(x, w, b, **kw))


# -- convolution -----------------------------------------------------------------------------
@st.composite
def conv_case(draw, depthwise=False, xdtype=np.int8, wdtype=np.int8):
    n = draw(dims(0, 2))
    group = draw(st.integers(1, 3))
    cg = 1 if depthwise else draw(st.integers(1, 3))
    og = draw(st.integers(1, 2)) if depthwise else draw(st.integers(1, 3))
    h, w = draw(dims(1, 7)), draw(dims(1, 7))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    assume(h + pads[0] + pads[2] >= dil[0] * (kh - 1) + 1)
    assume(w + pads[1] + pads[3] >= dil[1] * (kw - 1) + 1)
    x = draw(int_tensor((n, cg * group, h, w), xdtype))
    wt = draw(int_tensor((og * group, cg, kh, kw), wdtype, lo=-127 if wdtype == np.int8 else None))
    o = og * group
    b = draw(st.none() | int_tensor((o,), np.int32, -(2**20), 2**20))
    zp, lo, hi = draw(out_clamp())
    x_zp = draw(zero_points) if xdtype == np.int8 else draw(st.integers(-(2**20), -129))
    kw_ = dict(strides=strides, pads=pads, dilations=dil, x_zp=x_zp,
               m0=draw(st.lists(m0s, min_size=o, max_size=o)),
               shift=draw(st.lists(st.integers(-20, 0), min_size=o, max_size=o)),
               out_zp=zp, act_min=lo, act_max=hi)
    if not depthwise:
        kw_["group"] = group
    return x, wt, b, kw_


@BITEXACT
@given(case=conv_case())
def test_conv2d(case) -> None:
    x, w, b, kw = case
    ref = conv.conv2d(x, w, b, **kw)
    same(fconv.conv2d(x, w, b, **kw), ref)
    same(fconv.conv2d_parallel(x, w, b, **kw), ref)


@BITEXACT
@given(case=st.one_of(conv_case(xdtype=np.int16), conv_case(xdtype=np.int32, wdtype=np.int16)))
def test_conv2d_wide_inputs_take_the_direct_loop(case) -> None:
    # centred int16 activations (or int16 weights) beyond int16: the packed int16 GEMM cannot
    # hold them, so the twin falls back to its direct int32 loop, which must still equal the
    # reference's wrap32 of the exact sum
    x, w, b, kw = case
    if x.size:
        x.flat[0] = np.iinfo(x.dtype).max    # with x_zp ≤ −129, x − x_zp leaves int16
    assert not (fits_int16(x, kw["x_zp"]) and fits_int16(w, 0)) or x.size == 0
    ref = conv.conv2d(x, w, b, **kw)
    same(fconv.conv2d(x, w, b, **kw), ref)
    same(fconv.conv2d_parallel(x, w, b, **kw), ref)


@BITEXACT
@given(case=conv_case(depthwise=True))
def test_depthwise_conv2d(case) -> None:
    x, w, b, kw = case
    same(fconv.depthwise_conv2d(x, w, b, **kw), conv.depthwise_conv2d(x, w, b, **kw))


@pytest.mark.parametrize("xdtype, wdtype", [(np.int8, np.int8), (np.int16, np.int8),
                                            (np.int32, np.int16)])
@pytest.mark.parametrize("strides, dil, pads, mult", [((1, 1), (1, 1), (1, 1, 1, 1), 1),
                                                       ((2, 2), (1, 1), (0, 1, 1, 0), 1),
                                                       ((1, 3), (2, 1), (2, 0, 1, 2), 2)])
def test_depthwise_conv2d_wide_planes_and_dtypes(xdtype, wdtype, strides, dil, pads, mult):
    # planes wider than the vector length, and centred values / products beyond int16 and
    # int32: the int32 loop must still equal the reference's wrap32 of the exact sum
    rng = np.random.default_rng(5)
    xi, wi = np.iinfo(xdtype), np.iinfo(wdtype)
    x = rng.integers(xi.min, xi.max, (2, 6, 23, 37), endpoint=True).astype(xdtype)
    w = rng.integers(wi.min, wi.max, (6 * mult, 1, 3, 3), endpoint=True).astype(wdtype)
    b = rng.integers(-(2**20), 2**20, 6 * mult).astype(np.int32)
    kw = dict(strides=strides, pads=pads, dilations=dil, x_zp=int(xi.min) // 3,
              m0=[2**30 + 12345 * k for k in range(6 * mult)], shift=[-12] * (6 * mult),
              out_zp=-5)
    same(fconv.depthwise_conv2d(x, w, b, **kw), conv.depthwise_conv2d(x, w, b, **kw))


@BITEXACT
@given(data=st.data(), n=dims(0, 2), group=st.integers(1, 2), cg=st.integers(1, 3),
       og=st.integers(1, 3), length=dims(1, 12), k=st.integers(1, 4), stride=st.integers(1, 3),
       dilation=st.integers(1, 2), pads=st.tuples(dims(0, 3), dims(0, 3)), x_zp=zero_points,
       m0=m0s, shift=st.integers(-20, 0))
def test_conv1d(data, n, group, cg, og, length, k, stride, dilation, pads, x_zp, m0, shift):
    assume(length + sum(pads) >= dilation * (k - 1) + 1)
    x = data.draw(int_tensor((n, cg * group, length)))
    w = data.draw(int_tensor((og * group, cg, k), lo=-127))
    kw = dict(stride=stride, pads=pads, dilation=dilation, group=group, x_zp=x_zp, m0=m0,
              shift=shift)
    same(fconv.conv1d(x, w, None, **kw), conv.conv1d(x, w, None, **kw))


# -- element-wise ----------------------------------------------------------------------------
shapes_pair = st.sampled_from([((0,), (0,)), ((1,), (5,)), ((3, 4), (4,)), ((2, 1, 3), (1, 4, 1)),
                               ((2, 3), (2, 3))])


@BITEXACT
@given(data=st.data(), shapes=shapes_pair, a_zp=zero_points, b_zp=zero_points,
       ls=st.sampled_from([0, 15, 20]), a_m0=m0s, b_m0=m0s, o_m0=m0s,
       a_sh=st.integers(-31, 0), b_sh=st.integers(-31, 0), o_sh=st.integers(-31, 5),
       wide=st.booleans())
def test_add(data, shapes, a_zp, b_zp, ls, a_m0, b_m0, o_m0, a_sh, b_sh, o_sh, wide) -> None:
    # wide: int16 operands and output (the residual stream), whose shifted values wrap int32
    dt = np.int16 if wide else np.int8
    a = data.draw(int_tensor(shapes[0], dt))
    b = data.draw(int_tensor(shapes[1], dt))
    zp, lo, hi = data.draw(out_clamp(dt))
    kw = dict(a_zp=a_zp, b_zp=b_zp, left_shift=ls, a_m0=a_m0, a_shift=a_sh, b_m0=b_m0,
              b_shift=b_sh, out_m0=o_m0, out_shift=o_sh, out_zp=zp, act_min=lo, act_max=hi,
              dtype=np.dtype(dt).name)
    same(felementwise.add(a, b, **kw), elementwise.add(a, b, **kw))


@BITEXACT
@given(data=st.data(), shapes=shapes_pair, a_zp=zero_points, b_zp=zero_points, m0=m0s,
       shift=shifts, wide=st.booleans())
def test_mul(data, shapes, a_zp, b_zp, m0, shift, wide) -> None:
    dt = np.int16 if wide else np.int8
    a = data.draw(int_tensor(shapes[0], dt))
    b = data.draw(int_tensor(shapes[1], dt))
    zp, lo, hi = data.draw(out_clamp(dt))
    kw = dict(a_zp=a_zp, b_zp=b_zp, m0=m0, shift=shift, out_zp=zp, act_min=lo, act_max=hi,
              dtype=np.dtype(dt).name)
    same(felementwise.mul(a, b, **kw), elementwise.mul(a, b, **kw))


@BITEXACT
@given(data=st.data(), shape=st.sampled_from([(0,), (1,), (4, 5)]),
       dtype=st.sampled_from([np.int8, np.int16]), lo=st.integers(-200, 100),
       width=st.integers(0, 300))
def test_clamp(data, shape, dtype, lo, width) -> None:
    x = data.draw(int_tensor(shape, dtype))
    same(felementwise.clamp(x, min=lo, max=lo + width), elementwise.clamp(x, min=lo, max=lo + width))


# -- pooling ---------------------------------------------------------------------------------
@st.composite
def pool_case(draw):
    x = draw(int_tensor((draw(dims(0, 2)), draw(dims(0, 3)), draw(dims(1, 6)), draw(dims(1, 6)))))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    st_ = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    assume(x.shape[2] + pads[0] + pads[2] >= k[0] and x.shape[3] + pads[1] + pads[3] >= k[1])
    return x, dict(kernel=k, strides=st_, pads=pads)


@BITEXACT
@given(case=pool_case(), dil=st.tuples(st.integers(1, 2), st.integers(1, 2)))
def test_max_pool2d(case, dil) -> None:
    x, kw = case
    assume(x.shape[2] + kw["pads"][0] + kw["pads"][2] >= dil[0] * (kw["kernel"][0] - 1) + 1)
    assume(x.shape[3] + kw["pads"][1] + kw["pads"][3] >= dil[1] * (kw["kernel"][1] - 1) + 1)
    same(fpooling.max_pool2d(x, dilations=dil, **kw), pooling.max_pool2d(x, dilations=dil, **kw))


@BITEXACT
@given(case=pool_case(), include=st.integers(0, 1), x_zp=zero_points)
def test_avg_pool2d(case, include, x_zp) -> None:
    x, kw = case
    kw.update(count_include_pad=include, x_zp=x_zp)
    same(fpooling.avg_pool2d(x, **kw), pooling.avg_pool2d(x, **kw))


@BITEXACT
@given(data=st.data(), shape=st.sampled_from([(0, 3, 2, 2), (1, 1, 1, 1), (2, 3, 4, 5), (2, 4, 7)]),
       x_zp=zero_points, m0=m0s, shift=st.integers(-31, 0), clamp=out_clamp())
def test_global_avg_pool(data, shape, x_zp, m0, shift, clamp) -> None:
    x = data.draw(int_tensor(shape))
    zp, lo, hi = clamp
    kw = dict(x_zp=x_zp, m0=m0, shift=shift, out_zp=zp, act_min=lo, act_max=hi)
    same(fpooling.global_avg_pool(x, **kw), pooling.global_avg_pool(x, **kw))


# -- quantize / requantize / LUT / resize ----------------------------------------------------
@BITEXACT
@given(data=st.data(), shape=st.sampled_from([(0,), (1,), (3, 7)]),
       scale=st.floats(1e-3, 10.0), zp=zero_points, dtype=st.sampled_from(["int8", "uint8", "int16"]))
def test_quantize_dequantize(data, shape, scale, zp, dtype) -> None:
    from hypothesis.extra import numpy as hnp
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e4, 1e4, width=32)))
    if dtype == "uint8":
        zp = abs(zp)
    same(fquantize.quantize_linear(x, scale, zp, dtype), quantize.quantize_linear(x, scale, zp, dtype))
    q = quantize.quantize_linear(x, scale, zp, dtype)
    same(fquantize.dequantize_linear(q, scale, zp), quantize.dequantize_linear(q, scale, zp))


@BITEXACT
@given(data=st.data(), shape=st.sampled_from([(0,), (1,), (4, 6)]), in_zp=st.integers(-1000, 1000),
       m0=m0s, shift=shifts, clamp=out_clamp(np.int16))
def test_requantize_op(data, shape, in_zp, m0, shift, clamp) -> None:
    x = data.draw(int_tensor(shape, np.int32))
    zp, lo, hi = clamp
    kw = dict(in_zp=in_zp, m0=m0, shift=shift, out_zp=zp, act_min=lo, act_max=hi, dtype="int16")
    same(fquantize.requantize_linear(x, **kw), quantize.requantize_linear(x, **kw))


@BITEXACT
@given(data=st.data(), shape=st.sampled_from([(0,), (1,), (2, 3, 4)]))
def test_lut_apply(data, shape) -> None:
    x = data.draw(int_tensor(shape))
    table = data.draw(int_tensor((256,)))
    same(flut.lut_apply(x, table), lut.lut_apply(x, table))


@BITEXACT
@given(data=st.data(), shape=st.sampled_from([(1, 1, 1, 1), (2, 3, 4, 5), (1, 2, 3), (3, 4)]),
       factors=st.tuples(st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 4])),
       shrink=st.booleans())
def test_resize_nearest(data, shape, factors, shrink) -> None:
    x = data.draw(int_tensor(shape))
    h, w = shape[-2:]
    sizes = shape[:-2] + ((max(1, h // factors[0]), max(1, w // factors[1])) if shrink
                          else (h * factors[0] + 1, w * factors[1]))
    same(fresize.resize_nearest(x, sizes=sizes), resize.resize_nearest(x, sizes=sizes))


# -- transformer -----------------------------------------------------------------------------
row_shapes = st.sampled_from([(1, 1), (3, 1), (2, 7), (2, 3, 16), (4, 40)])


@BITEXACT
@given(data=st.data(), shape=row_shapes, dtype=st.sampled_from([np.int8, np.int16]),
       axis=st.sampled_from([-1, 0]), x0=st.integers(-300, -1), out_bits=st.sampled_from([8, 16]))
def test_shiftmax(data, shape, dtype, axis, x0, out_bits) -> None:
    x = data.draw(int_tensor(shape, dtype))
    n = transformer_n(x0, 15)
    kw = dict(axis=axis, x0=x0, n=n, out_bits=out_bits)
    same(ftransformer.shiftmax(x, **kw), transformer.shiftmax(x, **kw))


def transformer_n(x0: int, n_max: int) -> int:
    """Largest n ≤ n_max within the kernels' overflow bound −x0·2^n ≤ 2^30."""
    n = n_max
    while -x0 * 2**n > 2**30:
        n -= 1
    return n


@BITEXACT
@given(data=st.data(), shape=row_shapes, x_zp=zero_points, x0=st.integers(-60, -1),
       lam=st.one_of(st.none(), st.integers(0, 100)), m0=m0s, shift=st.integers(-31, 0),
       clamp=out_clamp())
def test_shift_gelu(data, shape, x_zp, x0, lam, m0, shift, clamp) -> None:
    x = data.draw(int_tensor(shape))
    zp, lo, hi = clamp
    clip = dict(clip_min=-(2**31), clip_max=2**31 - 1) if lam is None else dict(
        clip_min=-lam, clip_max=lam)
    kw = dict(x0=x0, n=transformer_n(x0, 23), x_zp=x_zp, m0=m0, shift=shift, out_zp=zp,
              act_min=lo, act_max=hi, **clip)
    same(ftransformer.shift_gelu(x, **kw), transformer.shift_gelu(x, **kw))


@BITEXACT
@given(data=st.data(), shape=row_shapes, dtype=st.sampled_from([np.int8, np.int16]),
       axis=st.sampled_from([-1, 0]), iters=st.integers(1, 12), beta=st.booleans(),
       rms=st.booleans(), shift=st.integers(-31, 0), clamp=out_clamp())
def test_norms(data, shape, dtype, axis, iters, beta, rms, shift, clamp) -> None:
    x = data.draw(int_tensor(shape, dtype))
    c = shape[axis]
    b = data.draw(int_tensor((c,), np.int32)) if beta else None
    m0 = data.draw(st.lists(m0s, min_size=c, max_size=c))
    zp, lo, hi = clamp
    kw = dict(axis=axis, iters=iters, m0=m0, shift=shift, out_zp=zp, act_min=lo, act_max=hi)
    ref, fast = ((transformer.i_rmsnorm, ftransformer.i_rmsnorm) if rms
                 else (transformer.i_layernorm, ftransformer.i_layernorm))
    same(fast(x, b, **kw), ref(x, b, **kw))
