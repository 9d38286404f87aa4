"""Numba twins of :mod:`sdk.kernels.quantize`."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from sdk.kernels.checks import check_range, integer_array, out_dtype
from sdk.kernels.fast.requant import requant
from sdk.kernels.quantize import check_finite, scale_zero_point


@njit(cache=True)
def _quantize(x, s, z, lo, hi, out):  # pragma: no cover
    for i in range(x.size):
        v = np.float64(np.rint(x[i] / s[i])) + z[i]
        out[i] = lo if v < lo else (min(v, hi))


@njit(cache=True)
def _dequantize(q, s, z, out):  # pragma: no cover
    for i in range(q.size):
        out[i] = np.float32(np.int64(q[i]) - z[i]) * s[i]


@njit(cache=True)
def requantize_loop(x, in_zp, m0, sh, zp, lo, hi, out):  # pragma: no cover
    for i in range(x.size):
        out[i] = requant(np.int64(x[i]) - in_zp, m0, sh, zp, lo, hi)


def _flat_params(scale: Any, zero_point: Any, shape: tuple[int, ...], axis: int | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    s, z = scale_zero_point(scale, zero_point, len(shape), axis)
    fs = np.ascontiguousarray(np.broadcast_to(s, shape), dtype=np.float32).reshape(-1)
    fz = np.ascontiguousarray(np.broadcast_to(z, shape), dtype=np.int64).reshape(-1)
    return fs, fz


def quantize_linear(x: np.ndarray, scale: Any, zero_point: Any = 0, dtype: Any = "int8",
                    axis: int | None = None) -> np.ndarray:
    """Fast :func:`sdk.kernels.quantize.quantize_linear`."""
    x = np.asarray(x, dtype=np.float32)
    dt = out_dtype(dtype)
    check_finite(x)
    fs, fz = _flat_params(scale, zero_point, x.shape, axis)
    info = np.iinfo(dt)
    out = np.empty(x.size, dt)
    _quantize(np.ascontiguousarray(x).reshape(-1), fs, fz, float(info.min), float(info.max), out)
    return out.reshape(x.shape)


def dequantize_linear(q: np.ndarray, scale: Any, zero_point: Any = 0,
                      axis: int | None = None) -> np.ndarray:
    """Fast :func:`sdk.kernels.quantize.dequantize_linear`."""
    q = integer_array(q, "DequantizeLinear input")
    fs, fz = _flat_params(scale, zero_point, q.shape, axis)
    out = np.empty(q.size, np.float32)
    _dequantize(np.ascontiguousarray(q).reshape(-1), fs, fz, out)
    return out.reshape(q.shape)


def requantize_linear(x: np.ndarray, *, in_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
                      act_min: int | None = None, act_max: int | None = None, dtype: Any = "int8"
                      ) -> np.ndarray:
    """Fast :func:`sdk.kernels.quantize.requantize_linear`."""
    x = integer_array(x, "Requantize input")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    out = np.empty(x.size, dt)
    i64 = np.int64
    requantize_loop(np.ascontiguousarray(x).reshape(-1), i64(in_zp), i64(m0), i64(shift),
                i64(out_zp), i64(act_min), i64(act_max), out)
    return out.reshape(x.shape)
