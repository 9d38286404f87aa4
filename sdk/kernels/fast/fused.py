"""Numba loops written for compiled whole-graph programs (:mod:`sdk.ops.codegen`).

Each loop writes into an output array it is handed (a view of the program's arena or a fresh
result), so a generated program allocates nothing per node. The arithmetic is that of the
twins in this package and of the NumPy specification (``sdk.kernels``); tests/compiled holds
every compiled program bit-equal to the specification.

* ``fc_small``: the fully-connected layer for few rows (a GEMV per row) with requantization
  fused: ``out[r, n] = requant(wrap32(Σ_k x[r, k]·w[n, k] − x_zp·Σ_k w[n, k] + bias[n]))``.
  Everything is computed modulo 2^32, which equals the specification's
  ``wrap32(Σ_k (x − x_zp)·w + bias)``: the zero-point term is hoisted out of the loop as
  ``x_zp·wsum[n]`` (``wsum`` computed once at bind time), leaving an int8×int8 → int32 dot
  product LLVM vectorizes.
* ``quantize_tensor`` / ``dequantize_tensor``: the float boundary with one scale and zero
  point (the per-element loops of :mod:`sdk.kernels.fast.quantize` take the per-axis case).
  A NaN/Inf input raises (the caller re-runs the specification, which reports it).
* ``nearest_4d``: nearest-neighbour resize of a 4-D tensor by per-axis source indices.
* ``kv_write``: :func:`sdk.kernels.cache.kv_cache_write` into a preallocated output.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sdk.kernels.fast.requant import requant, wrap32


@njit(cache=True)
def fc_small(x, w, wsum, bias, x_zp, m0, sh, zp, lo, hi, out):  # pragma: no cover
    """``out[r, n] = requant(wrap32(Σ_k (x[r, k] − x_zp)·w[n, k] + bias[n]), m0[n], sh[n])``."""
    rows, k = x.shape
    n_out = w.shape[0]
    for r in range(rows):
        xr = x[r]
        for n in range(n_out):
            wn = w[n]
            s = np.int32(0)
            for i in range(k):
                s += np.int32(xr[i]) * np.int32(wn[i])
            acc = np.int64(s) - x_zp * wsum[n] + bias[n]
            out[r, n] = requant(wrap32(acc), m0[n], sh[n], zp, lo, hi)


@njit(cache=True)
def quantize_tensor(x, s, z, lo, hi, out):  # pragma: no cover
    """``out = clamp(rint(x / s) + z, lo, hi)`` with ``x / s`` in float32 (one scale)."""
    for i in range(x.size):
        v = x[i]
        if not np.isfinite(v):
            raise ValueError("non-finite value in a quantized input")
        q = np.float64(np.rint(v / s)) + z
        out[i] = lo if q < lo else (min(q, hi))


@njit(cache=True)
def dequantize_tensor(q, s, z, out):  # pragma: no cover
    """``out = float32(q − z) · s`` (one scale)."""
    for i in range(q.size):
        out[i] = np.float32(np.int64(q[i]) - z) * s


@njit(cache=True)
def quantize_elements(x, s, z, lo, hi, out):  # pragma: no cover
    """:func:`quantize_tensor` with one scale and zero point per element (per-axis)."""
    for i in range(x.size):
        v = x[i]
        if not np.isfinite(v):
            raise ValueError("non-finite value in a quantized input")
        q = np.float64(np.rint(v / s[i])) + z[i]
        out[i] = lo if q < lo else (min(q, hi))


@njit(cache=True)
def dequantize_elements(q, s, z, out):  # pragma: no cover
    """:func:`dequantize_tensor` with one scale and zero point per element (per-axis)."""
    for i in range(q.size):
        out[i] = np.float32(np.int64(q[i]) - z[i]) * s[i]


@njit(cache=True)
def nearest_4d(x, i0, i1, i2, i3, out):  # pragma: no cover
    """``out[a, b, c, d] = x[i0[a], i1[b], i2[c], i3[d]]``."""
    for a in range(i0.size):
        for b in range(i1.size):
            for c in range(i2.size):
                src = x[i0[a], i1[b], i2[c]]
                dst = out[a, b, c]
                for d in range(i3.size):
                    dst[d] = src[i3[d]]


@njit(cache=True)
def kv_write(cache, new, pos, out):  # pragma: no cover
    """``out = cache`` with rows ``pos .. pos+T−1`` of axis 1 replaced by ``new``
    (both viewed as ``[outer, rows, inner]``); a write past the capacity raises."""
    c = cache.shape[1]
    t = new.shape[1]
    if pos < 0 or pos + t > c:
        raise ValueError("KVCacheWrite past the cache capacity")
    out[...] = cache
    for a in range(new.shape[0]):
        for r in range(t):
            for k in range(new.shape[2]):
                out[a, pos + r, k] = new[a, r, k]


@njit(cache=True)
def causal_fill(s, pos, fill, out):  # pragma: no cover
    """``out = s`` with column ``j`` of query row ``i`` set to ``fill`` where ``j > pos + i``
    (``s`` viewed as ``[outer, T, C]``); a position outside the cache raises."""
    t, c = s.shape[1], s.shape[2]
    if pos < 0 or pos + t > c:
        raise ValueError("CausalMask position outside the cache")
    for a in range(s.shape[0]):
        for i in range(t):
            for j in range(c):
                out[a, i, j] = fill if j > pos + i else s[a, i, j]


@njit(cache=True)
def copy_into(src, out):  # pragma: no cover
    """``out[...] = src`` (same shape; either may be a strided view)."""
    out[...] = src
