"""The committed LMUFormer keyword model streamed on espeak-ng speech: float and compiled
integer, streaming == offline bit for bit from audio to logits, and the `edge demo kws` /
samples/kws/live_demo.py file paths."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.audio import StreamingLogMel, logmel, write_wav
from sdk.cli.kws_demo import DEMO_WORDS, default_model
from sdk.cli.main import main
from sdk.errors import InputError
from sdk.kernels.quantize import quantize_linear
from sdk.runtime import WavStream, level_meter, synthesize_speech

ROOT = Path(__file__).resolve().parents[2]
ONNX = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.onnx"

pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
    pytest.mark.skipif(not ONNX.is_file(), reason="trained keyword model not committed yet"),
]

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


@pytest.fixture(scope="module")
def speech():
    return synthesize_speech(KEYWORDS + ["house"], voice="en-us+m3")


@pytest.fixture(scope="module")
def int_bundle(tmp_path_factory):
    """The step graph compiled to integers, calibrated on another voice's speech."""
    calib_audio, _ = synthesize_speech(KEYWORDS + ["bird", "dog"], voice="en+f2", seed=3)
    frames = (logmel(calib_audio).astype(np.float32) / 256.0)[:, None, :]
    calib = sdk.StreamingSession(ONNX).record_feeds(frames)
    path = tmp_path_factory.mktemp("kws") / "kws_int.edge"
    sdk.compile_model(ONNX, calib).save(path)
    return path


def _found(events, truth):
    hits = {(e.keyword, w) for e in events for w, t in truth
            if e.keyword == w and t <= e.time_s <= t + 1.5}
    return {w for _, w in hits}


@pytest.mark.parametrize("which", ["float", "integer"])
def test_spotter_finds_the_spoken_keywords(speech, int_bundle, which):
    audio, truth = speech
    model = ONNX if which == "float" else int_bundle
    events = sdk.KeywordSpotter(model).spot(audio)
    found = _found(events, truth)
    assert len(found) >= 8, [(e.keyword, e.time_s) for e in events]
    assert "house" not in {e.keyword for e in events}
    assert len(events) <= len(found) + 1  # at most one false alarm


def test_spotter_takes_one_threshold_per_keyword(speech):
    audio, _ = speech
    one = sdk.KeywordSpotter(ONNX, threshold=0.6).spot(audio)
    same = sdk.KeywordSpotter(ONNX, threshold={k: 0.6 for k in KEYWORDS}).spot(audio)
    assert [(e.keyword, e.hop) for e in same] == [(e.keyword, e.hop) for e in one]
    # "stop" and "go" muted (a posterior never reaches 1.0 over 30 hops), the rest as before
    muted = sdk.KeywordSpotter(ONNX, threshold={k: 1.0 if k in ("stop", "go") else 0.6
                                                 for k in KEYWORDS}).spot(audio)
    assert {e.keyword for e in one} >= {"stop", "go"}
    assert [(e.keyword, e.hop) for e in muted] == [
        (e.keyword, e.hop) for e in one if e.keyword not in ("stop", "go")]


def test_integer_audio_to_logits_streaming_equals_offline(speech, int_bundle):
    audio = speech[0][:48000]  # 3 s: 300 hops
    ss = sdk.StreamingSession(int_bundle, integer_io=True)
    q = ss.stream_inputs[0].quant

    def to_model(frames_q8):
        return quantize_linear(frames_q8.astype(np.float32) / np.float32(256.0), q.scale,
                               q.zero_point, ss.stream_inputs[0].dtype)

    front = StreamingLogMel()
    streamed = []
    rng = np.random.default_rng(0)
    pos = 0
    while pos < len(audio):  # ragged chunks, as a capture callback delivers them
        n = int(rng.integers(1, 700))
        for frame in front.push(audio[pos:pos + n]):
            streamed.append(ss.step(to_model(frame[None, :])).outputs["logits"])
        pos += n
    offline, final = ss.run_offline(to_model(logmel(audio))[:, None, :])
    assert len(streamed) == 300
    assert np.array_equal(np.stack(streamed), offline["logits"])
    for k, v in ss.get_state().items():
        assert np.array_equal(v, final[k])


def test_float_step_graph_matches_the_numpy_model(speech):
    from sdk.models import LMUFormerWeights, run_clip

    feats = logmel(speech[0][:32000]).astype(np.float32) / 256.0
    ref = run_clip(LMUFormerWeights.load(ONNX.with_suffix(".npz")), feats)
    got = sdk.StreamingSession(ONNX).steps(feats[:, None, :])["logits"][:, 0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_edge_demo_kws_float_flag_runs_the_float_graph(capsys):
    assert main(["demo", "kws", "--fast", "--float", "--words", "--seconds", "3"]) == 0
    out = capsys.readouterr().out
    assert "(float step graph" in out and "to integers" not in out
    assert re.findall(r"detected '(\w+)'", out)[:2] == ["yes", "no"]


def test_edge_demo_kws_takes_stored_per_keyword_thresholds(capsys, tmp_path):
    import json

    model = tmp_path / "kws.onnx"
    shutil.copy(ONNX, model)
    per = {k: 0.6 for k in KEYWORDS}
    per["no"] = 1.0  # "no" muted
    point = {"thresholds": per, "smoothing_hops": 30, "chosen_on": "a test's choice"}
    model.with_suffix(".json").write_text(json.dumps({"stream_operating_point": point}))
    assert main(["demo", "kws", "--fast", "--float", "--words", "--seconds", "3",
                 "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "threshold per keyword yes 0.6 no 1 up 0.6" in out and "a test's choice" in out
    assert re.findall(r"detected '(\w+)'", out)[:1] == ["yes"]
    assert "detected 'no'" not in out


def test_labels_come_from_the_model(tmp_path):
    assert sdk.KeywordSpotter(ONNX).labels[:3] == ["yes", "no", "up"]
    with pytest.raises(InputError, match="scores 12 classes but 3 labels"):
        sdk.KeywordSpotter(ONNX, labels=["a", "b", "c"])


def test_wav_stream_is_paced_in_real_time():
    samples = np.zeros(8000, np.int16)  # 0.5 s
    t0 = time.perf_counter()
    chunks, arrived = [], []
    for c in WavStream(samples, chunk=1600):
        arrived.append(time.perf_counter() - t0)
        chunks.append(c)
    assert np.array_equal(np.concatenate(chunks), samples)
    # lower bounds only (a sleep never ends early; a loaded machine can only make it later):
    # chunk k is not handed out before its last sample has "arrived", (k + 1) * 0.1 s
    for k, t in enumerate(arrived):
        assert t >= (k + 1) * 0.1 - 0.005, (k, t)
    # unpaced: a minute of audio must stream far faster than real time. A wall-clock upper
    # bound on a shared 2-core machine is only sound with a wide margin, hence 60 s vs 6 s.
    minute = np.zeros(60 * 16000, np.int16)
    t0 = time.perf_counter()
    got = list(WavStream(minute, chunk=1600, realtime=False))
    assert time.perf_counter() - t0 < 6.0
    assert len(got) == 600 and np.array_equal(np.concatenate(got), minute)


def test_level_meter():
    assert level_meter(np.zeros(160, np.int16)).endswith("-99.0 dBFS")
    full = level_meter(np.full(160, 32767, np.int16), width=10)
    assert full == "|##########|  -0.0 dBFS"


def test_edge_demo_kws_words_streams_the_keywords_alone(capsys):
    assert main(["demo", "kws", "--fast", "--words"]) == 0
    out = capsys.readouterr().out
    assert "generated speech" in out and "as fast as possible" in out
    assert " ".join(DEMO_WORDS) in out
    assert "compiled kws_lmuformer_nonspiking.onnx to integers" in out
    assert "(integer graph, 12 classes" in out
    found, total, false_alarms = map(int, re.search(
        r"keywords found (\d+)/(\d+), false alarms (\d+)", out).groups())
    assert total == 10 and found >= 8 and false_alarms <= 1
    assert "dBFS" in out and "real-time factor" in out
    assert len(DEMO_WORDS) == 11


def test_edge_demo_kws_with_a_stereo_44k_wav(capsys, speech, tmp_path):
    from scipy.signal import resample_poly

    mono = speech[0][:5 * 16000].astype(np.float64)
    up = resample_poly(mono, 441, 160)
    stereo = np.stack([up, 0.5 * up], axis=1)
    path = tmp_path / "stereo44k.wav"
    write_wav(path, np.clip(np.rint(stereo), -32768, 32767).astype(np.int16), 44100)
    assert main(["demo", "kws", "--wav", str(path), "--fast"]) == 0
    out = capsys.readouterr().out
    detected = re.findall(r"detected '(\w+)'", out)
    assert detected[:3] == ["yes", "no", "up"], out


def test_edge_demo_kws_bad_wav_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    assert main(["demo", "kws", "--wav", str(bad), "--fast"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_sample_script_runs_on_a_wav(speech, tmp_path):
    path = tmp_path / "speech.wav"
    write_wav(path, speech[0][:4 * 16000])
    r = subprocess.run([sys.executable, str(ROOT / "samples" / "kws" / "live_demo.py"),
                        "--wav", str(path), "--fast"], check=False, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    words = re.findall(r"^\s+[\d.]+ s  (\w+)\s+\(", r.stdout, re.MULTILINE)
    assert words[:3] == ["yes", "no", "up"], r.stdout


def test_default_model_is_committed():
    assert default_model().suffix in (".edge", ".onnx")
