"""Exits over time: a streaming classifier decides on a prefix of its input as soon as its
running decision is confident.

A streaming model (one step per hop, e.g. the keyword spotter) emits integer frame logits
every hop; the running decision is the integer running sum of those logits (zero point
removed), i.e. the running mean times the hop count. At each checkpoint hop ``t_k`` the
``margin`` rule compares top-1 minus top-2 of that sum with an integer threshold
``a + b * t_k`` (``a``, ``b`` calibrated); the last hop always decides. Integers only, so the
exit hop is the same wherever the rule runs.

    plan = calibrate_over_time(frame_q, zero_point, labels, checkpoints=range(10, 101, 5),
                               max_accuracy_drop=1.0)
    ex = plan.stream()              # per clip
    for q in frames: if ex.update(q): break     # ex.hop, ex.label
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sdk.errors import InputError
from sdk.exits.calibrate import OperatingPoint, check_drop, choose, evaluate, pareto


def running_sums(frame_q: np.ndarray, zero_point: int) -> np.ndarray:
    """Integer running sums [N, T, C] (int64) of integer frame logits [N, T, C]."""
    q = np.asarray(frame_q)
    if q.ndim != 3 or q.dtype.kind not in "iu":
        raise InputError(f"frame logits must be integers [clips, hops, classes], got {q.dtype} "
                         f"{list(q.shape)}")
    return np.cumsum(q.astype(np.int64) - int(zero_point), axis=1)


def sum_margins(sums: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 over the last axis (int64)."""
    s = np.sort(sums, axis=-1)
    return s[..., -1] - s[..., -2]


@dataclass
class TemporalExitPlan:
    """Checkpoint hops (1-based hop counts, the last = the whole input), the integer
    thresholds at the early ones, the frame logits' zero point, and the calibration summary."""

    checkpoints: list[int]
    thresholds: list[int]
    zero_point: int
    calibration: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"checkpoints": self.checkpoints, "thresholds": self.thresholds,
                "zero_point": self.zero_point, "rule": "margin",
                "calibration": self.calibration}

    @classmethod
    def from_json(cls, d: dict) -> TemporalExitPlan:
        return cls([int(c) for c in d["checkpoints"]], [int(t) for t in d["thresholds"]],
                   int(d["zero_point"]), dict(d.get("calibration", {})))

    def decide(self, frame_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hops used [N], label [N]) for whole clips of integer frame logits [N, T, C]."""
        sums = running_sums(frame_q, self.zero_point)
        cp = np.asarray(self.checkpoints) - 1
        at = sums[:, cp]
        margins = sum_margins(at)[:, :-1]
        thr = np.asarray(self.thresholds, np.int64)
        fire = margins >= thr[None]
        k = np.where(fire.any(axis=1), np.argmax(fire, axis=1), len(cp) - 1)
        label = np.argmax(at[np.arange(len(k)), k], axis=1)
        return np.asarray(self.checkpoints)[k], label

    def stream(self) -> TemporalExit:
        return TemporalExit(self)


class TemporalExit:
    """The rule hop by hop: :meth:`update` with each hop's integer frame logits returns True
    once the decision is made (then :attr:`hop` and :attr:`label` hold it)."""

    def __init__(self, plan: TemporalExitPlan) -> None:
        self.plan = plan
        self._at = {c: k for k, c in enumerate(plan.checkpoints)}
        self.reset()

    def reset(self) -> None:
        self.sum: np.ndarray | None = None
        self.hops = 0
        self.hop: int | None = None
        self.label: int | None = None

    def update(self, q: np.ndarray) -> bool:
        if self.hop is not None:
            return True
        row = np.asarray(q).reshape(-1).astype(np.int64) - self.plan.zero_point
        self.sum = row if self.sum is None else self.sum + row
        self.hops += 1
        k = self._at.get(self.hops)
        if k is None:
            return False
        last = k == len(self.plan.checkpoints) - 1
        top2 = np.sort(self.sum)[-2:]
        if last or top2[1] - top2[0] >= self.plan.thresholds[k]:
            self.hop, self.label = self.hops, int(np.argmax(self.sum))
            return True
        return False


def calibrate_over_time(frame_q: np.ndarray, zero_point: int, labels: np.ndarray,
                        checkpoints: Sequence[int], max_accuracy_drop: float = 1.0,
                        ) -> TemporalExitPlan:
    """Thresholds ``a + b * t_k`` swept on labelled clips (integer frame logits [N, T, C]):
    the setting with the fewest mean hops whose accuracy is within ``max_accuracy_drop``
    points of deciding at the last checkpoint (CalibrationError, one line, otherwise)."""
    drop = check_drop(max_accuracy_drop)
    sums = running_sums(frame_q, zero_point)
    n, t, _ = sums.shape
    cps = sorted({int(c) for c in checkpoints})
    if not cps or cps[0] < 1 or cps[-1] > t:
        raise InputError(f"checkpoints must be hop counts in [1, {t}], got {list(checkpoints)}")
    if len(cps) < 2:
        raise InputError("exits over time need at least two checkpoints")
    y = np.asarray(labels)
    at = sums[:, np.asarray(cps) - 1]
    margins = sum_margins(at)[:, :-1]
    correct = np.argmax(at, axis=2) == y[:, None]
    full_acc = float(correct[:, -1].mean() * 100)
    steps = np.asarray(cps[:-1], np.int64)
    per_hop = margins / steps[None]
    slopes = np.unique(np.quantile(per_hop, np.linspace(0, 1, 61), method="lower"))
    slopes = np.unique(np.concatenate([[0], slopes, [per_hop.max() + 1]])).astype(np.int64)
    offsets = np.unique(np.quantile(margins, np.linspace(0, 1, 41), method="lower"))
    offsets = np.unique(np.concatenate([[0], offsets])).astype(np.int64)
    grid = (offsets[:, None, None] + slopes[None, :, None] * steps[None, None, :]
            ).reshape(-1, len(steps))
    points = []
    for lo in range(0, len(grid), 256):
        acc, hops, counts = evaluate(margins, correct, cps, grid[lo:lo + 256])
        points += [OperatingPoint([int(v) for v in g], float(a), float(h),
                                  [int(c) for c in cs])
                   for g, a, h, cs in zip(grid[lo:lo + 256], acc, hops, counts)]
    best = choose(points, full_acc, cps[-1], drop, n, unit="hops")
    curve = pareto(points)
    return TemporalExitPlan(cps, best.thresholds, int(zero_point),
                            {"samples": n, "max_accuracy_drop": drop,
                             "accuracy_full": round(full_acc, 4),
                             "chosen": {"accuracy": round(best.accuracy, 4),
                                        "mean_hops": round(best.mean_macs, 2),
                                        "thresholds": best.thresholds},
                             "hops_saved": round(1 - best.mean_macs / cps[-1], 4),
                             "curve": [{"mean_hops": round(p.mean_macs, 2),
                                        "accuracy": round(p.accuracy, 4)} for p in curve]})
