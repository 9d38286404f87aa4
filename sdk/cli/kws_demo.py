"""`edge demo kws`: streaming keyword spotting, live from a microphone or from a WAV.

Sources: ``--live`` captures from a sounddevice (PortAudio) input device and, when there is
none, says so on one line and streams the file instead; by default (emulator mode) or with
``--wav FILE`` a WAV (default: keywords spoken by espeak-ng) is streamed in real time, or as
fast as possible with ``--fast``. Every 10 ms hop runs the fixed-point log-mel front end and
one step of the keyword model; detections print with their stream time, beside a text level
meter.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

#: what the generated demo audio says: the ten keywords and one word the model must ignore
DEMO_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "house")
MODEL_STEM = "kws_lmuformer_nonspiking"
CALIBRATION_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
                     "bird", "dog", "tree")
CALIBRATION_VOICE = "en+f2"


def default_model() -> Path:
    """The committed keyword model: its integer bundle (.edge) when present, else the float
    step graph (.onnx), from samples/kws/models of this checkout."""
    folder = Path(__file__).resolve().parents[2] / "samples" / "kws" / "models"
    for suffix in (".edge", ".onnx"):
        if (folder / (MODEL_STEM + suffix)).is_file():
            return folder / (MODEL_STEM + suffix)
    from sdk.errors import InputError

    raise InputError(f"no keyword model in {folder}; train one with tools/train_kws.py or "
                     "pass --model STEP.onnx|.edge")


def integer_model(model_path: Path, echo: Callable[..., None] = click.echo) -> Any:
    """The model as integers: a .edge bundle as it is; a float .onnx step graph compiled here,
    calibrated on espeak-ng speech of another voice than the demo's (float without espeak-ng).
    """
    from sdk.errors import UnsupportedOpError
    from sdk.runtime.audio_input import synthesize_speech
    from sdk.runtime.keyword_spotter import compile_keyword_model

    if model_path.suffix != ".onnx":
        return model_path
    if shutil.which("espeak-ng") is None:
        echo("espeak-ng is not installed: no calibration speech, running the float model")
        return model_path
    t0 = time.perf_counter()
    audio, _ = synthesize_speech(CALIBRATION_WORDS, voice=CALIBRATION_VOICE, seed=1)
    try:
        bundle = compile_keyword_model(model_path, audio)
    except UnsupportedOpError as exc:
        echo(f"cannot compile {model_path.name} to integers ({exc}); running the float model")
        return model_path
    echo(f"compiled {model_path.name} to integers in {time.perf_counter() - t0:.1f} s "
         f"(calibrated on {len(audio) / 16000:.0f} s of espeak-ng speech, voice "
         f"{CALIBRATION_VOICE}; ops {', '.join(sorted(set(bundle.manifest['ops'])))})")
    return bundle


@dataclass
class KwsDemoOptions:
    """Settings of one demo run (the CLI options)."""

    wav: str | None = None
    live: bool = False
    device: str | None = None
    fast: bool = False
    model: str | None = None
    seconds: float | None = None
    threshold: float = 0.6
    smoothing_hops: int = 30
    refractory_s: float = 1.0
    voice: str = "en-us+m3"
    float: bool = False


@dataclass
class KwsDemoReport:
    """What a demo run saw: events, audio and wall time, per-hop compute time."""

    events: list
    audio_s: float
    wall_s: float
    hop_ms: list[float]
    source: str
    truth: list[tuple[str, float]] | None = None


def _score(events: list, truth: list[tuple[str, float]], gap_s: float = 1.0
           ) -> tuple[int, int, int]:
    """(keywords found, keywords in the audio, false alarms): an event counts for a spoken
    keyword when it has the same word and falls in that word's slot."""
    from sdk.runtime.keyword_spotter import SPEECH_COMMANDS_12

    slots = [(w, t, t + gap_s + 0.5) for w, t in truth]
    spoken = [s for s in slots if s[0] in SPEECH_COMMANDS_12]
    hit: set[int] = set()
    false_alarms = 0
    for ev in events:
        match = [k for k, (w, a, b) in enumerate(spoken) if w == ev.keyword and a <= ev.time_s
                 <= b and k not in hit]
        if match:
            hit.add(match[0])
        else:
            false_alarms += 1
    return len(hit), len(spoken), false_alarms


def run_kws_demo(opts: KwsDemoOptions, echo: Callable[..., None] = click.echo) -> KwsDemoReport:
    """Run the demo with ``opts``, printing through ``echo``; return what it saw."""
    from sdk.audio import load_wav
    from sdk.runtime.audio_input import (
        MicrophoneStream,
        WavStream,
        find_input_device,
        level_meter,
        synthesize_speech,
    )
    from sdk.runtime.keyword_spotter import KeywordSpotter, model_labels

    given = load_wav(opts.wav) if opts.wav else None  # a bad file fails before any work
    model_path = Path(opts.model) if opts.model else default_model()
    model = integer_model(model_path, echo) if not opts.float else model_path
    spotter = KeywordSpotter(model, model_labels(model_path), smoothing_hops=opts.smoothing_hops,
                             threshold=opts.threshold, refractory_s=opts.refractory_s)
    kind = "integer graph" if spotter.session.is_integer else "float step graph"
    echo(f"model: {model_path.name} ({kind}, {len(spotter.labels)} classes, states "
         f"{', '.join(spotter.session.pairs)}); hop {spotter.hop_s * 1e3:.0f} ms")
    source = None
    truth = None
    if opts.live:
        dev, note = find_input_device(opts.device)
        if dev is not None:
            source = MicrophoneStream(dev, duration_s=opts.seconds)
            label = f"live: {dev.name} ({dev.host_api})"
            echo(f"{label}; listening" + (f" for {opts.seconds:g} s" if opts.seconds else
                                          " (Ctrl-C to stop)"))
        else:
            echo(f"no audio capture device: {note}; streaming a WAV file instead")
    if source is None:
        if given is not None:
            samples = given
            label = f"file: {opts.wav}"
        else:
            samples, truth = synthesize_speech(DEMO_WORDS, voice=opts.voice)
            label = f"generated speech (espeak-ng {opts.voice}): {' '.join(DEMO_WORDS)}"
        if opts.seconds:
            samples = samples[:int(opts.seconds * spotter.sample_rate)]
        source = WavStream(samples, realtime=not opts.fast)
        echo(f"{label}; {len(samples) / spotter.sample_rate:.1f} s streamed "
             f"{'as fast as possible' if opts.fast else 'in real time'}")

    tty = sys.stdout.isatty()
    events, hop_ms = [], []
    audio_s, next_meter = 0.0, 0.0
    t0 = time.perf_counter()
    try:
        for chunk in source:
            c0 = time.perf_counter()
            results = spotter.push(chunk)
            if results:
                hop_ms.append((time.perf_counter() - c0) * 1e3 / len(results))
            audio_s += len(chunk) / spotter.sample_rate
            for r in results:
                if r.event is not None:
                    events.append(r.event)
                    echo(("\r" if tty else "") + f"{r.event.time_s:7.2f} s  detected "
                         f"{r.event.keyword!r:8s} confidence {r.event.confidence:.2f}" +
                         (" " * 20 if tty else ""))
            if tty:
                echo(f"\r{audio_s:7.2f} s  {level_meter(chunk)}", nl=False)
            elif audio_s >= next_meter:
                echo(f"{audio_s:7.2f} s  {level_meter(chunk)}")
                next_meter += 1.0
    except KeyboardInterrupt:
        pass
    wall = time.perf_counter() - t0
    if tty:
        echo("")
    report = KwsDemoReport(events, audio_s, wall, hop_ms, label, truth)
    med = statistics.median(hop_ms) if hop_ms else float("nan")
    echo(f"{len(events)} detection(s) in {audio_s:.1f} s of audio ({wall:.1f} s wall); "
         f"compute {med:.3f} ms per 10 ms hop, real-time factor "
         f"{med / (spotter.hop_s * 1e3):.3f}")
    if truth is not None:  # words cut off by --seconds are not counted
        heard = [(w, t) for w, t in truth if t + 0.8 <= audio_s]
        found, total, false_alarms = _score(events, heard)
        echo(f"keywords found {found}/{total}, false alarms {false_alarms} "
             "(the unknown word 'house' must not fire)")
    return report


@click.command("kws")
@click.option("--wav", type=click.Path(dir_okay=False),
              help="stream this WAV (any rate: resampled to 16 kHz; stereo mixed down)")
@click.option("--live", is_flag=True,
              help="capture from the microphone (falls back to the file when there is none)")
@click.option("--device", help="capture device index or name (with --live)")
@click.option("--fast", is_flag=True, help="do not pace the file in real time")
@click.option("--model", type=click.Path(dir_okay=False),
              help="keyword step graph (.onnx) or integer bundle (.edge)")
@click.option("--seconds", type=float, help="stop after this much audio")
@click.option("--threshold", default=0.6, show_default=True,
              help="smoothed posterior that fires a detection")
@click.option("--smoothing", "smoothing_hops", default=30, show_default=True,
              help="moving-average window in 10 ms hops")
@click.option("--refractory", "refractory_s", default=1.0, show_default=True,
              help="seconds after a detection during which no other fires")
@click.option("--voice", default="en-us+m3", show_default=True,
              help="espeak-ng voice of the generated speech")
@click.option("--float", "float", is_flag=True,
              help="run the float step graph instead of compiling it to integers")
def command(**kwargs) -> None:
    """Streaming keyword spotting from a microphone or a WAV, with detections and a meter."""
    run_kws_demo(KwsDemoOptions(**kwargs))
