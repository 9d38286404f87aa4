"""Scalar Numba versions of the rounding rule in :mod:`sdk.kernels.requant` (same bits)."""

from __future__ import annotations

import numpy as np
from numba import njit

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


@njit(cache=True, inline="always")
def wrap32(x: int) -> int:
    """Two's-complement wrap of an int64 to int32."""
    return ((np.int64(x) + np.int64(2**31)) & np.int64(0xFFFFFFFF)) - np.int64(2**31)


@njit(cache=True, inline="always")
def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul of two int32 values (as int64)."""
    a = np.int64(a)
    b = np.int64(b)
    if a == _INT32_MIN and b == _INT32_MIN:
        return np.int64(_INT32_MAX)
    ab = a * b
    s = ab + (np.int64(1 << 30) if ab >= 0 else np.int64(1 - (1 << 30)))
    return s >> 31 if s >= 0 else -((-s) >> 31)


@njit(cache=True, inline="always")
def rdpot(x: int, e: int) -> int:
    """RoundingDivideByPOT: x / 2^e rounded half away from zero."""
    x = np.int64(x)
    mask = (np.int64(1) << e) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if (x & mask) > threshold else 0)


@njit(cache=True, inline="always")
def mbqm(x: int, m0: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier (TFLite Micro reference)."""
    left = max(0, shift)
    right = -shift if shift < 0 else 0
    return rdpot(srdhm(wrap32(np.int64(x) << left), m0), right)


@njit(cache=True, inline="always")
def requant(x: int, m0: int, shift: int, zp: int, qmin: int, qmax: int) -> int:
    """``clamp(mbqm(x, m0, shift) + zp, qmin, qmax)``."""
    v = mbqm(x, m0, shift) + zp
    if v < qmin:
        return np.int64(qmin)
    if v > qmax:
        return np.int64(qmax)
    return v
