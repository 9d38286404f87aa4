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
* ``gemm_rows_nt``: a few-row integer GEMM against Bᵀ as stored (attention scores on K).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from sdk.kernels.fast.requant import mbqm, requant, wrap32


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
def add_tile_loop(a, b, a_zp, b_zp, ls, a_m0, a_sh, b_m0, b_sh, o_m0, o_sh, zp, lo, hi,
                  out):  # pragma: no cover
    """``add_loop`` of :mod:`sdk.kernels.fast.elementwise` (same formula) with ``b`` one row
    repeated over the rows of ``a``/``out`` ``[R, P]`` (a broadcast operand, not copied)."""
    for r in range(a.shape[0]):
        ar = a[r]
        orow = out[r]
        for i in range(a.shape[1]):
            sa = mbqm(wrap32((np.int64(ar[i]) - a_zp) << ls), a_m0, a_sh)
            sb = mbqm(wrap32((np.int64(b[i]) - b_zp) << ls), b_m0, b_sh)
            orow[i] = requant(wrap32(sa + sb), o_m0, o_sh, zp, lo, hi)


@njit(cache=True)
def mul_tile_loop(a, b, a_zp, b_zp, m0, sh, zp, lo, hi, out):  # pragma: no cover
    """``mul_loop`` of :mod:`sdk.kernels.fast.elementwise` (same formula) with ``b`` one row
    repeated over the rows of ``a``/``out`` ``[R, P]``."""
    for r in range(a.shape[0]):
        ar = a[r]
        orow = out[r]
        for i in range(a.shape[1]):
            p = wrap32((np.int64(ar[i]) - a_zp) * (np.int64(b[i]) - b_zp))
            orow[i] = requant(p, m0, sh, zp, lo, hi)


@njit(cache=True)
def gemm_rows_nt(a, bt, a_zp, b_zp, c):  # pragma: no cover
    """``c[i, j] = Σ_k (a[i, k] − a_zp)(bt[j, k] − b_zp)`` mod 2^32: ``gemm_rows`` of
    :mod:`sdk.kernels.fast.gemm` for ``B = btᵀ`` given by its rows (attention's ``q·Kᵀ``
    on K as it is stored: no transposed copy), any integer dtypes."""
    m, k = a.shape
    n = bt.shape[0]
    for i in range(m):
        ai = a[i]
        for j in range(n):
            bj = bt[j]
            s = np.int64(0)
            for kk in range(k):
                s += (np.int64(ai[kk]) - a_zp) * (np.int64(bj[kk]) - b_zp)
            c[i, j] = wrap32(s)


@njit(cache=True)
def copy_into(src, out):  # pragma: no cover
    """``out[...] = src`` (same shape; either may be a strided view)."""
    out[...] = src


@njit(cache=True)
def gather_rows(x, idx, out):  # pragma: no cover
    """``out[a, j, :] = x[a, idx[j], :]`` (``x`` viewed as ``[outer, n, inner]``, ``out`` as
    ``[outer, len(idx), inner]``): :func:`sdk.kernels.layout.gather` along one axis; negative
    indices wrap, an index outside ``[-n, n)`` raises (the caller re-runs the specification,
    which names it)."""
    n = x.shape[1]
    for j in range(idx.size):
        k = idx[j]
        if k < 0:
            k += n
        if k < 0 or k >= n:
            raise ValueError("Gather index out of range")
        for a in range(x.shape[0]):
            for i in range(x.shape[2]):
                out[a, j, i] = x[a, k, i]


@intrinsic
def view_at(typingctx, buf, offset, shape, dt):  # pragma: no cover - compiled
    """``buf[offset:offset + size].view(dt).reshape(shape)`` for a C-contiguous byte buffer
    (a program's weights or arena), as a C-contiguous array struct built in place: no bounds,
    size or alignment checks (the generator placed every tensor inside the buffer, aligned)
    and no reference of its own (the buffer is an argument of the running program and
    outlives the view). The checked slice-view-reshape costs Numba and LLVM tens of
    milliseconds of compile time per tensor; this costs a few instructions."""
    if not isinstance(buf, types.Array) or not isinstance(shape, types.BaseTuple):
        return None
    dtype = getattr(dt, "instance_type", None) or getattr(dt, "dtype", None)
    if not isinstance(dtype, types.Number):
        return None
    ndim = len(shape)
    arrty = types.Array(dtype, ndim, "C")
    sig = arrty(buf, offset, shape, dt)

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import populate_array

        bufv, off, shp, _ = args
        src = context.make_array(signature.args[0])(context, builder, bufv)
        intp = context.get_value_type(types.intp)
        base = builder.gep(src.data, [context.cast(builder, off, signature.args[1], types.intp)])
        elem = context.get_data_type(dtype)
        data = builder.bitcast(base, elem.as_pointer())
        dims = [context.cast(builder, builder.extract_value(shp, i), shape[i], types.intp)
                for i in range(ndim)]
        itemsize = context.get_abi_sizeof(elem)
        strides, step = [], ir.Constant(intp, itemsize)
        for d in reversed(dims):
            strides.insert(0, step)
            step = builder.mul(step, d)
        out = context.make_array(arrty)(context, builder)
        populate_array(out, data=data, shape=cgutils.pack_array(builder, dims),
                       strides=cgutils.pack_array(builder, strides),
                       itemsize=ir.Constant(intp, itemsize), meminfo=None)
        return out._getvalue()

    return sig, codegen
