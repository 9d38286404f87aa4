"""Numba twins of the exit rules in :mod:`sdk.exits.rules` (same results, bit for bit; the
tests in tests/exits compare every pair, scores exactly at a threshold included)."""

from __future__ import annotations

import numpy as np
from numba import njit

from sdk.exits.rules import E_ONE, EntropyTable


@njit(cache=True)
def margin_row(q):  # pragma: no cover
    top = np.int64(-(1 << 40))
    second = np.int64(-(1 << 40))
    for i in range(q.size):
        v = np.int64(q[i])
        if v > top:
            second = top
            top = v
        elif v > second:
            second = v
    return top - second


@njit(cache=True)
def argmax_row(q):  # pragma: no cover
    best = 0
    for i in range(1, q.size):
        if q[i] > q[best]:
            best = i
    return best


@njit(cache=True)
def entropy_row(q, exp, ln, shift, s16):  # pragma: no cover
    top = np.int64(q[0])
    for i in range(1, q.size):
        top = max(top, np.int64(q[i]))
    w = np.int64(0)
    a = np.int64(0)
    last = exp.size - 1
    for i in range(q.size):
        d = top - np.int64(q[i])
        d = min(d, last)
        e = exp[d]
        w += e
        a += e * d
    j = (w - E_ONE) >> shift
    j = min(j, ln.size - 1)
    return -(ln[j] + (s16 * a) // w)


@njit(cache=True)
def _margin_rows(q, out):  # pragma: no cover
    for n in range(q.shape[0]):
        out[n] = margin_row(q[n])


@njit(cache=True)
def _entropy_rows(q, exp, ln, shift, s16, out):  # pragma: no cover
    for n in range(q.shape[0]):
        out[n] = entropy_row(q[n], exp, ln, shift, s16)


def margin_scores(q: np.ndarray) -> np.ndarray:
    """Fast :func:`sdk.exits.rules.margin_scores`."""
    q = np.ascontiguousarray(q)
    out = np.empty(q.shape[0], np.int64)
    _margin_rows(q, out)
    return out.astype(np.int32)


def entropy_scores(q: np.ndarray, table: EntropyTable) -> np.ndarray:
    """Fast :func:`sdk.exits.rules.entropy_scores`."""
    q = np.ascontiguousarray(q)
    exp, ln = table.arrays()
    out = np.empty(q.shape[0], np.int64)
    _entropy_rows(q, exp, ln, np.int64(table.shift), np.int64(table.s16), out)
    return out


def argmax_int(q: np.ndarray) -> np.ndarray:
    """Fast :func:`sdk.exits.rules.argmax_int`."""
    q = np.ascontiguousarray(q)
    return np.array([argmax_row(q[n]) for n in range(q.shape[0])], np.int32)
