"""Numba twins of :mod:`sdk.kernels.pooling`."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.errors import InputError
from sdk.kernels.checks import channel_vector, check_range, integer_array, out_dtype
from sdk.kernels.fast.requant import requant, wrap32
from sdk.kernels.pooling import pool_geometry


@njit(cache=True)
def max_pool_loop(x, kh, kw, sh, sw, pt, pl, dh, dw, lo, out):  # pragma: no cover
    n_, c_, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for n in range(n_):
        for c in range(c_):
            for y in range(oh):
                for xo in range(ow):
                    m = lo
                    for i in range(kh):
                        yy = y * sh + i * dh - pt
                        if yy < 0 or yy >= h:
                            continue
                        for j in range(kw):
                            xx = xo * sw + j * dw - pl
                            if 0 <= xx < w and x[n, c, yy, xx] > m:
                                m = x[n, c, yy, xx]
                    out[n, c, y, xo] = m


@njit(cache=True)
def _avg(x, kh, kw, sh, sw, pt, pl, include_pad, zp, lo, hi, out):  # pragma: no cover
    n_, c_, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    for n in range(n_):
        for c in range(c_):
            for y in range(oh):
                for xo in range(ow):
                    total = np.int64(0)
                    count = np.int64(0)
                    for i in range(kh):
                        yy = y * sh + i - pt
                        for j in range(kw):
                            xx = xo * sw + j - pl
                            if 0 <= yy < h and 0 <= xx < w:
                                total += x[n, c, yy, xx]
                                count += 1
                            elif include_pad:
                                total += zp
                    if include_pad:
                        count = kh * kw
                    if count == 0:
                        v = zp
                    elif total >= 0:
                        v = (total + count // 2) // count
                    else:
                        v = -((-total + count // 2) // count)
                    out[n, c, y, xo] = lo if v < lo else (min(v, hi))


def max_pool2d(x: np.ndarray, *, kernel: Any, strides: Any = (1, 1), pads: Any = (0, 0, 0, 0),
               dilations: Any = (1, 1)) -> np.ndarray:
    """Fast :func:`sdk.kernels.pooling.max_pool2d`."""
    x = integer_array(x, "MaxPool input")
    k, st, pd, dl, o = pool_geometry(x.shape, kernel, strides, pads, dilations)
    out = np.empty(x.shape[:2] + o, x.dtype)
    max_pool_loop(np.ascontiguousarray(x), k[0], k[1], st[0], st[1], pd[0], pd[1], dl[0], dl[1],
         x.dtype.type(np.iinfo(x.dtype).min), out)
    return out


def avg_pool2d(x: np.ndarray, *, kernel: Any, strides: Any = (1, 1), pads: Any = (0, 0, 0, 0),
               count_include_pad: int = 0, x_zp: int = 0) -> np.ndarray:
    """Fast :func:`sdk.kernels.pooling.avg_pool2d`."""
    x = integer_array(x, "AvgPool input")
    k, st, pd, _, o = pool_geometry(x.shape, kernel, strides, pads, (1, 1))
    out = np.empty(x.shape[:2] + o, x.dtype)
    info = np.iinfo(x.dtype)
    _avg(np.ascontiguousarray(x), k[0], k[1], st[0], st[1], pd[0], pd[1],
         bool(count_include_pad), np.int64(x_zp), np.int64(info.min), np.int64(info.max), out)
    return out


@njit(cache=True)
def global_avg_pool_loop(x, zp, m0, sh, ozp, lo, hi, out):  # pragma: no cover
    n_, c_, p = x.shape
    for n in range(n_):
        for c in range(c_):
            s = np.int64(0)
            for i in range(p):
                s += np.int64(x[n, c, i]) - zp
            out[n, c] = requant(wrap32(s), m0[c], sh[c], ozp, lo, hi)


def global_avg_pool(x: np.ndarray, *, x_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
                    act_min: int | None = None, act_max: int | None = None,
                    dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.pooling.global_avg_pool`."""
    x = integer_array(x, "GlobalAvgPool input")
    if x.ndim < 3:
        raise InputError(f"GlobalAvgPool needs x [N, C, spatial...], got shape {x.shape}")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    n, c = x.shape[:2]
    p = int(np.prod(x.shape[2:], dtype=np.int64))
    out = np.empty((n, c), dt)
    global_avg_pool_loop(np.ascontiguousarray(x).reshape(n, c, p), np.int64(x_zp),
         channel_vector(m0, c, "m0", np.int64), channel_vector(shift, c, "shift", np.int64),
         np.int64(out_zp), np.int64(act_min), np.int64(act_max), out)
    return out.reshape((n, c) + (1,) * (x.ndim - 2))


avg_pool_loop = _avg  # the compiled-program name of the loop (sdk.ops.codegen)
