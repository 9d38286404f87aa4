"""Numba twins of :mod:`sdk.kernels.transformer` (rows along ``axis`` are moved last and
processed one at a time; same formulas, same bits)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.errors import GraphError, InputError
from sdk.kernels.checks import channel_vector, check_range, integer_array, out_dtype
from sdk.kernels.fast.requant import requant
from sdk.kernels.transformer import check_shift_exp, shiftmax_dtype

_INT31 = 2**31 - 1


@njit(cache=True, inline="always")
def _shift_exp(x, x0, n):  # pragma: no cover
    t = x + (x >> 1) - (x >> 4)
    lo = n * x0
    t = max(t, lo)
    q = t // x0
    r = t - q * x0
    return ((r - 2 * x0) << (n - q)) >> 1


@njit(cache=True)
def _shiftmax(x, x0, n, out_shift, out):  # pragma: no cover
    rows, c = x.shape
    e = np.empty(c, np.int64)
    for i in range(rows):
        m = np.int64(x[i, 0])
        for j in range(c):
            if x[i, j] > m:
                m = np.int64(x[i, j])
        total = np.int64(0)
        for j in range(c):
            e[j] = _shift_exp(np.int64(x[i, j]) - m, x0, n)
            total += e[j]
        total = min(total, _INT31)
        factor = _INT31 // total
        for j in range(c):
            out[i, j] = (e[j] * factor) >> out_shift


@njit(cache=True)
def _gelu(x, x0, n, sig_shift, cmin, cmax, x_zp, m0, sh, zp, lo, hi, out):  # pragma: no cover
    rows, c = x.shape
    for i in range(rows):
        m = np.int64(0)
        for j in range(c):
            v = np.int64(x[i, j]) - x_zp
            v = cmin if v < cmin else (min(v, cmax))
            m = max(m, v)
        em = _shift_exp(-m, x0, n)
        for j in range(c):
            xc = np.int64(x[i, j]) - x_zp
            xs = cmin if xc < cmin else (min(xc, cmax))
            e = _shift_exp(xs - m, x0, n)
            total = e + em
            total = min(total, _INT31)
            sig = (e * (_INT31 // total)) >> sig_shift
            out[i, j] = requant(xc * sig, m0, sh, zp, lo, hi)


@njit(cache=True)
def _norm(x, beta, centre, iters, m0, sh, zp, lo, hi, out):  # pragma: no cover
    rows, c = x.shape
    y = np.empty(c, np.int64)
    for i in range(rows):
        mu = np.int64(0)
        if centre:
            s = np.int64(0)
            for j in range(c):
                s += x[i, j]
            half = c // 2
            mu = (s + half) // c if s >= 0 else -((-s + half) // c)
        var = np.int64(0)
        for j in range(c):
            y[j] = np.int64(x[i, j]) - mu
            var += y[j] * y[j]
        k = np.int64(2**16)
        for _ in range(iters):
            k = (k + var // k) >> 1
            k = max(k, 1)
        factor = _INT31 // k
        for j in range(c):
            v = ((y[j] * factor) >> 1) + beta[j]
            v = -(2**31) if v < -(2**31) else (min(v, _INT31))
            out[i, j] = requant(v, m0[j], sh[j], zp, lo, hi)


def _rows(x: np.ndarray, axis: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` with ``axis`` moved last, as a contiguous 2-D array of rows."""
    moved = np.moveaxis(x, axis, -1)
    rows = int(np.prod(moved.shape[:-1], dtype=np.int64))
    return np.ascontiguousarray(moved).reshape(rows, moved.shape[-1]), moved.shape


def _unrows(out: np.ndarray, moved_shape: tuple[int, ...], axis: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(out.reshape(moved_shape), -1, axis))


def shiftmax(x: np.ndarray, *, axis: int = -1, x0: int, n: int = 15,
             out_bits: int = 16) -> np.ndarray:
    """Fast :func:`sdk.kernels.transformer.shiftmax`."""
    x = integer_array(x, "Shiftmax input")
    check_shift_exp(x0, n)
    dt = shiftmax_dtype(out_bits)
    if x.size == 0:
        return np.zeros(x.shape, dtype=dt)
    x2, moved = _rows(x, axis)
    out = np.empty(x2.shape, dt)
    _shiftmax(x2, np.int64(x0), np.int64(n), np.int64(32 - int(out_bits)), out)
    return _unrows(out, moved, axis)


def shift_gelu(x: np.ndarray, *, axis: int = -1, x0: int, n: int = 23, sig_bits: int = 8,
               clip_min: int = -(2**31), clip_max: int = 2**31 - 1, x_zp: int = 0, m0: int,
               shift: int, out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
               dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.transformer.shift_gelu`."""
    x = integer_array(x, "ShiftGELU input")
    check_shift_exp(x0, n)
    if not 2 <= int(sig_bits) <= 16:
        raise GraphError(f"ShiftGELU sig_bits must be in [2, 16], got {sig_bits}")
    if clip_min > clip_max:
        raise GraphError(f"ShiftGELU clip_min {clip_min} is above clip_max {clip_max}")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    if x.size == 0:
        return np.zeros(x.shape, dtype=dt)
    x2, moved = _rows(x, axis)
    out = np.empty(x2.shape, dt)
    i64 = np.int64
    _gelu(x2, i64(x0), i64(n), i64(32 - int(sig_bits)), i64(clip_min), i64(clip_max),
          i64(x_zp), i64(m0), i64(shift), i64(out_zp), i64(act_min), i64(act_max), out)
    return _unrows(out, moved, axis)


def _norm_op(x: np.ndarray, beta_q: np.ndarray | None, axis: int, iters: int, m0: Any,
             shift: Any, out_zp: int, act_min: int, act_max: int, dtype: Any, centre: bool,
             what: str) -> np.ndarray:
    x = integer_array(x, f"{what} input")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    if int(iters) < 1:
        raise GraphError(f"{what} iters must be >= 1, got {iters}")
    if x.ndim == 0:
        raise InputError(f"{what} needs at least a 1-D input")
    ax = axis % x.ndim
    c = x.shape[ax]
    if x.size == 0:
        return np.zeros(x.shape, dtype=dt)
    beta = (np.zeros(c, np.int64) if beta_q is None
            else channel_vector(beta_q, c, f"{what} beta_q", np.int64))
    x2, moved = _rows(x, ax)
    out = np.empty(x2.shape, dt)
    i64 = np.int64
    _norm(x2, beta, centre, i64(iters), channel_vector(m0, c, "m0", np.int64),
          channel_vector(shift, c, "shift", np.int64), i64(out_zp), i64(act_min),
          i64(act_max), out)
    return _unrows(out, moved, ax)


def i_layernorm(x: np.ndarray, beta_q: np.ndarray | None = None, *, axis: int = -1,
                iters: int = 10, m0: Any, shift: Any, out_zp: int = 0, act_min: int | None = None,
                act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.transformer.i_layernorm`."""
    return _norm_op(x, beta_q, axis, iters, m0, shift, out_zp, act_min, act_max, dtype, True,
                    "ILayerNorm")


def i_rmsnorm(x: np.ndarray, beta_q: np.ndarray | None = None, *, axis: int = -1,
              iters: int = 10, m0: Any, shift: Any, out_zp: int = 0, act_min: int | None = None,
              act_max: int | None = None, dtype: Any = "int8") -> np.ndarray:
    """Fast :func:`sdk.kernels.transformer.i_rmsnorm`."""
    return _norm_op(x, beta_q, axis, iters, m0, shift, out_zp, act_min, act_max, dtype, False,
                    "IRMSNorm")


# the compiled-program names of the loops (sdk.ops.codegen)
shiftmax_loop = _shiftmax
gelu_loop = _gelu
norm_loop = _norm
