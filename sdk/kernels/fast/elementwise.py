"""Numba twins of :mod:`sdk.kernels.elementwise` (operands broadcast in NumPy first)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.errors import GraphError
from sdk.kernels.checks import check_range, integer_array, out_dtype
from sdk.kernels.fast.requant import mbqm, requant, wrap32


@njit(cache=True)
def add_loop(a, b, a_zp, b_zp, ls, a_m0, a_sh, b_m0, b_sh, o_m0, o_sh, zp, lo, hi, out):  # pragma: no cover
    for i in range(out.size):
        sa = mbqm(wrap32((np.int64(a[i]) - a_zp) << ls), a_m0, a_sh)
        sb = mbqm(wrap32((np.int64(b[i]) - b_zp) << ls), b_m0, b_sh)
        out[i] = requant(wrap32(sa + sb), o_m0, o_sh, zp, lo, hi)


@njit(cache=True)
def mul_loop(a, b, a_zp, b_zp, m0, sh, zp, lo, hi, out):  # pragma: no cover
    for i in range(out.size):
        p = wrap32((np.int64(a[i]) - a_zp) * (np.int64(b[i]) - b_zp))
        out[i] = requant(p, m0, sh, zp, lo, hi)


def _flat_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    shape = np.broadcast_shapes(a.shape, b.shape)
    fa = np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)
    fb = np.ascontiguousarray(np.broadcast_to(b, shape)).reshape(-1)
    return fa, fb, shape


def add(a: np.ndarray, b: np.ndarray, *, a_zp: int = 0, b_zp: int = 0, left_shift: int = 20,
        a_m0: int, a_shift: int, b_m0: int, b_shift: int, out_m0: int, out_shift: int,
        out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
        dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.elementwise.add`."""
    a = integer_array(a, "Add input A")
    b = integer_array(b, "Add input B")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    if not 0 <= int(left_shift) <= 30:
        raise GraphError(f"QAdd left_shift must be in [0, 30], got {left_shift}")
    fa, fb, shape = _flat_pair(a, b)
    out = np.empty(fa.size, dt)
    i64 = np.int64
    add_loop(fa, fb, i64(a_zp), i64(b_zp), i64(left_shift), i64(a_m0), i64(a_shift), i64(b_m0),
         i64(b_shift), i64(out_m0), i64(out_shift), i64(out_zp), i64(act_min), i64(act_max),
         out)
    return out.reshape(shape)


def mul(a: np.ndarray, b: np.ndarray, *, a_zp: int = 0, b_zp: int = 0, m0: int, shift: int,
        out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
        dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.elementwise.mul`."""
    a = integer_array(a, "Mul input A")
    b = integer_array(b, "Mul input B")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    fa, fb, shape = _flat_pair(a, b)
    out = np.empty(fa.size, dt)
    i64 = np.int64
    mul_loop(fa, fb, i64(a_zp), i64(b_zp), i64(m0), i64(shift), i64(out_zp), i64(act_min),
         i64(act_max), out)
    return out.reshape(shape)


@njit(cache=True)
def clamp_loop(x, lo, hi, out):  # pragma: no cover
    for i in range(x.size):
        v = x[i]
        out[i] = lo if v < lo else (min(v, hi))


def clamp(x: np.ndarray, *, min: int, max: int) -> np.ndarray:
    """Fast :func:`sdk.kernels.elementwise.clamp`."""
    x = integer_array(x, "Clamp input")
    if min > max:
        raise GraphError(f"QClamp min {min} is above max {max}")
    info = np.iinfo(x.dtype)
    lo, hi = int(np.clip(min, info.min, info.max)), int(np.clip(max, info.min, info.max))
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, x.dtype)
    clamp_loop(flat, x.dtype.type(lo), x.dtype.type(hi), out)
    return out.reshape(x.shape)
