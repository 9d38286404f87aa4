"""Numba twin of :func:`sdk.kernels.resize.resize_nearest` (4-D and lower ranks are viewed as
``[outer, H, W]`` rows; other shapes fall back to one gather per axis)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.kernels.resize import nearest_indices
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
