"""Integer exit rules: the NumPy specification.

Every rule turns the integer logits of an exit head (int8/int16, as the integer graph holds
them, before any DequantizeLinear) into an integer *confidence score*; the exit fires when
``score >= threshold`` (integers on both sides, so the NumPy spec, the Numba twins in
:mod:`sdk.exits.fast` and the MCU firmware take the same exit for the same input, a score
exactly at the threshold included). The last exit always fires.

* ``margin``: top-1 minus top-2 logit, in the head's integer units. Softmax is monotone, so
  this orders inputs as the max-softmax probability ratio ``p1 / p2 = exp(scale * margin)``
  does, without a float.
* ``entropy``: minus the softmax entropy in Q16 nats, from two integer tables built once at
  compile time (:class:`EntropyTable`): ``E[d] = round(2^15 exp(-scale d))`` for the distance
  ``d`` of each logit below the top one, and ``LN`` for ``ln(W / 2^15)`` of the sum ``W``.
  ``H = ln W + scale * sum(E[d] d) / W`` is then ``LN[(W - 2^15) >> shift] +
  (S16 * A) // W`` with ``A = sum(E[d] d)`` and ``S16 = round(scale 2^16)``.
* ``patience`` (PABEE): the number of consecutive heads, ending at this one, whose argmax
  (lowest index on ties) agrees; the threshold is the patience.
* ``gate`` (ECO-M2F): a gating head on the first stage's features predicts, per exit, whether
  that exit suffices; its integer logit for exit k is the score of exit k, so the depth is
  known once the first stage has run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdk.errors import InputError

RULES = ("margin", "entropy", "patience", "gate")

#: Q formats of the entropy tables
E_ONE = 1 << 15
H_ONE = 1 << 16
MAX_LN_TABLE = 1024


def argmax_int(q: np.ndarray) -> np.ndarray:
    """Row-wise argmax of integer logits [N, C], the lowest index on ties (int32 [N])."""
    return np.argmax(np.asarray(q), axis=-1).astype(np.int32)


def margin_scores(q: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 of each row of integer logits [N, C] (int32 [N]; 0 on a tie)."""
    q = np.asarray(q).astype(np.int32)
    if q.ndim != 2 or q.shape[1] < 2:
        raise InputError(f"margin needs integer logits [N, C >= 2], got shape {q.shape}")
    part = np.sort(q, axis=1)
    return (part[:, -1] - part[:, -2]).astype(np.int32)


@dataclass(frozen=True)
class EntropyTable:
    """The integer tables of the ``entropy`` rule for one head (built from its logit scale
    once, stored in the bundle as integers; the runtime never recomputes them)."""

    exp: tuple[int, ...]       #: E[d] = round(2^15 exp(-scale d)); d beyond the end -> last
    ln: tuple[int, ...]        #: LN[j] = round(2^16 ln((2^15 + (j << shift) + half) / 2^15))
    shift: int
    s16: int                   #: round(scale * 2^16)

    @classmethod
    def build(cls, scale: float, classes: int, max_distance: int = 255) -> EntropyTable:
        if not (scale > 0 and math.isfinite(scale)) or classes < 2:
            raise InputError(f"entropy table needs a positive logit scale and >= 2 classes, "
                             f"got scale={scale!r}, classes={classes}")
        exp = []
        for d in range(max_distance + 1):
            e = round(E_ONE * math.exp(-scale * d))
            exp.append(e)
            if e == 0:
                break
        span = (classes - 1) * E_ONE
        shift = 0
        while (span >> shift) + 1 > MAX_LN_TABLE:
            shift += 1
        half = (1 << shift) >> 1
        ln = [round(H_ONE * math.log((E_ONE + (j << shift) + half) / E_ONE))
              for j in range((span >> shift) + 1)]
        return cls(tuple(exp), tuple(ln), shift, round(scale * H_ONE))

    def to_json(self) -> dict:
        return {"exp": list(self.exp), "ln": list(self.ln), "shift": self.shift,
                "s16": self.s16}

    @classmethod
    def from_json(cls, d: dict) -> EntropyTable:
        return cls(tuple(int(v) for v in d["exp"]), tuple(int(v) for v in d["ln"]),
                   int(d["shift"]), int(d["s16"]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.exp, np.int64), np.asarray(self.ln, np.int64)


def entropy_scores(q: np.ndarray, table: EntropyTable) -> np.ndarray:
    """Minus the softmax entropy (Q16 nats) of each row of integer logits [N, C] (int64 [N]),
    integers only (see the module docstring)."""
    q = np.asarray(q).astype(np.int64)
    if q.ndim != 2 or q.shape[1] < 2:
        raise InputError(f"entropy needs integer logits [N, C >= 2], got shape {q.shape}")
    exp, ln = table.arrays()
    d = np.minimum(q.max(axis=1, keepdims=True) - q, len(exp) - 1)
    e = exp[d]
    w = e.sum(axis=1)
    a = (e * d).sum(axis=1)
    j = np.minimum((w - E_ONE) >> table.shift, len(ln) - 1)
    h = ln[j] + (table.s16 * a) // w
    return -h


def patience_scores(argmaxes: np.ndarray) -> np.ndarray:
    """Per exit, the run of consecutive heads ending there that agree with it: argmaxes
    [N, K] -> int32 [N, K] (column 0 is 1)."""
    a = np.asarray(argmaxes)
    run = np.ones(a.shape, np.int32)
    for k in range(1, a.shape[1]):
        run[:, k] = np.where(a[:, k] == a[:, k - 1], run[:, k - 1] + 1, 1)
    return run


def first_exit(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The exit each row takes: the first k with ``scores[:, k] >= thresholds[k]`` among the
    K-1 early exits, else the last exit K-1. scores [N, K-1] (int), thresholds [K-1]."""
    s = np.asarray(scores, np.int64)
    t = np.asarray(thresholds, np.int64)
    fire = s >= t[None, :]
    k_last = s.shape[1]
    hit = fire.any(axis=1)
    return np.where(hit, np.argmax(fire, axis=1), k_last).astype(np.int32)
