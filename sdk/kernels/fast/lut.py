"""Numba twin of :func:`sdk.kernels.lut.lut_apply` (table builders run once, at compile time,
so they have no twin)."""

from __future__ import annotations

import numpy as np
from numba import njit

from sdk.errors import InputError


@njit(cache=True)
def _gather(x, table, out):  # pragma: no cover
    for i in range(x.size):
        out[i] = table[np.int64(x[i]) + 128]


def lut_apply(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Fast :func:`sdk.kernels.lut.lut_apply`: ``out = table[x + 128]``."""
    x = np.asarray(x)
    table = np.asarray(table)
    if x.dtype != np.int8:
        raise InputError(f"QLut input must be int8, got {x.dtype}; requantize it to int8 first")
    if table.shape != (256,) or table.dtype != np.int8:
        raise InputError(f"QLut table must be int8 [256], got {table.dtype} {table.shape}")
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, np.int8)
    _gather(flat, table, out)
    return out.reshape(x.shape)


lut_loop = _gather  # the compiled-program name of the loop (sdk.ops.codegen)
