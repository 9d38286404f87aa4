"""Audio sources for streaming models: a capture device through sounddevice (PortAudio), or a
WAV streamed in real time (or as fast as possible), both as an iterator of int16 chunks.

    device, note = find_input_device()               # (None, reason) when there is none
    source = MicrophoneStream(device) if device else WavStream(load_wav("in.wav"))
    for chunk in source:                             # mono int16 at 16 kHz
        spotter.push(chunk)

Also: a text level meter and keyword speech generated with espeak-ng (the demo's input).
"""

from __future__ import annotations

import math
import queue
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.errors import DeviceError, InputError

SAMPLE_RATE = 16000
CHUNK = 1600  # 100 ms


@dataclass(frozen=True)
class CaptureDevice:
    """A PortAudio input device."""

    index: int
    name: str
    host_api: str
    max_input_channels: int


def find_input_device(device: int | str | None = None) -> tuple[CaptureDevice | None, str]:
    """The capture device to use and a one-line note; ``(None, reason)`` when there is none.

    ``device``: index or (part of a) name; default: PortAudio's default input, else the first
    device with input channels. Never raises for a missing device or PortAudio library.
    """
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library is missing
        return None, f"sounddevice/PortAudio unavailable ({exc})"
    try:
        devices = list(sd.query_devices())
        apis = sd.query_hostapis()
    except Exception as exc:  # noqa: BLE001 - PortAudio raises its own error types
        return None, f"PortAudio cannot list devices ({exc})"
    inputs = [i for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    if not inputs:
        return None, "PortAudio lists no input device"
    if device is None:
        default = sd.default.device[0]
        chosen = default if default in inputs else inputs[0]
    elif isinstance(device, int) or str(device).isdigit():
        chosen = int(device)
        if chosen not in inputs:
            return None, f"audio device {chosen} is not a capture device (inputs: {inputs})"
    else:
        named = [i for i in inputs if str(device).lower() in devices[i]["name"].lower()]
        if not named:
            return None, (f"no capture device named {device!r} (have: "
                          f"{[devices[i]['name'] for i in inputs]})")
        chosen = named[0]
    d = devices[chosen]
    return CaptureDevice(chosen, d["name"], apis[d["hostapi"]]["name"],
                         int(d["max_input_channels"])), f"capturing from {d['name']!r}"


class MicrophoneStream:
    """Mono int16 chunks from a capture device (sounddevice ``InputStream`` callback → queue).

    Iterating opens the stream and yields ``chunk``-sample arrays until ``duration_s`` of audio
    has arrived (forever when None) or :meth:`stop` is called.
    """

    def __init__(self, device: CaptureDevice, sample_rate: int = SAMPLE_RATE,
                 chunk: int = CHUNK, duration_s: float | None = None) -> None:
        self.device = device
        self.sample_rate = sample_rate
        self.chunk = chunk
        self.duration_s = duration_s
        self.overflows = 0
        self._stop = False

    def stop(self) -> None:
        """End the iteration after the current chunk."""
        self._stop = True

    def __iter__(self) -> Iterator[np.ndarray]:
        import sounddevice as sd

        chunks: queue.Queue[np.ndarray] = queue.Queue()

        def on_audio(indata, frames, when, status) -> None:  # PortAudio thread
            if status.input_overflow:
                self.overflows += 1
            chunks.put(indata[:, 0].copy())

        limit = None if self.duration_s is None else round(self.duration_s *
                                                           self.sample_rate)
        delivered = 0
        try:
            stream = sd.InputStream(device=self.device.index, samplerate=self.sample_rate,
                                    channels=1, dtype="int16", blocksize=self.chunk,
                                    callback=on_audio)
        except Exception as exc:  # noqa: BLE001 - PortAudio errors
            raise DeviceError(f"cannot open {self.device.name!r} at {self.sample_rate} Hz mono "
                              f"int16 ({exc}); choose another --device or use --wav FILE") \
                from None
        with stream:
            while not self._stop and (limit is None or delivered < limit):
                try:
                    block = chunks.get(timeout=2.0)
                except queue.Empty:
                    raise DeviceError(f"capture device {self.device.name!r} delivered no "
                                      "audio for 2 s; check it or use --wav FILE") from None
                if limit is not None:
                    block = block[:limit - delivered]
                delivered += len(block)
                yield block


class WavStream:
    """Mono int16 samples streamed in ``chunk``-sample pieces, paced in real time unless
    ``realtime=False`` (tests, batch runs)."""

    def __init__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE,
                 chunk: int = CHUNK, realtime: bool = True) -> None:
        x = np.asarray(samples)
        if x.ndim != 1 or x.dtype != np.int16:
            raise InputError(f"WavStream takes mono int16 samples, got {x.shape} {x.dtype}; "
                             "load files with sdk.audio.load_wav")
        self.samples = x
        self.sample_rate = sample_rate
        self.chunk = chunk
        self.realtime = realtime

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        start = time.monotonic()
        for i in range(0, len(self.samples), self.chunk):
            block = self.samples[i:i + self.chunk]
            if self.realtime:  # a chunk is available once its last sample has "arrived"
                due = start + (i + len(block)) / self.sample_rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield block


def level_dbfs(chunk: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale (−inf dB for silence → −120)."""
    x = np.asarray(chunk, np.float64)
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -120.0


def level_meter(chunk: np.ndarray, width: int = 30, floor_db: float = -60.0) -> str:
    """``|#######........| -23 dBFS``: the RMS level on a bar from ``floor_db`` to 0 dBFS."""
    db = level_dbfs(chunk)
    filled = round(width * min(1.0, max(0.0, (db - floor_db) / -floor_db)))
    return f"|{'#' * filled}{'.' * (width - filled)}| {max(db, -99.0):5.1f} dBFS"


def synthesize_speech(words: Sequence[str], voice: str = "en-us+m3", gap_s: float = 1.0,
                      noise_rms: float = 100.0, seed: int = 0
                      ) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """Words spoken by espeak-ng, each in its own ``gap_s``-padded slot, with light noise.

    Returns mono int16 at 16 kHz and ``(word, start time s)`` for each word. espeak-ng writes
    22050 Hz; :func:`sdk.audio.load_wav` resamples it.
    """
    from sdk.audio import load_wav

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DeviceError("espeak-ng is not installed (apt-get install espeak-ng); give a "
                          "recording with --wav FILE instead")
    parts = [np.zeros(SAMPLE_RATE // 2, np.int16)]
    truth: list[tuple[str, float]] = []
    t = len(parts[0]) / SAMPLE_RATE
    with tempfile.TemporaryDirectory(prefix="edge-speech-") as tmp:
        for k, word in enumerate(words):
            path = Path(tmp) / f"{k}.wav"
            subprocess.run([exe, "-v", voice, "-w", str(path), word], check=True,
                           capture_output=True)
            spoken = load_wav(path)
            pad = max(int(gap_s * SAMPLE_RATE) - len(spoken), SAMPLE_RATE // 2)
            truth.append((word, round(t, 3)))
            parts += [spoken, np.zeros(pad, np.int16)]
            t += (len(spoken) + pad) / SAMPLE_RATE
    audio = np.concatenate(parts).astype(np.float64)
    audio += np.random.default_rng(seed).normal(0.0, noise_rms, len(audio))
    return np.clip(np.rint(audio), -32768, 32767).astype(np.int16), truth
