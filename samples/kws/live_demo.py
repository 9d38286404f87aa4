#!/usr/bin/env python3
"""Live keyword spotting: microphone (sounddevice) or a WAV streamed in real time.

    python samples/kws/live_demo.py                  # emulator mode: generated speech, real time
    python samples/kws/live_demo.py --live           # microphone; falls back to the file
    python samples/kws/live_demo.py --wav my.wav --fast

Uses only the public API: the float LMUFormer step graph compiled to integers (calibrated on
espeak-ng speech), a KeywordSpotter (fixed-point log-mel front end + StreamingSession +
KeywordDetector) fed by a MicrophoneStream or a WavStream.
The same demo is `edge demo kws`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sdk
from sdk.audio import load_wav
from sdk.runtime import (
    MicrophoneStream,
    WavStream,
    compile_keyword_model,
    find_input_device,
    level_meter,
    model_labels,
    synthesize_speech,
)

MODELS = Path(__file__).resolve().parent / "models"
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "house"]


def pick_model(given: str | None) -> Path:
    if given:
        return Path(given)
    for name in ("kws_lmuformer_nonspiking.edge", "kws_lmuformer_nonspiking.onnx"):
        if (MODELS / name).is_file():
            return MODELS / name
    sys.exit(f"no model in {MODELS}: run tools/train_kws.py or pass --model")


def open_source(args: argparse.Namespace):
    """The audio source and a line describing it; a missing device falls back to the file."""
    if args.live:
        device, note = find_input_device(args.device)
        if device is not None:
            return MicrophoneStream(device, duration_s=args.seconds), f"live: {note}"
        print(f"no audio capture device: {note}; streaming a WAV file instead")
    if args.wav:
        samples, what = load_wav(args.wav), args.wav
    else:
        samples, _ = synthesize_speech(WORDS)
        what = "generated speech: " + " ".join(WORDS)
    if args.seconds:
        samples = samples[:int(args.seconds * 16000)]
    pace = "as fast as possible" if args.fast else "in real time"
    return WavStream(samples, realtime=not args.fast), f"{what} ({pace})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wav", help="WAV file to stream (resampled to 16 kHz, mixed to mono)")
    ap.add_argument("--live", action="store_true", help="capture from the microphone")
    ap.add_argument("--device", help="capture device index or name")
    ap.add_argument("--fast", action="store_true", help="do not pace the file in real time")
    ap.add_argument("--model", help="step graph .onnx or integer bundle .edge")
    ap.add_argument("--seconds", type=float, help="stop after this much audio")
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--float", action="store_true", help="run the float graph, not integers")
    args = ap.parse_args(argv)

    try:
        path = pick_model(args.model)
        model = path
        if path.suffix == ".onnx" and not args.float:  # run it in integers, as on a device
            calibration, _ = synthesize_speech(WORDS[:10] + ["bird", "dog"], voice="en+f2")
            model = compile_keyword_model(path, calibration)
            print(f"compiled {path.name} to integers")
        spotter = sdk.KeywordSpotter(model, model_labels(path), threshold=args.threshold)
        source, what = open_source(args)
    except sdk.EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"listening to {what}")
    heard = 0.0
    try:
        for chunk in source:
            for result in spotter.push(chunk):
                if result.event:
                    ev = result.event
                    print(f"{ev.time_s:7.2f} s  {ev.keyword:<6s} ({ev.confidence:.2f})")
            heard += len(chunk) / 16000
            if round(heard * 10) % 5 == 0:  # a meter line every 0.5 s
                print(f"{heard:7.2f} s  {level_meter(chunk)}")
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
