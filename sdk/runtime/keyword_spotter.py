"""KeywordSpotter: int16 audio in, keyword events out, one 10 ms hop at a time.

    audio ─► StreamingLogMel (fixed point, Q8 log2) ─► x = q / 256 ─► StreamingSession (step
    graph, float or integer) ─► softmax(logits) ─► KeywordDetector ─► DetectionEvent

The model is a single-step graph (``x [1, n_mels]`` plus state in, ``logits [1, K]`` plus
state out), as ``sdk.models.build_step_onnx`` and tools/train_kws.py export it; its class
labels come from the JSON file beside it (key ``labels``) or, for a 12-class model, the
Speech-Commands order below.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import InputError
from sdk.runtime.detection import DetectionEvent, KeywordDetector
from sdk.runtime.streaming import StepResult, StreamingSession

#: the 12 classes of the Speech-Commands-style task, in the order tools/kws_dataset.py uses
SPEECH_COMMANDS_12 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                      "_unknown_", "_silence_")

#: log-mel features are int16 in Q8 log2 units; the model takes log2 units
FEATURE_SCALE = 1.0 / 256.0


def model_labels(model_path: str | os.PathLike, n_classes: int | None = None) -> list[str]:
    """Class labels of a keyword model: ``labels`` in ``<stem>.json`` beside it, else the
    Speech-Commands 12 when the model has 12 classes."""
    p = Path(model_path)
    meta = p.with_suffix(".json")
    if meta.is_file():
        doc = json.loads(meta.read_text())
        if "labels" in doc:
            return list(doc["labels"])
        n_classes = n_classes or doc.get("config", {}).get("n_classes")
    if n_classes in (None, len(SPEECH_COMMANDS_12)):
        return list(SPEECH_COMMANDS_12)
    raise InputError(f"{p}: no class labels for a {n_classes}-class model; put "
                     f'{{"labels": [...]}} in {meta.name} or pass labels=')


def compile_keyword_model(step_onnx: str | os.PathLike, calibration_audio: np.ndarray,
                          n_mels: int = 40) -> Any:
    """Compile a float keyword step graph to an integer :class:`~sdk.compile.Bundle`,
    calibrated on every feed (features and carried state) it sees while streaming
    ``calibration_audio`` (mono int16, 16 kHz) through the float model."""
    from sdk.audio import logmel
    from sdk.compile import compile_model

    frames = np.asarray(logmel(calibration_audio, n_mels), np.float32) * np.float32(FEATURE_SCALE)
    if len(frames) == 0:
        raise InputError("calibration audio is shorter than one 10 ms hop; give a few seconds")
    feeds = StreamingSession(step_onnx).record_feeds(frames[:, None, :])
    return compile_model(step_onnx, feeds)


class KeywordSpotter:
    """Streams int16 audio through the fixed-point front end and a keyword step graph.

    ``model``: step graph path (``.onnx`` float or ``.edge`` integer bundle), Graph, Bundle.
    ``labels``: class names (default :func:`model_labels`). Detector settings as
    :class:`~sdk.runtime.detection.KeywordDetector`. ``scores_output``: the graph output the
    detector reads (default ``stream_logits``, the stream head of a model trained for
    continuous speech, when the graph has it, else ``logits``).
    """

    def __init__(self, model: Any, labels: Sequence[str] | None = None, *,
                 smoothing_hops: int = 30, threshold: float = 0.6, refractory_s: float = 1.0,
                 keywords: Sequence[str] | None = None, fast: bool = True,
                 scores_output: str | None = None) -> None:
        from sdk.audio import HOP_LENGTH, SAMPLE_RATE, StreamingLogMel

        self.hop_s = HOP_LENGTH / SAMPLE_RATE
        self.sample_rate = SAMPLE_RATE
        if labels is None:
            if not isinstance(model, (str, os.PathLike)):
                raise InputError("pass labels= for a model that is not a file")
            labels = model_labels(model)
        self.labels = list(labels)
        self.detector = KeywordDetector(self.labels, keywords, smoothing_hops=smoothing_hops,
                                        threshold=threshold, refractory_s=refractory_s,
                                        hop_s=self.hop_s)
        self.session = StreamingSession(model, fast=fast, hop_s=self.hop_s,
                                        detector=self.detector, scores_output=scores_output)
        if scores_output is None:
            names = [o.name for o in self.session.stream_outputs]
            self.session.scores_output = "stream_logits" if "stream_logits" in names \
                else "logits"
        self.scores_output = self.session.scores_output
        x = self.session.stream_inputs
        if len(x) != 1 or x[0].shape is None or len(x[0].shape) != 2:
            raise InputError(f"a keyword model takes one [1, n_mels] feature input, this one "
                             f"takes {[(i.name, i.shape) for i in x]}")
        self.n_mels = int(x[0].shape[1])
        n_scores = next(o.shape for o in self.session.stream_outputs
                        if o.name == self.session.scores_output)
        if n_scores is not None and n_scores[-1] != len(self.labels):
            raise InputError(f"the model scores {n_scores[-1]} classes but {len(self.labels)} "
                             "labels were given")
        self.front_end = StreamingLogMel(self.n_mels)

    def reset(self) -> None:
        """Start a new stream (front end, model state and detector)."""
        self.front_end.reset()
        self.session.reset()

    def features(self, frames_q8: np.ndarray) -> np.ndarray:
        """Q8 log2 int16 frames ``[T, n_mels]`` → model input ``[T, 1, n_mels]`` float32."""
        return (np.asarray(frames_q8, np.float32) * np.float32(FEATURE_SCALE))[:, None, :]

    def push(self, samples: np.ndarray) -> list[StepResult]:
        """Any number of mono int16 samples at 16 kHz → one result per completed hop."""
        frames = self.front_end.push(samples)
        return [self.session.step(x) for x in self.features(frames)]

    def spot(self, samples: np.ndarray) -> list[DetectionEvent]:
        """Events of a whole recording, from a fresh stream."""
        self.reset()
        return [r.event for r in self.push(samples) if r.event is not None]


# ---------------------------------------------------------------- sentences and scoring
def _espeak(text: str, voice: str, rate_wpm: int, pitch: int, amplitude: int) -> np.ndarray:
    import shutil
    import subprocess

    from sdk.audio import decode_wav_bytes
    from sdk.errors import DeviceError

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DeviceError("espeak-ng is not installed (apt-get install espeak-ng); give a "
                          "recording with --wav FILE instead")
    res = subprocess.run([exe, "-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-a",
                          str(amplitude), "--stdout", text], capture_output=True, check=True)
    return decode_wav_bytes(res.stdout, 16000, name=f"espeak-ng {voice} {text!r}"
                            ).astype(np.float64) / 32768.0


def _loud_span(x: np.ndarray, rel: float = 0.02) -> tuple[int, int]:
    """First and one-past-last sample louder than ``rel`` of the peak (0, 0 when silent)."""
    if len(x) == 0:
        return 0, 0
    loud = np.nonzero(np.abs(x) >= rel * np.max(np.abs(x)))[0]
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) and np.max(np.abs(x)) > 0 else (0, 0)


def speak_sentence(text: str, voice: str = "en-us+m3", rate_wpm: int = 160, pitch: int = 50,
                   amplitude: int = 100, keywords: Sequence[str] = SPEECH_COMMANDS_12[:10]
                   ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """One sentence spoken by espeak-ng: float audio at 16 kHz (trailing silence cut) and
    ``(keyword, start s, end s)`` for each keyword said in it (whole words, case-insensitive).

    espeak-ng gives no word times, so a keyword's end is where the sentence cut after it ends
    and its start where the sentence cut before it ends (same voice and settings); prosody at
    a cut differs a little from the full sentence, a few tens of ms.
    """
    words = text.split()
    audio = _espeak(text, voice, rate_wpm, pitch, amplitude)
    _, end = _loud_span(audio)
    audio = audio[:end]
    truth = []
    norm = ["".join(c for c in w.lower() if c.isalpha() or c == "'") for w in words]
    for i, w in enumerate(norm):
        if w not in keywords:
            continue
        upto = _espeak(" ".join(words[:i + 1]), voice, rate_wpm, pitch, amplitude)
        k0, k1 = _loud_span(upto)
        if i > 0:
            k0 = _loud_span(_espeak(" ".join(words[:i]), voice, rate_wpm, pitch, amplitude))[1]
        truth.append((w, k0 / 16000.0, min(k1, max(end, 1)) / 16000.0))
    return audio, truth


def score_events(events: Sequence[DetectionEvent], truth: Sequence[tuple[str, float, float]],
                 early_s: float = 0.1, late_s: float = 1.0) -> tuple[int, int, int]:
    """``(keywords found, keywords said, false alarms)``. An event is a hit when its label is
    a said keyword's and it fires between ``early_s`` after that keyword starts and ``late_s``
    after it ends, each keyword matched once; every other event (wrong word, a second event
    for one keyword, no keyword near) is a false alarm."""
    hit: set[int] = set()
    false_alarms = 0
    for ev in events:
        match = [k for k, (w, a, b) in enumerate(truth) if k not in hit and w == ev.keyword
                 and a + early_s <= ev.time_s <= b + late_s]
        if match:
            hit.add(match[0])
        else:
            false_alarms += 1
    return len(hit), len(truth), false_alarms
