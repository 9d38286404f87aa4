"""Numba twins of :mod:`sdk.kernels.conv`: channel-last im2col into int16 + the packed GEMM
for ordinary convolutions (a direct loop for inputs whose centred values do not fit int16), a
plane-vectorized int32 loop for depthwise convolutions. Same signatures and bits as the
references."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.errors import GraphError, InputError
from sdk.kernels.checks import channel_vector, check_range, int_tuple, integer_array, out_dtype
from sdk.kernels.conv import ConvGeometry, conv_geometry
from sdk.kernels.fast.gemm import fits_int16, gemm_nt, gemm_nt_parallel, pack_rows, padded_depth
from sdk.kernels.fast.requant_loops import requant_rows


@njit(cache=True)
def to_hwc(x, zp, c0, cg, out):  # pragma: no cover
    """``out[y, x, c] = x[c0 + c, y, x] − zp`` as int16 (one group's channels, channel-last)."""
    h, w = x.shape[1], x.shape[2]
    for c in range(cg):
        plane = x[c0 + c]
        for y in range(h):
            for xx in range(w):
                out[y, xx, c] = np.int16(np.int64(plane[y, xx]) - zp)


@njit(cache=True)
def im2col(xh, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, cols):  # pragma: no cover
    """``cols[y·OW + x, (i·kw + j)·C + c] = xh[y·sh + i·dh − pt, x·sw + j·dw − pl, c]``
    (0 in the padding): each (i, j) tap is one contiguous run of C channels."""
    h, w, cg = xh.shape
    for y in range(oh):
        for xo in range(ow):
            row = cols[y * ow + xo]
            for i in range(kh):
                yy = y * sh + i * dh - pt
                for j in range(kw):
                    xx = xo * sw + j * dw - pl
                    k0 = (i * kw + j) * cg
                    if 0 <= yy < h and 0 <= xx < w:
                        src = xh[yy, xx]
                        for c in range(cg):
                            row[k0 + c] = src[c]
                    else:
                        for c in range(cg):
                            row[k0 + c] = 0


@njit(cache=True)
def to_hwc_at(x, zp, c0, cg, top, left, out):  # pragma: no cover
    """``out[top + y, left + x, c] = x[c0 + c, y, x] − zp`` as int16: :func:`to_hwc` into
    the interior of a zero-bordered buffer (compiled programs; :func:`im2col_padded` reads
    it without bounds checks)."""
    h, w = x.shape[1], x.shape[2]
    if top < 0 or left < 0 or c0 < 0:
        raise ValueError("to_hwc_at: negative offsets")
    for c in range(cg):
        plane = x[c0 + c]
        for y in range(h):
            dst = out[top + y]
            for xx in range(w):
                dst[left + xx, c] = np.int16(np.int64(plane[y, xx]) - zp)


@njit(cache=True)
def im2col_padded(xp, kh, kw, sh, sw, dh, dw, oh, ow, cols):  # pragma: no cover
    """:func:`im2col` of an image already zero-bordered so every tap is inside it:
    ``cols[y·OW + x, (i·kw + j)·C + c] = xp[y·sh + i·dh, x·sw + j·dw, c]`` (``xp`` C-contiguous
    ``[H', W', C]``). No bounds checks; with ``dw == 1`` the ``kw`` taps of a kernel row are one
    run of ``kw·C`` values. Columns past ``kh·kw·C`` are left as they are (zero padding)."""
    cg = xp.shape[2]
    flat = xp.reshape((xp.shape[0], xp.shape[1] * cg))
    run = kw * cg
    for y in range(oh):
        for xo in range(ow):
            row = cols[y * ow + xo]
            for i in range(kh):
                src = flat[y * sh + i * dh]
                # the index checks let LLVM drop Numba's negative-index wraparound and
                # vectorize the copies (the generator sized xp so they always pass)
                if dw == 1:
                    s0 = xo * sw * cg
                    k0 = i * run
                    if s0 < 0 or k0 < 0:
                        raise ValueError("im2col_padded: a tap outside the bordered image")
                    for t in range(run):
                        row[k0 + t] = src[s0 + t]
                else:
                    for j in range(kw):
                        s0 = (xo * sw + j * dw) * cg
                        k0 = (i * kw + j) * cg
                        if s0 < 0 or k0 < 0:
                            raise ValueError("im2col_padded: a tap outside the bordered image")
                        for c in range(cg):
                            row[k0 + c] = src[s0 + c]


@njit(cache=True)
def _direct(x, w, zp, sh, sw, pt, pl, dh, dw, group, acc):  # pragma: no cover
    """``acc[o, y, x] = Σ_{c,i,j} (x[g·cg + c, ·, ·] − zp)·w[o, c, i, j]`` mod 2^32, direct."""
    h, wd = x.shape[1], x.shape[2]
    o_n, cg, kh, kw = w.shape
    og = o_n // group
    oh, ow = acc.shape[1], acc.shape[2]
    for o in range(o_n):
        c0 = (o // og) * cg
        for y in range(oh):
            for xo in range(ow):
                s = np.int64(0)
                for c in range(cg):
                    for i in range(kh):
                        yy = y * sh + i * dh - pt
                        if yy < 0 or yy >= h:
                            continue
                        for j in range(kw):
                            xx = xo * sw + j * dw - pl
                            if 0 <= xx < wd:
                                s += (np.int64(x[c0 + c, yy, xx]) - zp) * np.int64(w[o, c, i, j])
                acc[o, y, xo] = np.int32(((s + 2**31) & 0xFFFFFFFF) - 2**31)


@njit(cache=True)
def depthwise_loop(x, w, zp, sh, sw, pt, pl, dh, dw, acc):  # pragma: no cover
    """``acc[o, y, x] = Σ_{i,j} (x[o // mult, y·sh + i·dh − pt, x·sw + j·dw − pl] − zp)·w[o, 0, i, j]``
    mod 2^32, in int32 arithmetic (wrapping sums and products are exact mod 2^32).

    Each input plane is centred and zero-padded once, split by stride phase into flat
    sub-planes ``xs[ry, rx, Y·Ws + X] = xc[Y·sh + ry, X·sw + rx]`` (``Ws`` = padded width / sw).
    Output ``(y, x)`` then sits at ``f = y·Ws + x`` and tap ``(i, j)`` reads sub-plane
    ``(i·dh mod sh, j·dw mod sw)`` at ``f + (i·dh div sh)·Ws + (j·dw div sw)``: one contiguous,
    branch-free multiply-add over the whole plane per tap, which LLVM vectorizes; the
    columns ``x ≥ OW`` of each row are computed and dropped."""
    c_n, h, wd = x.shape
    o_n, _, kh, kw = w.shape
    mult = o_n // c_n
    oh, ow = acc.shape[1], acc.shape[2]
    hp = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(wd + pl, (ow - 1) * sw + (kw - 1) * dw + 1)
    ws = (wp + sw - 1) // sw
    xs = np.zeros((sh, sw, ((hp + sh - 1) // sh) * ws), np.int32)
    n_full = (oh - 1) * ws + ow
    full = np.empty(n_full, np.int32)
    zp32 = np.int32(zp)  # x − zp mod 2^32 is all the sum needs
    for c in range(c_n):
        plane = x[c]
        for y in range(h):
            ry, yy = (y + pt) % sh, (y + pt) // sh
            src = plane[y]
            for rx in range(sw):
                x0 = (rx - pl) % sw  # first input column landing in phase rx
                if x0 >= wd:
                    continue
                dst = xs[ry, rx, yy * ws + (x0 + pl) // sw:]
                for k in range((wd - x0 + sw - 1) // sw):
                    dst[k] = np.int32(src[x0 + k * sw]) - zp32
        for m in range(mult):
            o = c * mult + m
            full[:] = 0
            for i in range(kh):
                for j in range(kw):
                    wv = np.int32(w[o, 0, i, j])
                    off = (i * dh // sh) * ws + j * dw // sw
                    run = xs[i * dh % sh, j * dw % sw, off:off + n_full]
                    for f in range(n_full):
                        full[f] += wv * run[f]
            a = acc[o]
            for y in range(oh):
                a[y, :] = full[y * ws:y * ws + ow]


def _accumulate(x: np.ndarray, w: np.ndarray, g: ConvGeometry, x_zp: int,
                depthwise: bool, parallel: bool = False) -> np.ndarray:
    acc = np.empty((g.n, g.o, g.oh, g.ow), np.int32)
    if acc.size == 0:
        return acc
    if x.size == 0 or w.size == 0:
        acc[...] = 0
        return acc
    x = np.ascontiguousarray(x)
    w = np.ascontiguousarray(w)
    zp = np.int64(x_zp)
    sh, sw = g.strides
    dh, dw = g.dilations
    pt, pl = g.pads[0], g.pads[1]
    if depthwise:
        for n in range(g.n):
            depthwise_loop(x[n], w, zp, sh, sw, pt, pl, dh, dw, acc[n])
        return acc
    if not (fits_int16(x, x_zp) and fits_int16(w, 0)):
        for n in range(g.n):
            _direct(x[n], w, zp, sh, sw, pt, pl, dh, dw, g.group, acc[n])
        return acc
    cg, og = g.c // g.group, g.o // g.group
    depth = cg * g.kh * g.kw
    kp = padded_depth(depth)
    cols = np.zeros((g.oh * g.ow, kp), np.int16)
    xh = np.empty((g.h, g.w, cg), np.int16)
    for grp in range(g.group):
        # weights in the (i, j, c) order of the columns
        wg = np.ascontiguousarray(w[grp * og:(grp + 1) * og].transpose(0, 2, 3, 1))
        wp = pack_rows(wg.reshape(og, depth), np.int64(0), kp)
        for n in range(g.n):
            to_hwc(x[n], zp, grp * cg, cg, xh)
            im2col(xh, g.kh, g.kw, sh, sw, pt, pl, dh, dw, g.oh, g.ow, cols)
            (gemm_nt_parallel if parallel else gemm_nt)(
                wp, cols, acc[n, grp * og:(grp + 1) * og].reshape(og, g.oh * g.ow))
    return acc


def _conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: Any, pads: Any,
          dilations: Any, group: int, x_zp: int, m0: Any, shift: Any, out_zp: int,
          act_min: int, act_max: int, dtype: Any, depthwise: bool,
          parallel: bool = False) -> np.ndarray:
    g = conv_geometry(x.shape, w.shape, strides, pads, dilations, group)
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    acc = _accumulate(x, w, g, x_zp, depthwise, parallel)
    b = np.zeros(g.o, np.int64) if bias is None else channel_vector(bias, g.o, "bias", np.int64)
    m = channel_vector(m0, g.o, "m0", np.int64)
    s = channel_vector(shift, g.o, "shift", np.int64)
    out = np.empty(acc.shape, dt)
    p = g.oh * g.ow
    for n in range(g.n):
        requant_rows(acc[n].reshape(g.o, p), b, m, s, np.int64(out_zp), np.int64(act_min),
                     np.int64(act_max), out[n].reshape(g.o, p))
    return out


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
           strides: Any = (1, 1), pads: Any = (0, 0, 0, 0), dilations: Any = (1, 1),
           group: int = 1, x_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
           act_min: int | None = None, act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.conv.conv2d`."""
    x = integer_array(x, "Conv input")
    w = integer_array(w, "Conv weights")
    return _conv(x, w, bias, strides, pads, dilations, group, x_zp, m0, shift, out_zp,
                 act_min, act_max, dtype, depthwise=False)


def conv2d_parallel(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
                    strides: Any = (1, 1), pads: Any = (0, 0, 0, 0), dilations: Any = (1, 1),
                    group: int = 1, x_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
                    act_min: int | None = None, act_max: int | None = None,
                    dtype: Any = "int8") -> np.ndarray:
    """:func:`conv2d` with its GEMM on ``numba.get_num_threads()`` threads; same bits."""
    x = integer_array(x, "Conv input")
    w = integer_array(w, "Conv weights")
    return _conv(x, w, bias, strides, pads, dilations, group, x_zp, m0, shift, out_zp,
                 act_min, act_max, dtype, depthwise=False, parallel=True)


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *,
                     strides: Any = (1, 1), pads: Any = (0, 0, 0, 0), dilations: Any = (1, 1),
                     group: int | None = None, x_zp: int = 0, m0: Any, shift: Any,
                     out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
                     dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.conv.depthwise_conv2d`."""
    x = integer_array(x, "DepthwiseConv input")
    c = x.shape[1] if x.ndim == 4 else -1
    if group is not None and int(group) != c:
        raise GraphError(f"DepthwiseConv2d needs group == C ({c}), got {group}")
    if np.ndim(w) != 4 or np.shape(w)[1] != 1:
        raise InputError(f"DepthwiseConv2d weights must be [C*mult, 1, kh, kw], got "
                         f"{np.shape(w)}")
    w = integer_array(w, "DepthwiseConv weights")
    return _conv(x, w, bias, strides, pads, dilations, c, x_zp, m0, shift, out_zp, act_min,
                 act_max, dtype, depthwise=True)


def conv1d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *, stride: Any = 1,
           pads: Any = (0, 0), dilation: Any = 1, group: int = 1, x_zp: int = 0, m0: Any,
           shift: Any, out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
           dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.conv.conv1d`."""
    x = integer_array(x, "Conv1d input")
    w = integer_array(w, "Conv1d weights")
    if x.ndim != 3 or w.ndim != 3:
        raise InputError(f"Conv1d needs x [N,C,L] and w [O,C/group,k], got {x.shape} and "
                         f"{w.shape}")
    pl, pr = int_tuple(pads, 2, "pads")
    out = conv2d(x[:, :, None, :], w[:, :, None, :], bias,
                 strides=(1, int_tuple(stride, 1, "stride")[0]), pads=(0, pl, 0, pr),
                 dilations=(1, int_tuple(dilation, 1, "dilation")[0]), group=group, x_zp=x_zp,
                 m0=m0, shift=shift, out_zp=out_zp, act_min=act_min, act_max=act_max,
                 dtype=dtype)
    return out[:, :, 0, :]
