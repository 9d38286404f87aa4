"""Numba twins of :mod:`sdk.kernels.cache` (same checks, same bits)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.kernels.cache import check_cache_write, position_value


@njit(cache=True)
def _write(out, new, pos):  # pragma: no cover
    # out, new viewed as [outer, rows, inner]
    for a in range(new.shape[0]):
        for r in range(new.shape[1]):
            for k in range(new.shape[2]):
                out[a, pos + r, k] = new[a, r, k]


@njit(cache=True)
def _mask(s, pos, fill):  # pragma: no cover
    # s viewed as [outer, T, C], modified in place
    for a in range(s.shape[0]):
        for i in range(s.shape[1]):
            for j in range(pos + i + 1, s.shape[2]):
                s[a, i, j] = fill


def kv_cache_write(cache: np.ndarray, new: np.ndarray, pos: Any, *, axis: int = 2
                   ) -> np.ndarray:
    """Fast :func:`sdk.kernels.cache.kv_cache_write`."""
    cache, new = np.asarray(cache), np.asarray(new)
    p = position_value(pos)
    ax = check_cache_write(cache, new, p, axis)
    outer = int(np.prod(cache.shape[:ax], dtype=np.int64))
    inner = int(np.prod(cache.shape[ax + 1:], dtype=np.int64))
    out = np.array(cache, copy=True, order="C")
    _write(out.reshape(outer, cache.shape[ax], inner),
           np.ascontiguousarray(new).reshape(outer, new.shape[ax], inner), p)
    return out


def causal_mask(scores: np.ndarray, pos: Any, *, fill: int | None = None) -> np.ndarray:
    """Fast :func:`sdk.kernels.cache.causal_mask`."""
    from sdk.kernels.cache import causal_mask as ref

    s = np.asarray(scores)
    if s.ndim < 2 or not np.issubdtype(s.dtype, np.integer):
        return ref(s, pos, fill=fill)  # the spec's checks and float fallback
    p = position_value(pos, "CausalMask position")
    t, c = s.shape[-2], s.shape[-1]
    if p < 0 or p + t > c:
        return ref(s, pos, fill=fill)  # raises the spec's one-line error
    fill = np.iinfo(s.dtype).min if fill is None else fill
    out = np.array(s, copy=True, order="C")
    _mask(out.reshape(-1, t, c), p, s.dtype.type(fill))
    return out
