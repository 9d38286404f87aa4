"""Dyadic requantization: the one rounding rule every integer executor shares.

This is the TFLite Micro / CMSIS-NN / gemmlowp rule ("double rounding"):

* ``quantize_multiplier(M) -> (m0, shift)`` with ``M = m0 · 2^(shift − 31)``, ``m0`` a Q31
  integer in ``[2^30, 2^31)`` (negative for negative M), ``shift`` a signed left shift.
* ``saturating_rounding_doubling_high_mul(a, b) = trunc((a·b + nudge) / 2^31)`` with
  ``nudge = 2^30`` if ``a·b ≥ 0`` else ``1 − 2^30`` (C truncating division), saturating the
  single overflow case ``a = b = −2^31`` to ``2^31 − 1``.
* ``rounding_divide_by_pot(x, e) = (x >> e) + (remainder > threshold)`` with
  ``remainder = x & (2^e − 1)``, ``threshold = (2^e − 1) >> 1`` plus 1 when ``x < 0``:
  round half away from zero.
* ``mbqm(x, m0, shift) = rounding_divide_by_pot(srdhm(wrap32(x · 2^max(shift,0)), m0),
  max(−shift, 0))``.
* ``requantize(acc, m0, shift, zp, qmin, qmax) = clamp(mbqm(acc, m0, shift) + zp, qmin, qmax)``.

All functions accept NumPy arrays (any integer dtype) or Python ints and broadcast ``m0`` /
``shift`` against ``x`` (per-channel multipliers are arrays shaped to broadcast).
"""

from __future__ import annotations

import math

import numpy as np

from sdk.errors import GraphError

class RequantizationError(GraphError, ValueError):
    """A requantization multiplier (input scale × weight scale / output scale) that is not
    finite or does not fit Q31 with a shift ≤ 30: a scale in the graph is out of range (an
    SDK error; still a ValueError for callers that catch that)."""


INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """Split a real multiplier into a Q31 integer and a left shift (TFLite QuantizeMultiplier).

    ``M = m0 · 2^(shift − 31)``. Zero maps to ``(0, 0)``. Multipliers so small that the
    shift would fall below −31 also map to ``(0, 0)``, as in TFLite.
    """
    m = float(real_multiplier)
    if not math.isfinite(m):
        raise RequantizationError(
            f"requantization multiplier must be finite, got {m}: a quantization scale in the "
            "model is NaN/inf or zero; check the weights and scales for non-finite values")
    if m == 0.0:
        return 0, 0
    frac, shift = math.frexp(m)  # m = frac * 2^shift, 0.5 <= |frac| < 1
    # TFLite uses std::round (half away from zero), not Python's half-to-even round().
    q = int(math.copysign(math.floor(abs(frac) * (1 << 31) + 0.5), frac))
    if abs(q) == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise RequantizationError(
            f"requantization multiplier {m:.3g} is too large (shift {shift} > 30): an input ×"
            " weight scale is far above its output scale (huge or corrupt weights); check the "
            "model's weights for huge values and re-export it")
    return int(q), int(shift)


def quantize_multiplier_array(multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of :func:`quantize_multiplier`: int32 ``m0`` and int32 ``shift`` arrays."""
    flat = np.asarray(multipliers, dtype=np.float64).ravel()
    pairs = [quantize_multiplier(float(v)) for v in flat]
    m0 = np.array([p[0] for p in pairs], dtype=np.int32).reshape(np.shape(multipliers))
    sh = np.array([p[1] for p in pairs], dtype=np.int32).reshape(np.shape(multipliers))
    return m0, sh


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values to the int32 range (what C's int32 arithmetic does)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values (returns int64 array)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C's truncating division by 2^31
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), q)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def mbqm(x: np.ndarray, m0: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (TFLite Micro reference, 32-bit path). Returns int64."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(wrap_int32(x << left), m0), right)


def requantize(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray, zero_point: int,
               qmin: int, qmax: int, dtype: str | np.dtype = np.int8) -> np.ndarray:
    """``clamp(mbqm(acc, m0, shift) + zero_point, qmin, qmax)`` cast to ``dtype``."""
    out = mbqm(acc, m0, shift) + np.int64(zero_point)
    return np.clip(out, qmin, qmax).astype(dtype)


def round_half_away_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` rounded half away from zero, for ``den > 0`` (int64).

    TFLite's average-pool rounding, ``(num ± den//2) / den`` with C truncating division;
    also the mean rounding of I-LayerNorm.
    """
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    half = den // 2
    return np.where(num >= 0, (num + half) // den, -((-num + half) // den))


def saturate_int32(x: np.ndarray) -> np.ndarray:
    """Clamp int64 values to the int32 range (a saturating 32-bit add/convert)."""
    return np.clip(np.asarray(x, dtype=np.int64), INT32_MIN, INT32_MAX)
