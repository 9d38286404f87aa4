"""Element-wise integer ops: TFLite-style Add and Mul with rescaling, and Clamp (ReLU/ReLU6).

Operands broadcast with NumPy rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.kernels.checks import check_range, integer_array, out_dtype
from sdk.kernels.requant import mbqm, quantize_multiplier, requantize, wrap_int32

#: QAdd's ``left_shift``: 20 when both inputs are int8, 15 otherwise (TFLite's integer ADD)
ADD_LEFT_SHIFT = {"int8": 20, "int16": 15}


def add_left_shift(*dtypes: str) -> int:
    """``left_shift`` of a QAdd over inputs of ``dtypes``: 20 if all are int8, else 15."""
    return ADD_LEFT_SHIFT["int8"] if all(d == "int8" for d in dtypes) else ADD_LEFT_SHIFT["int16"]


def add_params(s_a: float, s_b: float, s_out: float, left_shift: int,
               sign: int = 1) -> dict[str, int]:
    """The multipliers of a QAdd (TFLite's integer ADD): with ``t = 2·max(s_a, s_b)``,
    ``M_a = s_a/t``, ``M_b = ±s_b/t`` (``sign = −1`` makes a subtraction) and
    ``M_out = t/(2^left_shift·s_out)``, each split into (m0, shift), from the float32
    scales."""
    sa, sb, so = (float(np.float32(v)) for v in (s_a, s_b, s_out))
    twice_max = 2.0 * max(sa, sb)
    a_m0, a_shift = quantize_multiplier(sa / twice_max)
    b_m0, b_shift = quantize_multiplier(sign * sb / twice_max)
    o_m0, o_shift = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    return {"left_shift": left_shift, "a_m0": a_m0, "a_shift": a_shift, "b_m0": b_m0,
            "b_shift": b_shift, "out_m0": o_m0, "out_shift": o_shift}


def add(a: np.ndarray, b: np.ndarray, *, a_zp: int = 0, b_zp: int = 0, left_shift: int = 20,
        a_m0: int, a_shift: int, b_m0: int, b_shift: int, out_m0: int, out_shift: int,
        out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
        dtype: Any = "int8") -> np.ndarray:
    """QAdd (TFLite integer Add):

    ``sa = mbqm(wrap32((a − a_zp)·2^left_shift), a_m0, a_shift)``, likewise ``sb``;
    ``out = clamp(mbqm(wrap32(sa + sb), out_m0, out_shift) + out_zp, act_min, act_max)``.

    The quantizer picks ``left_shift`` (TFLite: 20 for int8) and the three multipliers from
    ``twice_max = 2·max(s_a, s_b)``: ``M_a = s_a/twice_max``, ``M_b = s_b/twice_max``,
    ``M_out = twice_max / (2^left_shift · s_out)``.
    """
    a = integer_array(a, "Add input A")
    b = integer_array(b, "Add input B")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    if not 0 <= int(left_shift) <= 30:
        raise GraphError(f"QAdd left_shift must be in [0, 30], got {left_shift}")
    ls = np.int64(left_shift)
    sa = mbqm(wrap_int32((a.astype(np.int64) - a_zp) << ls), a_m0, a_shift)
    sb = mbqm(wrap_int32((b.astype(np.int64) - b_zp) << ls), b_m0, b_shift)
    return requantize(wrap_int32(sa + sb), out_m0, out_shift, out_zp, act_min, act_max, dt)


def mul(a: np.ndarray, b: np.ndarray, *, a_zp: int = 0, b_zp: int = 0, m0: int, shift: int,
        out_zp: int = 0, act_min: int | None = None, act_max: int | None = None,
        dtype: Any = "int8") -> np.ndarray:
    """QMul: ``out = requantize(wrap32((a − a_zp)·(b − b_zp)), m0, shift, out_zp, act_min,
    act_max)`` with ``M = s_a·s_b/s_out``."""
    a = integer_array(a, "Mul input A")
    b = integer_array(b, "Mul input B")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    prod = wrap_int32((a.astype(np.int64) - a_zp) * (b.astype(np.int64) - b_zp))
    return requantize(prod, m0, shift, out_zp, act_min, act_max, dt)


def clamp(x: np.ndarray, *, min: int, max: int) -> np.ndarray:
    """QClamp: ``clip(x, min, max)`` in the quantized domain; dtype and scale unchanged.

    ReLU is ``min = zero_point``; ReLU6 is ``max = zero_point + round(6 / scale)``.
    """
    x = integer_array(x, "Clamp input")
    if min > max:
        raise GraphError(f"QClamp min {min} is above max {max}")
    info = np.iinfo(x.dtype)
    lo, hi = np.clip(min, info.min, info.max), np.clip(max, info.min, info.max)
    return np.clip(x, lo, hi).astype(x.dtype)
