"""Numba twins of the layout ops in :mod:`sdk.kernels.layout` (concat, transpose, slice,
gather; reshape is a view and needs none). Same signatures and results as the references;
any dtype. Transpose and slice are one strided copy: ``out[i] = x[offset + Σ_d i_d·stride_d]``
walked in output order, so writes are contiguous."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from sdk.errors import InputError
from sdk.kernels.layout import int_tuple


@njit(cache=True)
def _strided_copy(src, offset, strides, shape, out):  # pragma: no cover
    """``out.flat[i] = src[offset + Σ_d idx_d(i)·strides[d]]`` with ``idx`` the row-major
    multi-index of ``i`` in ``shape``; the last axis runs innermost."""
    rank = shape.size
    total = out.size
    if total == 0:
        return
    if rank == 0:
        out[0] = src[offset]
        return
    idx = np.zeros(rank, np.int64)
    last = shape[rank - 1]
    st_last = strides[rank - 1]
    base = offset
    i = 0
    while i < total:
        p = base
        for j in range(last):
            out[i + j] = src[p]
            p += st_last
        i += last
        # advance the odometer over the outer axes
        d = rank - 2
        while d >= 0:
            idx[d] += 1
            base += strides[d]
            if idx[d] < shape[d]:
                break
            base -= strides[d] * shape[d]
            idx[d] = 0
            d -= 1


def _elem_strides(shape: tuple[int, ...]) -> np.ndarray:
    st = np.ones(len(shape), np.int64)
    for d in range(len(shape) - 2, -1, -1):
        st[d] = st[d + 1] * shape[d + 1]
    return st


def _copy(x: np.ndarray, offset: int, strides: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, x.dtype)
    if out.size:
        _strided_copy(np.ascontiguousarray(x).reshape(-1), np.int64(offset), strides,
                      np.asarray(shape, np.int64), out.reshape(-1))
    return out


def transpose(x: np.ndarray, *, perm: Sequence[int] | None = None) -> np.ndarray:
    """Fast :func:`sdk.kernels.layout.transpose` (a contiguous copy)."""
    x = np.asarray(x)
    p = list(range(x.ndim))[::-1] if perm is None else [int(a) % max(x.ndim, 1) for a in perm]
    if sorted(p) != list(range(x.ndim)):
        raise InputError(f"Transpose perm {list(perm or [])} is not a permutation of "
                         f"0..{x.ndim - 1}")
    st = _elem_strides(x.shape)
    return _copy(x, 0, st[p], tuple(x.shape[a] for a in p))


def slice_(x: np.ndarray, starts: np.ndarray, ends: np.ndarray, axes: np.ndarray | None = None,
           steps: np.ndarray | None = None) -> np.ndarray:
    """Fast :func:`sdk.kernels.layout.slice_` (ONNX clamping of the bounds, then one strided
    copy)."""
    x = np.asarray(x)
    st, en = int_tuple(starts), int_tuple(ends)
    ax = int_tuple(axes) if axes is not None else list(range(len(st)))
    sp = int_tuple(steps) if steps is not None else [1] * len(st)
    sel = [slice(None)] * x.ndim
    for s, e, a, p in zip(st, en, ax, sp):
        if p == 0:
            raise InputError("Slice step must not be 0")
        a %= x.ndim
        n = x.shape[a]
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if p > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
        else:
            s, e = min(max(s, -1), n - 1), min(max(e, -1), n - 1)
        sel[a] = slice(s, e if e >= 0 else None, p)
    base = _elem_strides(x.shape)
    offset, strides, shape = 0, np.zeros(x.ndim, np.int64), []
    for d, sl in enumerate(sel):
        start, _, step = sl.indices(x.shape[d])
        count = len(range(*sl.indices(x.shape[d])))
        shape.append(count)
        strides[d] = base[d] * step
        if count:
            offset += start * base[d]
    if 0 in shape:
        return np.empty(shape, x.dtype)
    return _copy(x, offset, strides, tuple(shape))


@njit(cache=True)
def _take(src, idx, out):  # pragma: no cover
    """``out[o, j, i] = src[o, idx[j], i]``."""
    for o in range(src.shape[0]):
        for j in range(idx.size):
            row = src[o, idx[j]]
            orow = out[o, j]
            for i in range(row.size):
                orow[i] = row[i]


def gather(x: np.ndarray, indices: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Fast :func:`sdk.kernels.layout.gather` (negative indices wrap; out-of-range ones are an
    InputError)."""
    x = np.asarray(x)
    ax = axis % x.ndim
    n = x.shape[ax]
    idx = np.asarray(indices).astype(np.int64)
    flat = np.where(idx < 0, idx + n, idx).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= n):
        raise InputError(f"Gather index out of range for axis {axis} of size {n}: "
                         f"{int(idx.min())}..{int(idx.max())}")
    outer = int(np.prod(x.shape[:ax], dtype=np.int64))
    inner = int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    out = np.empty((outer, flat.size, inner), x.dtype)
    if out.size:
        _take(np.ascontiguousarray(x).reshape(outer, n, inner), flat, out)
    return out.reshape(x.shape[:ax] + idx.shape + x.shape[ax + 1:])


@njit(cache=True)
def _place(src, out, col):  # pragma: no cover
    for o in range(src.shape[0]):
        for i in range(src.shape[1]):
            out[o, col + i] = src[o, i]


def concat(inputs: Sequence[np.ndarray], *, axis: int) -> np.ndarray:
    """Fast :func:`sdk.kernels.layout.concat`."""
    arrays = [np.asarray(a) for a in inputs]
    if not arrays:
        raise InputError("Concat needs at least one input")
    first = arrays[0]
    ax = axis % first.ndim
    for a in arrays[1:]:
        if a.ndim != first.ndim or a.shape[:ax] != first.shape[:ax] or \
                a.shape[ax + 1:] != first.shape[ax + 1:]:
            raise InputError(f"Concat inputs {first.shape} and {a.shape} differ outside axis "
                             f"{axis}")
    dtype = np.result_type(*arrays)
    shape = list(first.shape)
    shape[ax] = sum(a.shape[ax] for a in arrays)
    outer = int(np.prod(first.shape[:ax], dtype=np.int64))
    inner = int(np.prod(first.shape[ax + 1:], dtype=np.int64))
    out = np.empty((outer, shape[ax] * inner), dtype)
    col = 0
    for a in arrays:
        width = a.shape[ax] * inner
        if outer and width:
            _place(np.ascontiguousarray(a, dtype=dtype).reshape(outer, width), out, col)
        col += width
    return out.reshape(shape)
