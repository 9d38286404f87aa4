"""256-entry int8 lookup tables (sigmoid, tanh, any smooth int8→int8 function) and QLut.

A table is built once at compile time in float64:
``table[q + 128] = clamp(round_half_away(f(s_in·(q − z_in)) / s_out) + z_out, −128, 127)``
for every int8 ``q``; applying it is one gather, ``out = table[x + 128]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdk.errors import GraphError, InputError

# Output quantization TFLite fixes for int8 logistic / tanh: the whole [0, 1) resp. [-1, 1)
# range in 256 steps.
SIGMOID_OUT = (1.0 / 256.0, -128)
TANH_OUT = (1.0 / 128.0, 0)


def build_lut(fn: Callable[[np.ndarray], np.ndarray], in_scale: float, in_zp: int,
              out_scale: float, out_zp: int) -> np.ndarray:
    """The int8 table of ``fn`` for the given input/output quantization (formula above)."""
    if not (np.isfinite(in_scale) and in_scale > 0 and np.isfinite(out_scale) and out_scale > 0):
        raise GraphError(f"LUT scales must be finite and > 0, got in {in_scale}, out {out_scale}")
    q = np.arange(-128, 128, dtype=np.float64)
    y = np.asarray(fn(float(in_scale) * (q - int(in_zp))), dtype=np.float64) / float(out_scale)
    if not np.all(np.isfinite(y)):
        raise GraphError("LUT function returned non-finite values on the input range")
    r = np.sign(y) * np.floor(np.abs(y) + 0.5) + int(out_zp)
    return np.clip(r, -128, 127).astype(np.int8)


def sigmoid_lut(in_scale: float, in_zp: int, out_scale: float = SIGMOID_OUT[0],
                out_zp: int = SIGMOID_OUT[1]) -> np.ndarray:
    """Table of the logistic function ``1 / (1 + e^−x)``."""
    return build_lut(lambda v: 0.5 * (1.0 + np.tanh(0.5 * v)), in_scale, in_zp, out_scale,
                     out_zp)


def tanh_lut(in_scale: float, in_zp: int, out_scale: float = TANH_OUT[0],
             out_zp: int = TANH_OUT[1]) -> np.ndarray:
    """Table of ``tanh(x)``."""
    return build_lut(np.tanh, in_scale, in_zp, out_scale, out_zp)


def lut_apply(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """QLut: ``out = table[x + 128]`` for int8 ``x`` (table int8 ``[256]``)."""
    x = np.asarray(x)
    table = np.asarray(table)
    if x.dtype != np.int8:
        raise InputError(f"QLut input must be int8, got {x.dtype}; requantize it to int8 first")
    if table.shape != (256,) or table.dtype != np.int8:
        raise InputError(f"QLut table must be int8 [256], got {table.dtype} {table.shape}")
    return table[x.astype(np.int64) + 128]
