"""Fixed-capacity caches: the integer ops that let a step graph keep attention keys/values.

``KVCacheWrite`` writes the new rows of a key or value tensor into a cache of fixed capacity at
a run-time position; ``CausalMask`` hides, in an attention score matrix over the whole cache,
every column a query row may not see. Both move integers only (no arithmetic on values), so
they are exact on any integer dtype, and the capacity is a static shape: the arena plan stays
static however many tokens have been written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import InputError


def position_value(pos: Any, what: str = "KVCacheWrite position") -> int:
    """The position operand (an integer scalar or a one-element tensor) as a Python int."""
    p = np.asarray(pos)
    if p.size != 1 or not np.issubdtype(p.dtype, np.integer):
        raise InputError(f"{what} must be one integer (int32 scalar), got {p.dtype} "
                         f"{list(p.shape)}")
    return int(p.reshape(-1)[0])


def check_cache_write(cache: np.ndarray, new: np.ndarray, pos: int, axis: int) -> int:
    """Validate a cache write; returns the normalized axis. One-line InputErrors."""
    if cache.ndim != new.ndim:
        raise InputError(f"KVCacheWrite: cache has rank {cache.ndim} but the new rows have rank "
                         f"{new.ndim}; both are [B, H, rows, D]")
    ax = axis % cache.ndim
    other = [d for k, d in enumerate(cache.shape) if k != ax]
    if other != [d for k, d in enumerate(new.shape) if k != ax]:
        raise InputError(f"KVCacheWrite: new rows {list(new.shape)} do not fit cache "
                         f"{list(cache.shape)} outside axis {ax}")
    if cache.dtype != new.dtype:
        raise InputError(f"KVCacheWrite: cache is {cache.dtype} but the new rows are "
                         f"{new.dtype}; requantize them onto the cache's grid")
    cap, t = cache.shape[ax], new.shape[ax]
    if pos < 0 or pos + t > cap:
        raise InputError(f"KVCacheWrite: writing {t} row(s) at position {pos} passes the cache "
                         f"capacity {cap}; reset the state or compile with a larger capacity")
    return ax


def kv_cache_write(cache: np.ndarray, new: np.ndarray, pos: Any, *, axis: int = 2
                   ) -> np.ndarray:
    """``KVCacheWrite(cache[B, H, C, D], new[B, H, T, D], pos) -> cache'``:

    ``cache'[:, :, p, :] = new[:, :, p − pos, :]`` for ``pos ≤ p < pos + T``, and
    ``cache'[:, :, p, :] = cache[:, :, p, :]`` elsewhere (rows are along ``axis``, default 2).
    Requires ``0 ≤ pos`` and ``pos + T ≤ C`` (else a one-line InputError). The input cache is
    not modified; the result is a new array of the cache's dtype and shape.
    """
    cache, new = np.asarray(cache), np.asarray(new)
    p = position_value(pos)
    ax = check_cache_write(cache, new, p, axis)
    out = cache.copy()
    index = [slice(None)] * cache.ndim
    index[ax] = slice(p, p + new.shape[ax])
    out[tuple(index)] = new
    return out


def causal_mask(scores: np.ndarray, pos: Any, *, fill: int | None = None) -> np.ndarray:
    """``CausalMask(scores[..., T, C], pos) -> scores'``: query row ``i`` is the token at
    position ``pos + i``; it may see cache column ``j`` only when ``j ≤ pos + i``:

    ``out[..., i, j] = scores[..., i, j]`` if ``j ≤ pos + i`` else ``fill``,

    ``fill`` defaulting to the minimum of the scores' integer dtype, so a following Shiftmax
    gives every hidden column the same smallest weight whatever the cache held there (unused
    rows of a cache never change the output). Requires ``pos + T ≤ C``.
    """
    s = np.asarray(scores)
    if s.ndim < 2:
        raise InputError(f"CausalMask: scores need rank >= 2 ([..., T, C]), got {list(s.shape)}")
    p = position_value(pos, "CausalMask position")
    t, c = s.shape[-2], s.shape[-1]
    if p < 0 or p + t > c:
        raise InputError(f"CausalMask: {t} query row(s) at position {p} pass the cache "
                         f"capacity {c}; reset the state or compile with a larger capacity")
    if fill is None:
        fill = np.iinfo(s.dtype).min if np.issubdtype(s.dtype, np.integer) else -np.inf
    visible = np.arange(c)[None, :] <= (p + np.arange(t))[:, None]
    return np.where(visible, s, np.asarray(fill, s.dtype)).astype(s.dtype)
