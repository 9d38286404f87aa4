"""Numba loops that apply the rounding rule to whole int32 accumulator arrays."""

from __future__ import annotations

import numpy as np
from numba import njit

from sdk.kernels.fast.requant import requant, wrap32


@njit(cache=True)
def requant_cols(acc, bias, m0, shift, zp, qmin, qmax, out):  # pragma: no cover
    """``out[i, j] = requant(wrap32(acc[i, j] + bias[j]), m0[j], shift[j])`` (2-D, per column)."""
    m, n = acc.shape
    for i in range(m):
        for j in range(n):
            out[i, j] = requant(wrap32(np.int64(acc[i, j]) + bias[j]), m0[j], shift[j], zp,
                                qmin, qmax)


@njit(cache=True)
def requant_rows(acc, bias, m0, shift, zp, qmin, qmax, out):  # pragma: no cover
    """``out[i, j] = requant(wrap32(acc[i, j] + bias[i]), m0[i], shift[i])`` (2-D, per row)."""
    m, n = acc.shape
    for i in range(m):
        b = np.int64(bias[i])
        mi = np.int64(m0[i])
        si = np.int64(shift[i])
        for j in range(n):
            out[i, j] = requant(wrap32(np.int64(acc[i, j]) + b), mi, si, zp, qmin, qmax)


@njit(cache=True)
def requant_flat(acc, m0, shift, zp, qmin, qmax, out):  # pragma: no cover
    """``out[i] = requant(acc[i], m0, shift)`` with one multiplier (1-D)."""
    for i in range(acc.size):
        out[i] = requant(acc[i], m0, shift, zp, qmin, qmax)
