"""Keyword spotting in continuous speech: keyword times in espeak-ng sentences, event scoring,
the stream generator, and the stream evaluator's detector and batched integer path."""

import json
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


def _detector_events(logits: np.ndarray, threshold) -> list[tuple[int, float]]:
    """``(keyword index, time s)`` of KeywordDetector (smoothing 30, refractory 1 s) fed the
    softmax of each hop's logits."""
    det = KeywordDetector(SPEECH_COMMANDS_12, smoothing_hops=30, threshold=threshold,
                          refractory_s=1.0)
    out = []
    for hop, z in enumerate(logits, start=1):
        _, e = det.update(softmax(z), hop, hop * 0.01)
        if e is not None:
            out.append((SPEECH_COMMANDS_12.index(e.keyword), round(e.time_s, 6)))
    return out


def test_stream_eval_detector_is_keyword_detector():
    import kws_stream_eval as ev

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2.0, (3000, 12)).astype(np.float32)
    logits[1000:1040, 4] += 9.0  # a burst of "left"
    logits[2500:2530, 8] += 7.0  # a burst of "stop"
    score, best = ev.smoothed_keyword_scores(logits, 30)
    for th in (0.3, 0.5, 0.7):
        want = _detector_events(logits, th)
        got = [(k, round(t, 6)) for k, t in ev.detect(score, best, th, 100)]
        assert got == want and len(want) >= 1, th


def test_stream_eval_per_keyword_thresholds_are_keyword_detector():
    import kws_stream_eval as ev

    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2.0, (4000, 12)).astype(np.float32)
    logits[1000:1040, 4] += 9.0  # "left", strong
    logits[2000:2040, 8] += 5.0  # "stop", weaker
    logits[3000:3040, 1] += 6.0  # "no"
    kw = ev.keyword_posteriors(logits, 30)
    per = {k: 0.5 for k in ev.KEYWORDS}
    per.update(left=0.99, stop=0.3, no=0.6)
    th = np.array([per[k] for k in ev.KEYWORDS])
    want = _detector_events(logits, per)
    got = [(k, round(t, 6)) for k, t in ev.detect(*ev.over_thresholds(kw, th), 0.0, 100)]
    assert got == want and {k for k, _ in want} >= {1, 8}, want
    # one value for every keyword: the same events as the single-threshold path
    score, best = ev.smoothed_keyword_scores(logits, 30)
    for t in (0.4, 0.8):
        assert ev.detect(*ev.over_thresholds(kw, np.full(10, t)), 0.0, 100) == \
            ev.detect(score, best, t, 100)


def test_per_keyword_thresholds_find_a_distinct_keyword_a_confusable_one_would_mute():
    """"yes" is said softly and never confused; "no" is said loudly and also fires, as loud,
    on keyword-free speech. One threshold under 1 FA/h must sit over the confusions and so
    over the soft "yes"; one per keyword keeps "no" high and lets "yes" through."""
    import kws_stream_eval as ev

    rng = np.random.default_rng(7)

    def stream(hops, events):
        z = rng.normal(0, 0.5, (hops, 12)).astype(np.float32)
        z[:, 10] += 4.0
        for k, t0, gain in events:
            z[t0:t0 + 40, k] += gain
        return z

    kw, truth = [], []
    for _ in range(6):
        events = [(0, t0, 5.5) if i % 2 == 0 else (1, t0, 10.0)
                  for i, t0 in enumerate(range(300, 5800, 500))]
        kw.append(stream(6000, events))
        truth.append([(k, (t0 - 30) / 100, t0 / 100) for k, t0, _ in events])
    free = [stream(36000, [(1, t0, 10.0) for t0 in range(500, 35000, 3000)])
            for _ in range(4)]
    hours_free, hours_kw = 4 * 36000 / 360000, 6 * 6000 / 360000
    curves = {20: {"float clean": ev.sweep(
        {"kw": [ev.smoothed_keyword_scores(z, 20) for z in kw],
         "free": [ev.smoothed_keyword_scores(z, 20) for z in free]},
        truth, hours_free, hours_kw, 100)}}
    glob = ev.choose_points(curves, [1.0], 1.0)["1"]
    kept = {"float clean": ({"kw": kw, "free": free}, truth, hours_free, hours_kw, None)}
    points = ev.choose_per_keyword_points(kept, [20], [1.0], 1.0, log=lambda *a: None)
    per = points["1 per keyword"]
    assert per["smoothing_hops"] == 20 and set(per["thresholds"]) == set(ev.KEYWORDS)
    assert per["thresholds"]["yes"] < per["thresholds"]["no"]
    assert per["validation"]["float clean"]["fa_per_hour"] <= 1.0
    assert glob["validation"]["float clean"]["recall"] < 0.2  # the soft "yes" muted
    assert per["validation"]["float clean"]["recall"] >= 0.45  # every "yes" (half the words)
    # the stored figures are the exact count of those thresholds
    th = np.array([per["thresholds"][k] for k in ev.KEYWORDS])
    row = ev.at_thresholds({"kw": [ev.keyword_posteriors(z, 20) for z in kw],
                            "free": [ev.keyword_posteriors(z, 20) for z in free]},
                           th, truth, hours_free, hours_kw, 100)
    assert row["recall"] == per["validation"]["float clean"]["recall"]
    from sdk.cli.kws_demo import point_threshold

    assert point_threshold(per) == per["thresholds"]


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
def test_edge_demo_kws_default_is_sentences_and_scores_every_detection(capsys):
    """With no source the demo reads sentences with keywords inside (integer model, the
    default) and says how many keywords it found and how many false alarms it raised."""
    import re

    from sdk.cli.kws_demo import DEMO_SENTENCES
    from sdk.cli.main import main

    assert main(["demo", "kws", "--fast"]) == 0
    out = capsys.readouterr().out
    assert "(integer graph, 12 classes" in out
    # which model runs and why, from the committed training reports
    assert "default model: the non-spiking model: 97.38% on held-out clips against 93.88% for " \
           "the spiking one, 96.75% for the wide spiking one (234,924 parameters) (float)" in out
    assert "but scores 95.58% on clips: --model samples/kws/models/kws_lmuformer_stream.onnx" \
        in out
    assert f"{len(DEMO_SENTENCES)} sentences, 10 keywords inside them" in out
    found, total, false_alarms = map(int, re.search(
        r"keywords found (\d+)/(\d+), false alarms (\d+)", out).groups())
    detections = re.findall(r"detected '(\w+)'", out)
    # every detection is a found keyword or a false alarm, each keyword found at most once
    assert total == 10 and found <= total and found + false_alarms == len(detections)
    assert "a detection that is not a keyword said just before it" in out


@needs_espeak
def test_edge_demo_kws_sentences_flag_and_words_flag(capsys):
    """--sentences names the default (same speech, same scoring: the float graph here);
    --words with --sentences, or either with --wav, is one line and exit 2."""
    import re

    from sdk.cli.kws_demo import DEMO_SENTENCES
    from sdk.cli.main import main

    assert main(["demo", "kws", "--fast", "--sentences", "--float", "--seconds", "8"]) == 0
    out = capsys.readouterr().out
    assert f"{len(DEMO_SENTENCES)} sentences, 10 keywords inside them" in out
    found, total, false_alarms = map(int, re.search(
        r"keywords found (\d+)/(\d+), false alarms (\d+)", out).groups())
    assert 1 <= total < 10 and found + false_alarms == len(re.findall(r"detected '", out))
    for argv, what in ((["--sentences", "--words"], "--sentences and --words"),
                       (["--words", "--wav", "x.wav"], "--wav")):
        assert main(["demo", "kws", "--fast", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and what in err[0], err


def _synthetic_streams(rng, n, hops, kw_bursts: bool):
    """Logits of ``n`` streams: background chatter (non-keyword classes ahead), one-hop spikes
    of a keyword now and then, and (``kw_bursts``) a 40-hop keyword burst every 5 s, just
    after a said keyword; returns (logits, truth of (keyword index, start s, end s))."""
    out, truth = [], []
    for _ in range(n):
        z = rng.normal(0, 1.0, (hops, 12))
        z[:, 10] += 4.0
        spikes = rng.choice(hops, hops // 100, replace=False)
        z[spikes, rng.integers(0, 10, len(spikes))] += 30.0  # single-hop spikes
        tr = []
        if kw_bursts:
            for t0 in range(300, hops - 100, 500):
                w = int(rng.integers(0, 10))
                z[t0:t0 + 40, w] += 9.0
                tr.append((w, (t0 - 30) / 100, t0 / 100))
        out.append(z.astype(np.float32))
        truth.append(tr)
    return out, truth


def test_choose_prefers_the_smoothing_that_ignores_one_hop_spikes():
    import kws_stream_eval as ev

    rng = np.random.default_rng(5)
    kw, truth = _synthetic_streams(rng, 4, 3000, True)
    free, _ = _synthetic_streams(rng, 6, 6000, False)
    hours_free, hours_kw = 6 * 6000 / 360000, 4 * 3000 / 360000
    curves = {}
    for sm in (1, 20):
        scores = {"kw": [ev.smoothed_keyword_scores(z, sm) for z in kw],
                  "free": [ev.smoothed_keyword_scores(z, sm) for z in free]}
        curves[sm] = {"float clean": ev.sweep(scores, truth, hours_free, hours_kw, 100)}
    # one-hop spikes fire a 1-hop "smoother" at any threshold, and never a 20-hop average
    assert min(r["fa_per_hour"] for r in curves[1]["float clean"]) > 100
    points = ev.choose_points(curves, [1.0, 100.0], 1.0)
    assert set(points) == {"1", "100"}
    for key, p in points.items():
        assert p["smoothing_hops"] == 20
        rows = curves[20]["float clean"]
        i = list(ev.THRESHOLDS).index(p["threshold"])
        assert rows[i]["fa_per_hour"] <= float(key)
        assert i == 0 or rows[i - 1]["fa_per_hour"] > float(key)  # the lowest such threshold
        assert p["validation"]["float clean"]["recall"] == rows[i]["recall"] > 0.9
    assert ev.choose_points({20: curves[20]}, [1e-9], 1.0).keys() <= {"1e-09"}
    # a model stored with only the old single point still reads (smoothing 30)
    old = {"stream_operating_point": {"threshold": 0.9, "target_fa_per_hour": 0.1}}
    assert ev.stored_points(old) == {"0.1": {"threshold": 0.9, "target_fa_per_hour": 0.1,
                                             "smoothing_hops": 30}}


@needs_espeak
def test_operating_point_is_chosen_on_val_stored_and_reported_on_test(tmp_path, capsys):
    import json
    import shutil

    import kws_stream_data as sd
    import kws_stream_eval as ev

    from sdk.cli.kws_demo import (
        point_threshold,
        speak_sentences,
        stored_smoothing,
        stored_threshold,
    )

    model = tmp_path / "m.npz"
    shutil.copy(MODEL, model)
    shutil.copy(MODEL.with_suffix(".json"), tmp_path / "m.json")
    kw_audio, truth = speak_sentences(["please stop here", "turn left at the corner",
                                       "we go home now"], "en-us+m3", noise_rms=30)
    free_audio, _ = speak_sentences(["I know the answer was often wrong",
                                     "the bus has gone already"], "en-us+f2", noise_rms=30)
    folder = tmp_path / "streams" / sd.StreamConfig(seed=0).key()
    folder.mkdir(parents=True)
    for kind, audio, tr in (("kw", kw_audio, truth), ("free", free_audio, [])):
        f = sd.fast_logmel(audio)
        ev_arr = np.array([(0, SPEECH_COMMANDS_12.index(w), a, b) for w, a, b in tr],
                          np.float64).reshape(-1, 4)
        data = {"feats": f, "offsets": np.array([0, len(f)]), "voice": np.array(["m3"]),
                "noise": np.array(["none"]), "ev_stream": ev_arr[:, 0].astype(np.int64),
                "ev_word": ev_arr[:, 1].astype(np.int64), "ev_start": ev_arr[:, 2],
                "ev_end": ev_arr[:, 3]}
        for split in ("val", "test"):
            np.savez(folder / f"{split}_{kind}_clean.npz", **data)
    common = [str(model), "--data", str(tmp_path / "streams"), "--precision", "float",
              "--conditions", "clean"]
    # hand-made streams have no specs to replay their sentences from: said in one line
    assert ev.main(common + ["--split", "val"]) == 0
    assert "no meta.json to replay its sentences" in capsys.readouterr().out
    # the keyword-free sentences' spans (what kws_stream_data.spans caches): "know" counted
    s0 = 0.5
    for split in ("val", "test"):
        np.savez(folder / f"{split}_free_spans.npz", stream=np.array([0, 0]),
                 start=np.array([s0, 3.0]), end=np.array([2.9, len(free_audio) / 16000]),
                 text=np.array(["i know the answer was often wrong", "the bus has gone"]))
    with pytest.raises(SystemExit):  # never chosen on test
        ev.main(common + ["--split", "test", "--choose"])
    assert ev.main(common + ["--split", "val", "--choose", "--smoothing", "10", "30",
                             "--target-fa-per-h", "1", "--json", str(tmp_path / "v.json")]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    point = meta["stream_operating_points"]["1"]
    assert meta["stream_operating_point"] == point and point["smoothing_hops"] in (10, 30)
    assert point["validation"]["float clean"]["fa_per_hour"] <= 1.0
    assert point["validation_hours_free"] == {"clean": round(len(free_audio) / 16000 / 3600, 3)}
    # the rest of the model's JSON is kept
    assert meta["test_acc"] == json.loads(MODEL.with_suffix(".json").read_text())["test_acc"]
    capsys.readouterr()
    assert ev.main(common + ["--split", "test", "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert f"stored operating point ≤ 1 FA/h (threshold {point['threshold']:.6f}" in out
    assert "of them 'no'/'right' on 'know'/'write'" in out
    got = json.loads((tmp_path / "t.json").read_text())["summary"]
    at = got[f"float clean s{point['smoothing_hops']}"]["at_stored"]["1"]
    assert at["threshold"] == point["threshold"]
    assert 0 <= at["false_alarms_homophone"] <= at["false_alarms_free"]
    assert at["fa_per_hour_acoustic"] <= at["fa_per_hour"]
    assert at["recall"] == point["validation"]["float clean"]["recall"]  # same streams
    assert stored_threshold(model)[0] == point["threshold"]
    assert stored_smoothing(model) == point["smoothing_hops"]
    # one threshold per keyword: stored beside, reported on test with the exact counts
    with pytest.raises(SystemExit):
        ev.main(common + ["--split", "test", "--per-keyword"])  # a way to choose, on val
    assert ev.main(common + ["--split", "val", "--choose", "--per-keyword", "--smoothing", "10",
                             "30", "--target-fa-per-h", "1"]) == 0
    meta = json.loads((tmp_path / "m.json").read_text())
    per = meta["stream_operating_points"]["1 per keyword"]
    assert set(per["thresholds"]) == set(ev.KEYWORDS)
    assert per["validation"]["float clean"]["fa_per_hour"] <= 1.0
    demo = meta["stream_operating_point"]  # the demo keeps the single threshold
    assert demo == meta["stream_operating_points"]["1"]
    capsys.readouterr()
    assert ev.main(common + ["--split", "test", "--json", str(tmp_path / "t2.json")]) == 0
    out = capsys.readouterr().out
    assert "stored operating point ≤ 1 FA/h (per-keyword thresholds yes " in out
    got = json.loads((tmp_path / "t2.json").read_text())["summary"]
    at = got[f"float clean s{per['smoothing_hops']}"]["at_stored"]["1 per keyword"]
    assert at["recall"] == per["validation"]["float clean"]["recall"]  # same streams
    assert at["thresholds"] == per["thresholds"]
    assert stored_threshold(model)[0] == point_threshold(demo)


def test_committed_stream_model_carries_its_validation_operating_points():
    import json

    import kws_stream_eval as ev

    from sdk.cli.kws_demo import stored_smoothing, stored_threshold

    stem = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_stream"
    meta = json.loads(stem.with_suffix(".json").read_text())
    points = meta["stream_operating_points"]
    assert {"1", "0.1"} <= set(points)
    assert meta["stream_operating_point"] == points["1"]  # the demo's: ≤ 1 false alarm / h
    for key, p in points.items():
        assert p["threshold"] in set(ev.THRESHOLDS.tolist())
        assert p["chosen_on"].startswith("validation streams")
        assert set(p["validation"]) == {"float clean", "float snr10", "int clean", "int snr10"}
        assert all(v["fa_per_hour"] <= float(key) for v in p["validation"].values())
        # chosen on ~10 h of keyword-free validation speech per condition (one false alarm
        # is 0.1/h, so a <= 0.1/h point is resolved)
        assert set(p["validation_hours_free"]) == {"clean", "snr10"}
        assert min(p["validation_hours_free"].values()) >= 9.9
    assert stored_threshold(stem.with_suffix(".onnx"))[0] == points["1"]["threshold"]
    assert stored_smoothing(stem.with_suffix(".onnx")) == points["1"]["smoothing_hops"]
    model = LMUFormerWeights.load(stem.with_suffix(".npz"))
    # the issue's budget is ~63k (the clip models'); the stream model is wider on purpose,
    # d_model 128 and 32 LMU channels, 236,472 parameters (3.7×): samples/kws/models/README.md
    # says why (seventh session: at 63,976 it fit its own training streams worse and found
    # fewer keywords on validation at every stored point)
    clip = LMUFormerWeights.load(stem.with_name("kws_lmuformer_nonspiking.npz"))
    assert clip.parameter_count() <= 63_196
    assert (model.config.d_model, model.config.lmu_units) == (128, 32)
    assert model.parameter_count() <= 4 * clip.parameter_count()
    assert meta["parameters"] == model.parameter_count()


@needs_espeak
def test_know_and_write_are_said_exactly_as_no_and_right():
    import subprocess

    import kws_dataset
    import kws_stream_data as sd
    import kws_stream_homophones as kh

    def phonemes(word, accent="en-us"):
        return subprocess.run(["espeak-ng", "-q", "-x", "-v", accent, word],
                              capture_output=True, text=True, check=True).stdout.strip()

    # the same phonemes in every accent the clips and streams are read in
    for accent in kws_dataset.ACCENTS:
        for word, keyword in sd.HOMOPHONES.items():
            assert phonemes(word, accent) == phonemes(keyword, accent), (accent, word)
    assert phonemes("knows") != phonemes("no") and phonemes("gone") != phonemes("go")
    assert kh.HOMOPHONE.search("i know it") and kh.HOMOPHONE.search("write it down")
    assert not kh.HOMOPHONE.search("she knows the writer")


def test_streams_of_a_smaller_configuration_are_reused_not_rendered_again(tmp_path):
    """Raising a split's hours keeps its first streams (same seeds, same voices): generate()
    takes them from the cached smaller configuration (linked when all match, as shards when
    they are the first of more), bit for bit; another rendering version is never reused."""
    import json
    from dataclasses import asdict

    import kws_stream_data as sd

    def packed(n, rng):
        lens = rng.integers(50, 90, n)
        ev = [(i, int(rng.integers(10)), 0.1 * i, 0.1 * i + 0.2) for i in range(n) if i % 2]
        ev = np.array(ev, np.float64).reshape(-1, 4)
        return {"feats": rng.integers(-900, 900, (int(lens.sum()), 40)).astype(np.int16),
                "offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                "voice": np.array([f"v{i}" for i in range(n)]),
                "noise": np.array(["pink"] * n), "ev_stream": ev[:, 0].astype(np.int64),
                "ev_word": ev[:, 1].astype(np.int64), "ev_start": ev[:, 2], "ev_end": ev[:, 3]}

    rng = np.random.default_rng(0)
    small = sd.StreamConfig(val_free_h=sd.SHARD * 2 * 300 / 3600)  # 12 streams
    big = sd.StreamConfig(val_free_h=sd.SHARD * 3 * 300 / 3600)  # 18 streams
    assert small.key() != big.key()
    speakers = {"val": ["m3", "f2", "m7"]}
    old = tmp_path / small.key()
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"config": asdict(small), "speakers": speakers}))
    files = {}
    for kind, n in (("kw", 6), ("free", 12)):
        for c in ("clean", "snr10"):
            files[kind, c] = packed(n, rng)
            np.savez(old / f"val_{kind}_{c}.npz", **files[kind, c])
    new = tmp_path / big.key()
    new.mkdir()
    for kind, n_old in (("kw", 6), ("free", 12)):
        specs = [s for s in sd.plan("val", big, speakers["val"]) if s.kind == kind]
        mine = [s for s in sd.plan("val", small, speakers["val"]) if s.kind == kind]
        assert specs[:n_old] == mine
        names = {c: f"val_{kind}_{c}.npz" for c in ("clean", "snr10")}
        assert sd._reuse(tmp_path, new, "val", kind, specs, names, big, False)
        for c in ("clean", "snr10"):
            if kind == "kw":  # the same 6 streams: the file itself
                got = sd._load_npz(new / names[c])
            else:  # the first 12 of 18: two shards, the third is left to render
                shards = sorted(new.glob(f"val_free_{c}.shard*.npz"))
                assert [p.name[-12:] for p in shards] == ["shard000.npz", "shard001.npz"]
                got = sd._merge([sd._load_npz(p) for p in shards])
            want = files[kind, c]
            assert got.keys() == want.keys()
            assert all(np.array_equal(got[k], want[k]) for k in want), (kind, c)
    other = tmp_path / "v2"
    other.mkdir()
    v2 = sd.StreamConfig(val_free_h=big.val_free_h, version=2)
    specs = [s for s in sd.plan("val", v2, speakers["val"]) if s.kind == "kw"]
    assert not sd._reuse(tmp_path, other, "val", "kw", specs,
                         {"clean": "val_kw_clean.npz"}, v2, False)



def test_the_longest_cached_prefix_is_the_one_reused(tmp_path):
    """With several smaller configurations cached, the one holding the most of the wanted
    streams is reused (whatever order the folders list in), so growing a set twice renders
    only what neither holds."""
    import json
    from dataclasses import asdict

    import kws_stream_data as sd

    rng = np.random.default_rng(1)
    speakers = {"val": ["m3", "f2", "m7"]}
    want = {}
    for n, name in ((6, "a_small"), (12, "b_large")):  # the smaller one listed first
        cfg = sd.StreamConfig(val_free_h=n * 300 / 3600)
        d = tmp_path / name
        d.mkdir()
        (d / "meta.json").write_text(json.dumps({"config": asdict(cfg), "speakers": speakers}))
        lens = rng.integers(50, 90, n)
        want[n] = {"feats": rng.integers(-900, 900, (int(lens.sum()), 40)).astype(np.int16),
                   "offsets": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                   "voice": np.array([f"v{i}" for i in range(n)]),
                   "noise": np.array(["white"] * n), "ev_stream": np.zeros(0, np.int64),
                   "ev_word": np.zeros(0, np.int64), "ev_start": np.zeros(0),
                   "ev_end": np.zeros(0)}
        np.savez(d / "val_free_clean.npz", **want[n])
    big = sd.StreamConfig(val_free_h=24 * 300 / 3600)
    new = tmp_path / big.key()
    new.mkdir()
    specs = [s for s in sd.plan("val", big, speakers["val"]) if s.kind == "free"]
    assert sd._reuse(tmp_path, new, "val", "free", specs, {"clean": "val_free_clean.npz"},
                     big, False)
    shards = sorted(new.glob("val_free_clean.shard*.npz"))
    assert len(shards) == 2  # 12 streams = two shards, from the larger configuration
    got = sd._merge([sd._load_npz(p) for p in shards])
    assert np.array_equal(got["feats"], want[12]["feats"])

def _random_lmuformer(stream_head: bool, seed: int = 0) -> LMUFormerWeights:
    from sdk.models import LMUFormerConfig, lmu_matrices
    from sdk.models.lmuformer import weight_shapes

    cfg = LMUFormerConfig(n_mels=40, n_classes=12, d_model=12, lmu_units=3, lmu_order=4,
                          lmu_theta=10.0, stream_head=stream_head)
    rng = np.random.default_rng(seed)
    w = {k: (rng.standard_normal(s) * 0.5).astype(np.float32)
         for k, s in weight_shapes(cfg).items()}
    w["in_inv_std"] = np.abs(w["in_inv_std"]) + 0.5
    a, b = lmu_matrices(cfg.lmu_order, cfg.lmu_theta)
    w["a_bar"], w["b_bar"] = a.astype(np.float32), b.astype(np.float32)
    return LMUFormerWeights(cfg, w)


def test_stream_head_is_a_second_output_the_spotter_reads(tmp_path):
    """A model with a stream head: saved and loaded, its step graph has ``logits`` (clip head)
    and ``stream_logits`` (stream head), each equal to the NumPy step's; the spotter and the
    stream evaluator read the stream head; a model without one keeps one output."""
    import kws_stream_eval as ev

    from sdk.errors import InputError
    from sdk.models import build_step_onnx, initial_state, lmuformer_step
    from sdk.runtime.keyword_spotter import KeywordSpotter
    from sdk.runtime.streaming import StreamingSession

    model = _random_lmuformer(True)
    model.save(tmp_path / "m.npz")
    model = LMUFormerWeights.load(tmp_path / "m.npz")
    assert model.config.stream_head
    assert model.parameter_count() == _random_lmuformer(False).parameter_count() + 12 * 12 + 12
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(build_step_onnx(model).SerializeToString())
    x = np.random.default_rng(1).normal(0, 1, (25, 1, 40)).astype(np.float32)
    out = StreamingSession(str(onnx_path), fast=False).steps(x)
    state = initial_state(model.config)
    for t in range(len(x)):
        clip, _, _ = lmuformer_step(model, x[t], state)
        stream, state, _ = lmuformer_step(model, x[t], state, "stream")
        np.testing.assert_allclose(out["logits"][t], clip, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["stream_logits"][t], stream, rtol=1e-5, atol=1e-5)
    assert not np.allclose(out["logits"], out["stream_logits"])  # two different heads
    np.testing.assert_allclose(ev.float_logits(model, [x[:, 0] * 256.0])[0],
                               out["stream_logits"][:, 0], rtol=1e-4, atol=1e-4)
    assert KeywordSpotter(str(onnx_path)).scores_output == "stream_logits"
    assert KeywordSpotter(str(onnx_path), scores_output="logits").scores_output == "logits"
    old = _random_lmuformer(False)
    with pytest.raises(InputError, match="only 'clip'"):
        lmuformer_step(old, x[0], initial_state(old.config), "stream")
    old_path = tmp_path / "old.onnx"
    old_path.write_bytes(build_step_onnx(old).SerializeToString())
    assert [o.name for o in StreamingSession(str(old_path)).stream_outputs] == ["logits"]
    assert KeywordSpotter(str(old_path)).scores_output == "logits"


@needs_espeak
def test_sentence_spans_replay_the_rendered_stream():
    """``sentence_spans`` replays a stream's draws without rendering it: its sentences are the
    ones render() read (every keyword of the rendered truth lies inside a sentence holding
    it), and skipping the keyword times changes neither the draws nor the audio lengths."""
    import kws_stream_data as sd

    if not sd.FORTUNES.is_dir():
        pytest.skip("fortunes is not installed (tools/bootstrap.sh installs it)")
    pools = sd.fortune_sentences()
    spec = sd.plan("val", sd.StreamConfig(stream_s=20.0), ["m3", "f2"])[0]
    spec = sd.StreamSpec(**{**spec.__dict__, "seconds": 20.0, "conditions": ("clean",)})
    out = sd.render(spec, pools)
    spans = sd.sentence_spans(spec, pools)
    assert len(spans) >= 3
    assert all(a < b <= c for (_, a, b), (_, c, _) in zip(spans, spans[1:]))
    assert out["truth"]
    for w, a, b in out["truth"]:
        inside = [t for t, s0, s1 in spans if s0 <= a < b <= s1 + 1e-9]
        assert len(inside) == 1 and w in inside[0].split(), (w, a, b, spans)
    # with the keyword times: the same spans and the rendered truth
    rng = np.random.default_rng(list(spec.seed))
    timed: list = []
    _, truth, _ = sd._read(pools["val"], spec.voice, spec.seconds, rng, sd.CFG_KW_SHARE,
                           spans=timed)
    assert timed == spans and truth == out["truth"]


def test_the_render_saves_the_spans_a_replay_would_give(tmp_path):
    """generate() keeps the sentence spans each render read (``<split>_<kind>_spans.npz``):
    spans() then reads them instead of replaying every sentence through espeak-ng, and they
    are what the replay gives."""
    import kws_stream_data as sd

    if not sd.FORTUNES.is_dir():
        pytest.skip("fortunes is not installed (tools/bootstrap.sh installs it)")
    cfg = sd.StreamConfig(stream_s=15.0, train_kw_h=3 * 15 / 3600, train_free_h=15 / 3600,
                          train_round=2)
    folder = sd.generate(tmp_path, cfg, ["train"], workers=1, verbose=False)
    assert not list(folder.glob("*.shard*"))  # merged, the shards removed
    saved = sd._load_npz(folder / "train_kw_spans.npz")
    assert sorted(set(saved["stream"].tolist())) == [0, 1, 2]
    meta = json.loads((folder / "meta.json").read_text())
    specs = [s for s in sd.plan("train", cfg, meta["speakers"]["train"]) if s.kind == "kw"]
    pools = sd.fortune_sentences()
    for i, spec in enumerate(specs):
        mine = [(str(t), float(a), float(b)) for st, t, a, b in zip(
            saved["stream"], saved["text"], saved["start"], saved["end"]) if st == i]
        assert mine == sd.sentence_spans(spec, pools)
    got = sd.spans(folder, "train", "kw")  # read, not replayed
    assert all(np.array_equal(got[k], saved[k]) for k in saved)
    kw = sd.load(folder, "train", "kw", "mixed")
    for s, w, a, b in zip(kw["ev_stream"], kw["ev_word"], kw["ev_start"], kw["ev_end"]):
        inside = [t for st, t, s0, s1 in zip(saved["stream"], saved["text"], saved["start"],
                                              saved["end"]) if st == s and s0 <= a < b <= s1]
        assert len(inside) == 1 and sd.KEYWORDS[w] in str(inside[0]).split()


def test_a_training_round_draws_new_streams_and_keeps_val_and_test():
    """``train_round`` > 0: training streams none of whose seeds round 0 (or another round)
    used, the voices drawn anew from the same training voices; validation and test plans and
    the round-0 folder name are as before rounds existed."""
    from dataclasses import asdict

    import kws_stream_data as sd

    speakers = {"train": [f"t{i}" for i in range(30)], "val": ["v1", "v2"], "test": ["x1"]}
    cfgs = [sd.StreamConfig(train_kw_h=1.0, train_free_h=0.5, train_round=r) for r in (0, 1, 2)]
    plans = [sd.plan("train", c, speakers["train"]) for c in cfgs]
    seeds = [{s.seed for s in p} for p in plans]
    assert all(len(s) == len(plans[0]) for s in seeds)
    assert not (seeds[0] & seeds[1]) and not (seeds[0] & seeds[2]) and not (seeds[1] & seeds[2])
    voices = [[s.voice for s in p] for p in plans]
    assert voices[0] != voices[1] and voices[1] != voices[2]
    assert {v.split("+")[1] for vs in voices for v in vs} <= set(speakers["train"])
    for split in ("val", "test"):
        assert sd.plan(split, cfgs[1], speakers[split]) == sd.plan(split, cfgs[0], speakers[split])
    assert len({c.key() for c in cfgs}) == 3
    # round 0's key is the hash of the fields as they were before train_round was added
    old = asdict(cfgs[0])
    del old["train_round"]
    import hashlib
    assert cfgs[0].key() == hashlib.sha256(
        json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]
    assert sd.StreamConfig().key() == "e7d815a89478"  # the cached val/test folder's name
    with pytest.raises(SystemExit):
        sd.main(["--train-round", "1", "--splits", "val"])
    with pytest.raises(SystemExit):
        sd.main(["--train-round", "-1", "--splits", "train"])


def test_false_alarms_on_exact_homophones_are_counted_apart():
    """A "no" that fires inside (or up to 1 s after) a keyword-free sentence holding "know" is
    counted as a homophone alarm; other keywords there, or "no" elsewhere, are not."""
    import kws_stream_data as sd
    import kws_stream_eval as ev

    sp = {"stream": np.array([0, 0, 1]), "start": np.array([1.0, 5.0, 2.0]),
          "end": np.array([3.0, 7.0, 4.0]),
          "text": np.array(["i know it", "the sun is warm", "please write soon"])}
    homo = sd.homophone_spans(sp)
    assert homo == [(0, "no", 1.0, 3.0), (1, "right", 2.0, 4.0)]
    no, right, up = (ev.KEYWORDS.index(w) for w in ("no", "right", "up"))
    spans0 = [(no, 1.0, 3.0)]
    assert ev.homophone_alarms([(no, 2.0), (no, 3.9), (no, 4.2), (up, 2.0), (no, 6.0)],
                               spans0) == 2
    # through the sweep: a stream with one burst of "no" inside the "know" sentence
    logits = np.full((1000, 12), -5.0, np.float32)
    logits[:, 11] = 5.0
    logits[150:200, no] = 12.0  # 1.5–2.0 s: inside "i know it"
    logits[600:650, no] = 12.0  # 6.0–6.5 s: "the sun is warm"
    scores = {"kw": [], "free": [ev.smoothed_keyword_scores(logits, 20)]}
    rows = ev.sweep(scores, [], 1.0, 1.0, 100, np.array([0.5]), homophones=[spans0])
    assert rows[0]["false_alarms_free"] == 2 and rows[0]["false_alarms_homophone"] == 1
    assert rows[0]["fa_per_hour_acoustic"] == 1.0
    assert "fa_per_hour_acoustic" not in ev.sweep(scores, [], 1.0, 1.0, 100, np.array([0.5]))[0]


def test_a_widened_lmu_computes_the_same_function():
    """``LMUFormerWeights.widened`` adds LMU channels without changing any output (a warm
    start with more memory); narrowing is refused."""
    from sdk.errors import InputError
    from sdk.models.lmuformer import run_clip

    model = _random_lmuformer(True)
    wide = model.widened(7)
    assert wide.config.lmu_units == 7 and model.config.lmu_units == 3
    assert wide.parameter_count() > model.parameter_count()
    assert not np.array_equal(wide.weights["w_u"][3:], 0 * wide.weights["w_u"][3:])
    x = np.random.default_rng(2).normal(0, 1, (40, 40)).astype(np.float32)
    # equal up to float32 summation order (the products with the zero columns add 0)
    np.testing.assert_allclose(run_clip(wide, x), run_clip(model, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="at least"):
        wide.widened(4)


@pytest.mark.parametrize("spiking", [False, True])
def test_a_wider_model_computes_the_same_function(spiking):
    """``widened(d_model=...)`` adds model channels (and the MLP's hidden units with them)
    without changing either head's output, in the ReLU and the spiking variant; the new
    channels are live (not zero) so training can give them a use; narrowing is refused."""
    from dataclasses import replace

    from sdk.errors import InputError
    from sdk.models import initial_state, lmuformer_step

    base = _random_lmuformer(True)
    model = LMUFormerWeights(replace(base.config, spiking=spiking), base.weights)
    wide = model.widened(5, d_model=20)
    cfg = wide.config
    assert (cfg.d_model, cfg.lmu_units) == (20, 5) and model.config.d_model == 12
    assert wide.weights["w_1"].shape == (80, 20) and wide.weights["w_2"].shape == (20, 80)
    x = np.random.default_rng(3).normal(0, 1, (40, 40)).astype(np.float32)
    for head in ("clip", "stream"):
        s0, s1 = initial_state(model.config), initial_state(cfg)
        for t in range(len(x)):
            a, s0, _ = lmuformer_step(model, x[t], s0, head)
            b, s1, acts = lmuformer_step(wide, x[t], s1, head)
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
        # the new channels carry activity (their readers' zero weights then get gradients)
        if spiking:  # membranes of the new channels charge
            assert np.any(s1["v_mix_hidden"][:, 48:] != 0) and np.any(s1["v_u"][:, 3:] != 0)
        else:
            assert np.any(acts["v_mix_hidden"][:, 48:] != 0)
            assert np.any(s1["memory"].reshape(5, -1)[3:] != 0)
    with pytest.raises(InputError, match="at least"):
        wide.widened(5, d_model=16)


def test_training_windows_do_not_score_no_keyword_inside_homophone_sentences():
    """Training windows leave unscored the "no keyword" frames of a sentence holding "know" or
    "write" (espeak-ng says "no"/"right"); a keyword's own frames there keep their label."""
    pytest.importorskip("torch")  # tools/train_kws.py needs the train extra
    import train_kws as tk

    win = object.__new__(tk.StreamWindows)
    win.pos_hops, win.pre_hops = 50, 20
    win.streams = [np.zeros((1000, 40), np.int16)]
    win.truth = [[(3, 420, 450)]]  # "down" ends at hop 450, inside the sentence
    win._homo = {0: [(300, 500)]}
    _, y = win._cut(0, 250)  # window hops 250..449
    assert (y[:tk.WARMUP] == tk.IGNORE).all()
    assert (y[tk.WARMUP:50] == tk.NEG).all()  # before the sentence: scored
    assert (y[50:430 - 250] == tk.IGNORE).all()  # the sentence: not scored, ...
    assert (y[430 - 250:] == 3).all()  # ... but the keyword's frames are
    win._homo = {}
    _, y = win._cut(0, 250)
    assert (y[tk.WARMUP:170] == tk.NEG).all()  # without the sentence: all scored


def test_training_windows_pool_several_rounds_of_streams(tmp_path):
    """StreamWindows over two rounds' folders: every stream of both, each keyword on its own
    stream, the keyword-free streams of both rounds the negatives; train_kws refuses a round
    that was not rendered, naming the command that renders it, and duplicate rounds."""
    pytest.importorskip("torch")  # tools/train_kws.py needs the train extra
    import train_kws as tk

    rng = np.random.default_rng(3)
    folders = []
    for r, (n_kw, n_free) in enumerate(((2, 1), (3, 2))):
        f = tmp_path / f"round{r}"
        f.mkdir()
        for kind, n in (("kw", n_kw), ("free", n_free)):
            lens = rng.integers(300, 400, n)
            ev = np.array([(i, (r + i) % 10, 1.0, 1.5) for i in range(n)] if kind == "kw"
                          else np.zeros((0, 4)), np.float64).reshape(-1, 4)
            np.savez(f / f"train_{kind}_mixed.npz",
                     feats=np.full((int(lens.sum()), 40), 10 * r + (kind == "kw"), np.int16),
                     offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                     voice=np.array(["v"] * n), noise=np.array(["white"] * n),
                     ev_stream=ev[:, 0].astype(np.int64), ev_word=ev[:, 1].astype(np.int64),
                     ev_start=ev[:, 2], ev_end=ev[:, 3])
        folders.append(f)
    win = tk.StreamWindows(folders, pos_hops=40)
    assert len(win.streams) == 2 + 1 + 3 + 2
    assert win.free_ids == [2, 6, 7]
    assert [int(win.streams[i][0, 0]) for i in range(8)] == [1, 1, 0, 11, 11, 11, 10, 10]
    assert [[w for w, _, _ in t] for t in win.truth] == [[0], [1], [], [1], [2], [3], [], []]
    assert all((win.truth[i][0][1], win.truth[i][0][2]) == (100, 150) for i in (0, 1, 3, 4, 5))
    streams = tmp_path / "streams"
    base = ["--variant", "nonspiking", "--streams", str(streams), "--init", str(MODEL),
            "--data", str(tmp_path / "clips")]
    with pytest.raises(SystemExit, match="--train-round 3"):
        tk.main(base + ["--stream-rounds", "3"])
    with pytest.raises(SystemExit, match="distinct rounds"):
        tk.main(base + ["--stream-rounds", "1", "1"])
    with pytest.raises(SystemExit, match="streaming fine-tune"):
        tk.main(["--window-specaug", "--data", str(tmp_path / "clips")])


@needs_espeak
def test_fresh_streams_pair_the_asked_voices_with_the_asked_text(tmp_path):
    """tools/kws_stream_fit.py renders new streams with speakers of the asked split; each
    keyword peak is the said keyword's smoothed posterior inside its hit
    window, and the shares count them."""
    import kws_dataset
    import kws_stream_eval as ev
    import kws_stream_fit as fit

    got = fit.fresh_streams("val", "train", 1, seconds=20.0)
    assert len(got) == 1 and got[0]["truth"], "a 20 s keyword stream holds keywords"
    val = kws_dataset.split_speakers(kws_dataset.list_variants(),
                                     kws_dataset.DatasetConfig(seed=0))["val"]
    assert got[0]["voice"].split("+")[1] in val
    feats = got[0]["feats"]
    assert feats.dtype == np.int16 and feats.shape[1] == 40 and 1800 < len(feats) < 2200
    model = _random_lmuformer(stream_head=True)
    peaks = fit.keyword_peaks(model, [feats], [got[0]["truth"]], smoothing=5)
    assert len(peaks) == len(got[0]["truth"])
    kw = ev.keyword_posteriors(ev.float_logits(model, [feats])[0], 5)
    w, a, b = got[0]["truth"][0]
    lo, hi = int(round((a + 0.1) * 100)) - 1, int(round((b + 1.0) * 100))
    assert peaks[0] == pytest.approx(kw[lo:hi, w].max())
    s = fit.shares(np.array([0.2, 0.6, 0.95, 0.999]))
    assert s == {">0.5": 0.75, ">0.9": 0.5, ">0.99": 0.25}


def test_stream_fit_refuses_bad_input_in_one_line(tmp_path):
    """A missing checkpoint, a missing cached training set or a bad pair: one line naming it,
    before any stream is rendered."""
    import kws_stream_fit as fit

    model = _random_lmuformer(stream_head=True)
    ckpt = tmp_path / "m.npz"
    model.save(ckpt)
    with pytest.raises(SystemExit, match="does not exist"):
        fit.main([str(tmp_path / "none.npz")])
    with pytest.raises(SystemExit, match="VOICES:TEXT"):
        fit.main([str(ckpt), "--pairs", "train-val"])
    with pytest.raises(SystemExit, match="at least 1"):
        fit.main([str(ckpt), "--streams", "0"])
    with pytest.raises(SystemExit, match="is missing; run tools/kws_stream_data.py"):
        fit.main([str(ckpt), "--trained", str(tmp_path)])
