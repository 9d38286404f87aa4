"""Numba twins of :func:`sdk.kernels.resize.resize_nearest` and ``resize_bilinear`` (4-D and lower ranks are viewed as
``[outer, H, W]`` rows; other shapes fall back to one gather per axis)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.kernels.resize import bilinear_taps, nearest_indices
from sdk.kernels.resize import resize_bilinear as _reference_bilinear
from sdk.kernels.resize import resize_nearest as _reference


@njit(cache=True)
def _gather_hw(x, ys, xs, out):  # pragma: no cover
    for b in range(x.shape[0]):
        for i in range(ys.size):
            row = x[b, ys[i]]
            orow = out[b, i]
            for j in range(xs.size):
                orow[j] = row[xs[j]]


def resize_nearest(x: np.ndarray, *, sizes: Any) -> np.ndarray:
    """Fast :func:`sdk.kernels.resize.resize_nearest` (spatial-only resizes of the last two
    axes take the compiled path)."""
    x = np.asarray(x)
    sz = tuple(int(s) for s in np.asarray(sizes).ravel())
    if (x.ndim < 2 or len(sz) != x.ndim or sz[:-2] != x.shape[:-2] or x.size == 0
            or any(s <= 0 for s in sz) or x.dtype.kind not in "iu"):
        return _reference(x, sizes=sizes)
    outer = int(np.prod(x.shape[:-2], dtype=np.int64))
    x3 = np.ascontiguousarray(x).reshape(outer, x.shape[-2], x.shape[-1])
    out = np.empty((outer, sz[-2], sz[-1]), x.dtype)
    _gather_hw(x3, nearest_indices(x.shape[-2], sz[-2]), nearest_indices(x.shape[-1], sz[-1]),
               out)
    return out.reshape(sz)


@njit(cache=True)
def _bilinear_hw(d, ylo, yhi, wy, xlo, xhi, wx, b, zp, lo_v, hi_v, out):  # pragma: no cover
    one = np.int64(1) << b
    bits = 2 * b
    half = np.int64(1) << (bits - 1)
    for n in range(d.shape[0]):
        for i in range(ylo.size):
            t = d[n, ylo[i]]
            u = d[n, yhi[i]]
            wyh = wy[i]
            wyl = one - wyh
            for j in range(xlo.size):
                wxh = wx[j]
                wxl = one - wxh
                acc = (wyl * (wxl * (np.int64(t[xlo[j]]) - zp) + wxh * (np.int64(t[xhi[j]]) - zp))
                       + wyh * (wxl * (np.int64(u[xlo[j]]) - zp)
                                + wxh * (np.int64(u[xhi[j]]) - zp)))
                if acc < 0:
                    v = zp - ((-acc + half) >> bits)
                else:
                    v = zp + ((acc + half) >> bits)
                if v < lo_v:
                    v = lo_v
                elif v > hi_v:
                    v = hi_v
                out[n, i, j] = v


def resize_bilinear(x: np.ndarray, *, sizes: Any, coord_mode: str = "half_pixel",
                    frac_bits: int = 10, zero_point: int = 0) -> np.ndarray:
    """Fast :func:`sdk.kernels.resize.resize_bilinear` (same taps, one compiled loop)."""
    x = np.asarray(x)
    sz = tuple(int(s) for s in np.asarray(sizes).ravel())
    if (x.ndim < 2 or len(sz) != x.ndim or sz[:-2] != x.shape[:-2] or x.dtype.kind not in "iu"
            or min(sz[-2:]) <= 0 or min(x.shape[-2:]) <= 0 or not 1 <= int(frac_bits) <= 15):
        return _reference_bilinear(x, sizes=sizes, coord_mode=coord_mode, frac_bits=frac_bits,
                                   zero_point=zero_point)
    b = int(frac_bits)
    ylo, yhi, wy = bilinear_taps(x.shape[-2], sz[-2], coord_mode, b)
    xlo, xhi, wx = bilinear_taps(x.shape[-1], sz[-1], coord_mode, b)
    outer = int(np.prod(x.shape[:-2], dtype=np.int64))
    x3 = np.ascontiguousarray(x).reshape(outer, x.shape[-2], x.shape[-1])
    out = np.empty((outer, sz[-2], sz[-1]), x.dtype)
    info = np.iinfo(x.dtype)
    _bilinear_hw(x3, ylo, yhi, wy, xlo, xhi, wx, np.int64(b), np.int64(zero_point),
                 np.int64(info.min), np.int64(info.max), out)
    return out.reshape(sz)


bilinear_loop = _bilinear_hw  # the compiled-program name of the loop (sdk.ops.codegen)
