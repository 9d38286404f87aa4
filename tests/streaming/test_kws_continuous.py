"""Keyword spotting in continuous speech: keyword times in espeak-ng sentences, event scoring,
the stream generator, and the stream evaluator's detector and batched integer path."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.models import LMUFormerWeights
from sdk.runtime.detection import DetectionEvent, KeywordDetector, softmax
from sdk.runtime.keyword_spotter import SPEECH_COMMANDS_12, score_events, speak_sentence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
MODEL = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.npz"

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed")


@needs_espeak
def test_keyword_times_inside_a_sentence():
    audio, truth = speak_sentence("please turn the heater off tonight", "en-us+m3")
    assert [w for w, _, _ in truth] == ["off"]
    _, start, end = truth[0]
    dur = len(audio) / 16000
    # "off" is the fifth of six words: it starts past the middle and ends before the end
    assert 0.4 * dur < start < end < dur - 0.1
    alone, _ = speak_sentence("off", "en-us+m3")
    assert 0.4 * len(alone) / 16000 < end - start < 2.0 * len(alone) / 16000
    # the sound between start and end is speech, not a pause
    seg = audio[int(start * 16000):int(end * 16000)]
    assert np.sqrt(np.mean(seg ** 2)) > 0.1 * np.sqrt(np.mean(audio ** 2))
    _, none = speak_sentence("I know the answer was often wrong", "en-us+m3")
    assert none == []


def test_score_events_counts_hits_and_false_alarms():
    truth = [("up", 1.0, 1.3), ("go", 4.0, 4.2)]
    ev = [DetectionEvent("up", 1.8, 0.9, 180),    # hit
          DetectionEvent("up", 2.9, 0.9, 290),    # second event for one keyword: false alarm
          DetectionEvent("no", 4.5, 0.9, 450),    # wrong word: false alarm
          DetectionEvent("go", 5.3, 0.9, 530),    # more than 1 s after the end: false alarm
          DetectionEvent("yes", 9.0, 0.9, 900)]   # nothing said: false alarm
    assert score_events(ev, truth) == (1, 2, 4)
    assert score_events([DetectionEvent("go", 4.05, 0.9, 405)], truth) == (0, 2, 1)  # too early


def test_stream_eval_detector_is_keyword_detector():
    import kws_stream_eval as ev

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2.0, (3000, 12)).astype(np.float32)
    logits[1000:1040, 4] += 9.0  # a burst of "left"
    logits[2500:2530, 8] += 7.0  # a burst of "stop"
    score, best = ev.smoothed_keyword_scores(logits, 30)
    for th in (0.3, 0.5, 0.7):
        det = KeywordDetector(SPEECH_COMMANDS_12, smoothing_hops=30, threshold=th,
                              refractory_s=1.0)
        want = []
        for hop, z in enumerate(logits, start=1):
            _, e = det.update(softmax(z), hop, hop * 0.01)
            if e is not None:
                want.append((SPEECH_COMMANDS_12.index(e.keyword), round(e.time_s, 6)))
        got = [(k, round(t, 6)) for k, t in ev.detect(score, best, th, 100)]
        assert got == want and len(want) >= 1, th


def test_batched_integer_streams_equal_one_by_one():
    import kws_stream_eval as ev

    from sdk.runtime.streaming import StreamingSession

    model = LMUFormerWeights.load(MODEL)
    rng = np.random.default_rng(0)
    streams = [np.clip(rng.normal(2400, 500, (n, 40)), 0, 5000).astype(np.int16)
               for n in (120, 90, 120)]
    bundle = ev.compile_integer(model, streams, hops=80)
    batched = ev.integer_logits(bundle, streams, batch=2)  # a batch of 2 then one of 1
    for s, got in zip(streams, batched):
        one = StreamingSession(bundle, fast=True).steps(
            s.astype(np.float32)[:, None, :] / 256.0)["logits"][:, 0]
        assert np.array_equal(got, one)
    fl = ev.float_logits(model, streams, batch=2)
    assert all(f.shape == b.shape for f, b in zip(fl, batched))
    # integer logits follow the float ones (minmax int8 activations)
    assert np.mean([np.corrcoef(f.ravel(), b.ravel())[0, 1] for f, b in zip(fl, batched)]) > 0.9


@needs_espeak
def test_a_generated_stream_has_keywords_inside_sentences():
    import kws_stream_data as sd

    if not sd.FORTUNES.is_dir():
        pytest.skip("fortunes is not installed (tools/bootstrap.sh installs it)")
    pools = sd.fortune_sentences()
    assert min(len(v) for v in pools.values()) > 500
    kws = set(SPEECH_COMMANDS_12[:10])
    for split, sents in pools.items():
        assert not any(kws & set(s.split()) for s in sents), split
        assert all(sd.split_of(s) == split for s in sents[:50])
    cfg = sd.StreamConfig(stream_s=15.0)
    spec = sd.plan("test", cfg, ["m3", "f2"])[0]
    spec = sd.StreamSpec(**{**spec.__dict__, "seconds": 15.0})
    out = sd.render(spec, pools)
    truth = out["truth"]
    assert truth and all(w in kws and 0 < a < b <= 15.0 for w, a, b in truth)
    clean, noisy = out["feats"]["clean"], out["feats"]["snr10"]
    assert clean.shape == noisy.shape and clean.shape[1] == 40 and clean.dtype == np.int16
    assert not np.array_equal(clean, noisy)
    from sdk.audio import logmel

    x = np.random.default_rng(1).normal(0, 3000, 16000).astype(np.int16)
    assert np.array_equal(sd.fast_logmel(x), logmel(x))


@needs_espeak
def test_edge_demo_kws_sentences_scores_every_detection(capsys):
    import re

    from sdk.cli.kws_demo import DEMO_SENTENCES
    from sdk.cli.main import main

    assert main(["demo", "kws", "--fast", "--sentences", "--float"]) == 0
    out = capsys.readouterr().out
    assert f"{len(DEMO_SENTENCES)} sentences, 10 keywords inside them" in out
    found, total, false_alarms = map(int, re.search(
        r"keywords found (\d+)/(\d+), false alarms (\d+)", out).groups())
    detections = len(re.findall(r"detected '(\w+)'", out))
    # every detection is a found keyword or a false alarm, each keyword found at most once
    assert total == 10 and found <= total and found + false_alarms == detections
