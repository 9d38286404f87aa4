"""KeywordDetector on crafted posterior sequences: smoothing window, threshold, refractory
period, filler classes, state save/restore."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.errors import InputError
from sdk.runtime.detection import KeywordDetector, softmax

LABELS = ["yes", "no", "_unknown_", "_silence_"]


def _posteriors(pattern: list[tuple[int, int]]) -> np.ndarray:
    """One-hot posteriors: ``(label index, hops)`` runs."""
    rows = [np.eye(len(LABELS))[k] for k, n in pattern for _ in range(n)]
    return np.array(rows)


def _run(det: KeywordDetector, post: np.ndarray, hop_s: float = 0.01):
    events = []
    for t, p in enumerate(post, start=1):
        _, ev = det.update(p, t, t * hop_s)
        if ev:
            events.append(ev)
    return events


def test_moving_average_over_n_hops():
    det = KeywordDetector(LABELS, smoothing_hops=4, threshold=1.0)
    seq = np.random.default_rng(0).dirichlet(np.ones(4), size=10)
    for t, p in enumerate(seq):
        smoothed = det.smooth(p)
        lo = max(0, t - 3)
        np.testing.assert_allclose(smoothed, seq[lo:t + 1].sum(axis=0) / 4, atol=1e-12)


def test_event_fires_when_smoothed_score_reaches_threshold():
    det = KeywordDetector(LABELS, smoothing_hops=10, threshold=0.7, refractory_s=0.5)
    post = _posteriors([(3, 20), (0, 30), (3, 20)])
    events = _run(det, post)
    assert len(events) == 1
    ev = events[0]
    # after 7 "yes" hops the 10-hop average is 0.7: hop 20 + 7
    assert (ev.keyword, ev.hop) == ("yes", 27)
    assert ev.time_s == pytest.approx(0.27)
    assert ev.confidence == pytest.approx(0.7)


def test_single_hop_spike_is_smoothed_away():
    det = KeywordDetector(LABELS, smoothing_hops=10, threshold=0.5)
    assert _run(det, _posteriors([(3, 10), (1, 3), (3, 10)])) == []
    det1 = KeywordDetector(LABELS, smoothing_hops=1, threshold=0.5)
    assert [e.keyword for e in _run(det1, _posteriors([(3, 10), (1, 3), (3, 10)]))] == ["no"]


def test_refractory_period_suppresses_repeats():
    post = _posteriors([(0, 200)])  # a keyword held for 2 s
    det = KeywordDetector(LABELS, smoothing_hops=5, threshold=0.6, refractory_s=0.5)
    hops = [e.hop for e in _run(det, post)]
    assert hops == [3, 53, 103, 153]
    det_long = KeywordDetector(LABELS, smoothing_hops=5, threshold=0.6, refractory_s=5.0)
    assert len(_run(det_long, post)) == 1


def test_refractory_applies_across_keywords():
    post = _posteriors([(0, 10), (1, 10)])
    det = KeywordDetector(LABELS, smoothing_hops=2, threshold=0.9, refractory_s=1.0)
    assert [e.keyword for e in _run(det, post)] == ["yes"]
    det = KeywordDetector(LABELS, smoothing_hops=2, threshold=0.9, refractory_s=0.09)
    assert [(e.keyword, e.hop) for e in _run(det, post)] == [("yes", 2), ("no", 12)]


def test_filler_classes_never_fire():
    det = KeywordDetector(LABELS, smoothing_hops=3, threshold=0.5)
    assert _run(det, _posteriors([(2, 50), (3, 50)])) == []


def test_keyword_subset():
    det = KeywordDetector(LABELS, keywords=["no"], smoothing_hops=3, threshold=0.5)
    assert [e.keyword for e in _run(det, _posteriors([(0, 30), (1, 30)]))] == ["no"]
    with pytest.raises(InputError, match="'maybe' is not a label"):
        KeywordDetector(LABELS, keywords=["maybe"])


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 4, size=12).repeat(25)  # 12 runs of 25 hops, random labels
    post = 0.8 * np.eye(4)[blocks] + 0.2 * rng.dirichlet(np.ones(4), size=300)
    a = KeywordDetector(LABELS, smoothing_hops=8, threshold=0.55, refractory_s=0.3)
    ref = _run(a, post)
    b = KeywordDetector(LABELS, smoothing_hops=8, threshold=0.55, refractory_s=0.3)
    first = []
    for t, p in enumerate(post[:150], start=1):
        _, ev = b.update(p, t, t * 0.01)
        first += [ev] if ev else []
    saved = b.get_state()
    c = KeywordDetector(LABELS, smoothing_hops=8, threshold=0.55, refractory_s=0.3)
    c.set_state(saved)
    rest = []
    for t, p in enumerate(post[150:], start=151):
        _, ev = c.update(p, t, t * 0.01)
        rest += [ev] if ev else []
    assert len(ref) > 2
    assert first + rest == ref


def test_softmax_is_a_distribution():
    p = softmax(np.array([[1000.0, 999.0, -5.0]]))
    assert p.sum() == pytest.approx(1.0)
    assert p[0, 0] > p[0, 1] > p[0, 2]


def test_bad_settings_are_rejected():
    with pytest.raises(InputError, match="smoothing_hops"):
        KeywordDetector(LABELS, smoothing_hops=0)
    with pytest.raises(InputError, match="threshold"):
        KeywordDetector(LABELS, threshold=1.5)
    det = KeywordDetector(LABELS)
    with pytest.raises(InputError, match="posterior has 3 classes"):
        det.update(np.ones(3) / 3, 1, 0.01)


def test_per_keyword_thresholds():
    # "yes" at 0.6 then "no" at 0.6 (the rest silence): a 0.7 bar on "yes" and 0.5 on "no"
    # lets only "no" fire
    post = np.zeros((60, 4))
    post[:, 3] = 1.0
    post[5:25] = [0.6, 0.0, 0.0, 0.4]
    post[35:55] = [0.0, 0.6, 0.0, 0.4]
    det = KeywordDetector(LABELS, smoothing_hops=1, threshold={"yes": 0.7, "no": 0.5},
                          refractory_s=0.0)
    assert {e.keyword for e in _run(det, post)} == {"no"}
    assert det.threshold == {"yes": 0.7, "no": 0.5}
    assert det.thresholds.tolist() == [0.7, 0.5]
    # one threshold for both: both fire
    det = KeywordDetector(LABELS, smoothing_hops=1, threshold=0.5, refractory_s=0.0)
    assert {e.keyword for e in _run(det, post)} == {"yes", "no"}


def test_per_keyword_thresholds_pick_the_best_keyword_over_its_own_threshold():
    # "yes" scores higher but is under its threshold; "no" is over its own: "no" fires
    post = np.tile([0.55, 0.45, 0.0, 0.0], (5, 1))
    det = KeywordDetector(LABELS, smoothing_hops=1, threshold={"yes": 0.9, "no": 0.4})
    evs = _run(det, post)
    assert [(e.keyword, e.confidence) for e in evs] == [("no", pytest.approx(0.45))]


def test_per_keyword_thresholds_must_name_every_keyword():
    with pytest.raises(InputError, match="missing \\['no'\\]"):
        KeywordDetector(LABELS, threshold={"yes": 0.5})
    with pytest.raises(InputError, match="'_unknown_'"):
        KeywordDetector(LABELS, threshold={"yes": 0.5, "no": 0.5, "_unknown_": 0.5})
    with pytest.raises(InputError, match="threshold is a posterior"):
        KeywordDetector(LABELS, threshold={"yes": 0.5, "no": 0.0})
    det = KeywordDetector(LABELS, keywords=["no"], threshold={"no": 0.5})
    assert det.thresholds.tolist() == [0.5]
