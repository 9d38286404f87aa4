"""The integer exit rules: NumPy spec and Numba twins agree bit for bit; ties and scores
exactly at a threshold; the entropy tables track the float entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdk.exits import fast, rules
from sdk.exits.rules import EntropyTable, first_exit


def _logits(seed: int, n: int = 500, c: int = 10, dtype=np.int8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, (n, c)).astype(dtype)
    q[:50] = np.minimum(q[:50], 100)
    q[:50, 3] = q[:50, 7] = 120                   # ties for the top
    q[50:60] = info.min                           # all equal, at the bottom of the range
    q[60:70] = info.max
    return q


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_margin_and_argmax_twins_agree_ties_give_zero_and_lowest_index(dtype):
    q = _logits(1, dtype=dtype)
    m = rules.margin_scores(q)
    assert np.array_equal(m, fast.margin_scores(q))
    assert (m[:70] == 0).all() and (m[70:] >= 0).all()
    a = rules.argmax_int(q)
    assert np.array_equal(a, fast.argmax_int(q))
    assert (a[:50] == 3).all() and (a[50:70] == 0).all()
    top2 = np.sort(q.astype(np.int64), axis=1)[:, -2:]
    assert np.array_equal(m, top2[:, 1] - top2[:, 0])


@pytest.mark.parametrize("scale", [0.02, 0.127, 0.3, 1.5])
def test_entropy_twins_agree_and_track_the_float_entropy(scale):
    table = EntropyTable.build(scale, 10)
    assert EntropyTable.from_json(table.to_json()) == table
    q = _logits(2)
    h = rules.entropy_scores(q, table)
    assert np.array_equal(h, fast.entropy_scores(q, table))
    z = q.astype(np.float64) * scale
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ent = -(p * np.log(np.maximum(p, 1e-300))).sum(axis=1)
    # Q16 nats; the tables' rounding stays within a few hundredths of a nat
    assert np.abs(-h / 65536 - ent).max() < 0.03
    assert -h[50] == table.ln[-1] or abs(-h[50] / 65536 - math.log(10)) < 0.01  # uniform


def test_patience_counts_the_agreeing_run():
    am = np.array([[1, 1, 1, 2], [1, 2, 2, 2], [0, 1, 0, 0]])
    assert rules.patience_scores(am).tolist() == [[1, 2, 3, 1], [1, 1, 2, 3], [1, 1, 1, 2]]


def test_a_score_exactly_at_the_threshold_fires():
    q = _logits(3)
    s = np.stack([rules.margin_scores(q), fast.margin_scores(q)], 1).astype(np.int64)
    assert np.array_equal(s[:, 0], s[:, 1])
    scores = s[:, :1]
    at = first_exit(scores, scores[7])         # threshold = row 7's own score
    assert at[7] == 0
    above = first_exit(scores, scores[7] + 1)  # one more: row 7 goes on to the last exit
    assert above[7] == 1
    assert np.array_equal(at == 0, scores[:, 0] >= scores[7, 0])
