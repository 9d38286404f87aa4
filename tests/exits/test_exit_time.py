"""Keyword spotting exits over time (sdk.exits.temporal) on the committed integer frame logits
of the non-spiking LMUFormer (samples/exits/kws_frame_logits.npz, written by
`tools/bench_exit.py --kws-only --save-kws-logits`): calibrated on the validation voices,
measured on the held-out test voices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdk.errors import CalibrationError, InputError
from sdk.exits.temporal import TemporalExitPlan, calibrate_over_time

LOGITS = Path(__file__).resolve().parents[2] / "samples" / "exits" / "kws_frame_logits.npz"


@pytest.fixture(scope="module")
def logits():
    with np.load(LOGITS) as z:
        return {k: z[k] for k in z.files}


def test_held_out_voices_decide_30_percent_sooner_within_one_point(logits):
    zp = int(logits["zero_point"])
    plan = calibrate_over_time(logits["val_q"], zp, logits["val_y"], range(10, 101),
                               max_accuracy_drop=1.0)
    hops, label = plan.decide(logits["test_q"])
    full = TemporalExitPlan([99, 100], [1 << 40], zp).decide(logits["test_q"])
    assert (full[0] == 100).all()
    y = logits["test_y"]
    acc, acc_full = (label == y).mean() * 100, (full[1] == y).mean() * 100
    assert len(y) == 2400 and acc >= acc_full - 1.0, (acc, acc_full)
    assert 1 - hops.mean() / 100 >= 0.30, hops.mean()
    # the streaming rule, hop by hop, decides at the same hop with the same label
    plan2 = TemporalExitPlan.from_json(plan.to_json())
    for i in range(0, 2400, 40):
        ex = plan2.stream()
        for k, q in enumerate(logits["test_q"][i]):
            if ex.update(q):
                break
        assert (ex.hop, ex.label) == (hops[i], label[i]) and k + 1 == ex.hop


def test_a_score_at_the_threshold_decides_and_one_below_waits():
    # two classes; frame logits (zp 0) make the running-sum margin 3 per hop
    q = np.tile(np.array([[3, 0]], np.int8), (1, 10, 1))
    at = TemporalExitPlan([2, 4, 10], [6, 1 << 30], 0)     # margin at hop 2 is exactly 6
    above = TemporalExitPlan([2, 4, 10], [7, 1 << 30], 0)
    assert at.decide(q)[0].tolist() == [2] and above.decide(q)[0].tolist() == [10]
    ex = above.stream()
    assert [ex.update(r) for r in q[0]].index(True) == 9


def test_unreachable_drop_and_bad_checkpoints_are_one_line():
    # every hop but the last points to class 1, the whole clip to class 0: any early exit
    # is wrong
    q = np.zeros((20, 10, 2), np.int8)
    q[:, :9, 1] = 5
    q[:, 9, 0] = 100
    with pytest.raises(CalibrationError, match="smallest drop that saves compute is 100.00"):
        calibrate_over_time(q, 0, np.zeros(20, np.int64), range(1, 11), max_accuracy_drop=0.5)
    with pytest.raises(InputError, match=r"checkpoints must be hop counts in \[1, 10\]"):
        calibrate_over_time(q, 0, np.zeros(20, np.int64), [5, 11])
    with pytest.raises(InputError, match="--max-accuracy-drop"):
        calibrate_over_time(q, 0, np.zeros(20, np.int64), [5, 10], max_accuracy_drop=-2)
