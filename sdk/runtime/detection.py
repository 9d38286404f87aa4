"""Keyword detection events from per-hop posteriors: moving-average smoothing and a refractory
period (the posterior-handling scheme of small-footprint DNN keyword spotting).

With ``p_t`` the class posterior of hop ``t`` and ``N`` the smoothing window in hops,

    p̄_t = (1 / N) · Σ_{j = max(1, t − N + 1) .. t} p_j

(hops before the stream start count as zero posterior, so the first hops cannot fire on a
single-hop spike).
A keyword ``k`` (any label not starting with ``_``, so ``_silence_`` / ``_unknown_`` never
fire) is detected at hop ``t`` when ``p̄_t[k] ≥ θ_k`` and ``p̄_t[k]`` is the largest score of
the keywords over their thresholds, and at least ``refractory`` hops have passed since the
previous event (of any keyword), so one utterance gives one event. ``θ_k`` is one threshold
for every keyword, or one per keyword (a multi-keyword spotter's per-keyword sensitivity: a
keyword that sounds like parts of common words needs a higher one than a distinct one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdk.errors import InputError


def softmax(logits: np.ndarray) -> np.ndarray:
    """``exp(z − max z) / Σ exp(z − max z)`` over the last axis, in float64."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class DetectionEvent:
    """A detected keyword: the label, the stream time (s, end of the hop that fired), the
    smoothed posterior of that label, and the hop index."""

    keyword: str
    time_s: float
    confidence: float
    hop: int

    def __str__(self) -> str:
        return f"{self.time_s:7.2f} s  {self.keyword:<8s} {self.confidence:.2f}"


class KeywordDetector:
    """Moving-average smoothing over ``smoothing_hops`` posteriors, threshold, refractory.

    ``labels``: class names in model output order. ``keywords``: the labels that may fire
    (default: every label not starting with ``_``). ``threshold``: one posterior for every
    keyword, or a mapping with one per keyword (every keyword that may fire, no other
    label). ``refractory_s`` is turned into whole hops with ``hop_s``.
    """

    def __init__(self, labels: Sequence[str], keywords: Sequence[str] | None = None, *,
                 smoothing_hops: int = 30, threshold: float | Mapping[str, float] = 0.6,
                 refractory_s: float = 1.0, hop_s: float = 0.01) -> None:
        self.labels = list(labels)
        if not self.labels:
            raise InputError("KeywordDetector needs the model's class labels")
        chosen = [lb for lb in self.labels if not lb.startswith("_")] if keywords is None \
            else list(keywords)
        unknown = [k for k in chosen if k not in self.labels]
        if unknown:
            raise InputError(f"keyword {unknown[0]!r} is not a label of the model; the labels "
                             f"are {self.labels}")
        if smoothing_hops < 1:
            raise InputError(f"smoothing_hops must be ≥ 1, got {smoothing_hops}")
        if isinstance(threshold, Mapping):
            extra = [k for k in threshold if k not in chosen]
            missing = [k for k in chosen if k not in threshold]
            if extra or missing:
                raise InputError(
                    "per-keyword thresholds must name every keyword that may fire and no "
                    "other label: " + (f"{extra} are not among the keywords {chosen}"
                                       if extra else f"missing {missing}"))
            per = [float(threshold[k]) for k in chosen]
        else:
            per = [float(threshold)] * max(len(chosen), 1)
        bad = [t for t in per if not 0.0 < t <= 1.0]
        if bad:
            raise InputError(f"threshold is a posterior in (0, 1], got {bad[0]}")
        if refractory_s < 0 or hop_s <= 0:
            raise InputError("refractory_s must be ≥ 0 and hop_s > 0 (seconds)")
        self.keywords = chosen
        self._keyword_index = np.array([self.labels.index(k) for k in chosen], np.int64)
        self.smoothing_hops = int(smoothing_hops)
        #: per keyword (``self.keywords`` order)
        self.thresholds = np.array(per[:len(chosen)], np.float64)
        #: the one threshold, or the mapping of per-keyword ones
        self.threshold: float | dict[str, float] = (
            dict(zip(chosen, per)) if isinstance(threshold, Mapping) else per[0])
        self.refractory_hops = math.ceil(refractory_s / hop_s - 1e-9)
        self.reset()

    def reset(self) -> None:
        """Forget past posteriors and events."""
        self._window = np.zeros((self.smoothing_hops, len(self.labels)), np.float64)
        self._count = 0
        self._last_event_hop = -(1 << 62)

    def get_state(self) -> dict[str, np.ndarray]:
        """Copy of the smoothing window, its fill count and the last event's hop."""
        return {"window": self._window.copy(), "count": np.asarray(self._count),
                "last_event_hop": np.asarray(self._last_event_hop)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""
        window = np.asarray(state["window"], np.float64)
        if window.shape != self._window.shape:
            raise InputError(f"detector state window has shape {window.shape}, expected "
                             f"{self._window.shape}; restore a snapshot of the same detector")
        self._window = window.copy()
        self._count = int(state["count"])
        self._last_event_hop = int(state["last_event_hop"])

    def smooth(self, posterior: np.ndarray) -> np.ndarray:
        """Push one posterior ``[K]`` and return the moving average ``p̄`` ``[K]`` (see above)."""
        p = np.asarray(posterior, np.float64).reshape(-1)
        if p.shape[0] != len(self.labels):
            raise InputError(f"posterior has {p.shape[0]} classes but the detector has "
                             f"{len(self.labels)} labels")
        self._window[self._count % self.smoothing_hops] = p
        self._count += 1
        return self._window.sum(axis=0) / self.smoothing_hops  # unfilled rows are zeros

    def update(self, posterior: np.ndarray, hop: int, time_s: float
               ) -> tuple[np.ndarray, DetectionEvent | None]:
        """Smooth the posterior of hop ``hop`` (ending at ``time_s``); return ``(p̄, event)``."""
        smoothed = self.smooth(posterior)
        scores = smoothed[self._keyword_index]
        over = np.where(scores >= self.thresholds, scores, -1.0)
        best = int(np.argmax(over))
        if over[best] < 0.0 or hop - self._last_event_hop < self.refractory_hops:
            return smoothed, None
        self._last_event_hop = hop
        return smoothed, DetectionEvent(self.keywords[best], float(time_s), float(scores[best]),
                                        int(hop))
