"""Boundary ops (QuantizeLinear, DequantizeLinear) and the integer Requantize op."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError, InputError
from sdk.kernels.checks import check_range, integer_array, out_dtype
from sdk.kernels.requant import requantize


def scale_zero_point(scale: Any, zero_point: Any, ndim: int, axis: int | None
              ) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scale, dtype=np.float32)
    z = np.asarray(zero_point, dtype=np.int64)
    if s.ndim == 0:
        return s, z
    if axis is None:
        raise GraphError("per-axis scale needs the attribute axis")
    ax = axis % ndim
    shape = [1] * ndim
    shape[ax] = s.size
    return s.reshape(shape), np.broadcast_to(z, s.shape).reshape(shape)


def check_finite(x: np.ndarray) -> None:
    """QuantizeLinear input must be finite (NaN/inf have no integer image)."""
    if not np.all(np.isfinite(x)):
        raise InputError("QuantizeLinear input contains NaN or inf; clean the input first")


def quantize_linear(x: np.ndarray, scale: Any, zero_point: Any = 0, dtype: Any = "int8",
                    axis: int | None = None) -> np.ndarray:
    """``q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)``.

    ``x / scale`` is computed in float32 (as ONNX QuantizeLinear does); a per-axis scale needs
    ``axis``.
    """
    x = np.asarray(x, dtype=np.float32)
    dt = out_dtype(dtype)
    check_finite(x)
    s, z = scale_zero_point(scale, zero_point, x.ndim, axis)
    info = np.iinfo(dt)
    q = np.rint(x / s).astype(np.float64) + z
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize_linear(q: np.ndarray, scale: Any, zero_point: Any = 0,
                      axis: int | None = None) -> np.ndarray:
    """``x = float32(q − zero_point) · scale`` (float32 result)."""
    q = integer_array(q, "DequantizeLinear input")
    s, z = scale_zero_point(scale, zero_point, q.ndim, axis)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def requantize_linear(x: np.ndarray, *, in_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
                      act_min: int | None = None, act_max: int | None = None, dtype: Any = "int8"
                      ) -> np.ndarray:
    """Requantize op: ``clamp(mbqm(wrap32(x − in_zp), m0, shift) + out_zp, act_min, act_max)``.

    ``m0``/``shift`` are scalars (per tensor); the rounding rule is :mod:`sdk.kernels.requant`.
    """
    x = integer_array(x, "Requantize input")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    centred = x.astype(np.int64) - np.int64(in_zp)
    return requantize(centred, np.int64(m0), np.int64(shift), out_zp, act_min, act_max, dt)
