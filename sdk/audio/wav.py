"""WAV files in and out: PCM 8/16/24/32-bit and IEEE float, mono or multichannel.

``load_wav`` returns what the keyword-spotting front end expects: mono int16 samples at the
requested rate. Stereo (any channel count) is mixed down by averaging the channels; another
sample rate is resampled with a polyphase filter (``scipy.signal.resample_poly`` with the
reduced ratio ``target/source``), or rejected with a clear message when ``resample=False``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.errors import InputError, ModelFormatError

_PCM = 1
_IEEE_FLOAT = 3
_EXTENSIBLE = 0xFFFE

#: Sample rates accepted as input; outside this range a file is almost certainly corrupt.
MIN_RATE_HZ = 1000
MAX_RATE_HZ = 384000


@dataclass(frozen=True)
class WavInfo:
    """Header facts of a WAV file."""

    sample_rate: int
    channels: int
    bits_per_sample: int
    is_float: bool
    frames: int


def _parse_chunks(data: bytes, path: str) -> tuple[bytes, bytes]:
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ModelFormatError(f"{path}: not a RIFF/WAVE file; give a .wav file (PCM or float)")
    fmt = None
    payload = None
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            payload = body
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None or len(fmt) < 16:
        raise ModelFormatError(f"{path}: WAV has no valid 'fmt ' chunk; the file is truncated "
                               "or corrupt")
    if payload is None:
        raise ModelFormatError(f"{path}: WAV has no 'data' chunk; the file is truncated or corrupt")
    return fmt, payload


def _decode(fmt: bytes, payload: bytes, path: str) -> tuple[WavInfo, np.ndarray]:
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the SubFormat GUID
    if channels < 1:
        raise ModelFormatError(f"{path}: WAV header says {channels} channels; file is corrupt")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise InputError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE_HZ}.."
                         f"{MAX_RATE_HZ} Hz; re-export the audio at 16000 Hz")
    width = bits // 8
    if tag == _PCM and bits in (8, 16, 24, 32):
        is_float = False
    elif tag == _IEEE_FLOAT and bits in (32, 64):
        is_float = True
    else:
        raise InputError(f"{path}: unsupported WAV encoding (format tag {tag}, {bits} bits); "
                         "convert it to 16-bit PCM, e.g. `sox in.wav -b 16 out.wav`")
    if block_align != width * channels:
        raise ModelFormatError(f"{path}: WAV block align {block_align} does not match "
                               f"{channels} channels of {bits} bits; file is corrupt")
    frames = len(payload) // block_align
    raw = payload[:frames * block_align]
    if is_float:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    elif bits == 8:  # 8-bit WAV is unsigned with offset 128
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / float(1 << 23)
    else:
        dt = "<i2" if bits == 16 else "<i4"
        x = np.frombuffer(raw, dtype=dt).astype(np.float64) / float(1 << (bits - 1))
    info = WavInfo(sample_rate=rate, channels=channels, bits_per_sample=bits,
                   is_float=is_float, frames=frames)
    return info, x.reshape(frames, channels)


def read_wav_info(path: str | Path) -> WavInfo:
    """Parse only the header facts of a WAV file."""
    data = _read_bytes(path)
    fmt, payload = _parse_chunks(data, str(path))
    info, _ = _decode(fmt, payload, str(path))
    return info


def _read_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"audio file {p} does not exist; give the path of a .wav file")
    return p.read_bytes()


def resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a float signal along axis 0 by the ratio target/source."""
    if source_rate == target_rate:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(int(source_rate), int(target_rate))
    return resample_poly(x, target_rate // g, source_rate // g, axis=0)


def float_to_int16(x: np.ndarray) -> np.ndarray:
    """Full-scale float in [-1, 1] to int16 (round half to even, saturating)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(
        np.int16)


def decode_wav_bytes(data: bytes, sample_rate: int = 16000, resample_ok: bool = True,
                     name: str = "<bytes>") -> np.ndarray:
    """Decode WAV bytes to mono int16 at ``sample_rate`` (see :func:`load_wav`)."""
    fmt, payload = _parse_chunks(data, name)
    info, x = _decode(fmt, payload, name)
    mono = x.mean(axis=1)  # stereo (or more channels) mixdown: average of the channels
    if info.sample_rate != sample_rate:
        if not resample_ok:
            raise InputError(f"{name}: sample rate is {info.sample_rate} Hz but {sample_rate} Hz "
                             f"is needed; resample it (e.g. `sox in.wav -r {sample_rate} out.wav`)"
                             " or allow resampling")
        mono = resample(mono, info.sample_rate, sample_rate)
    return float_to_int16(mono)


def load_wav(path: str | Path, sample_rate: int = 16000, resample_ok: bool = True) -> np.ndarray:
    """Load a WAV file as mono int16 samples at ``sample_rate``.

    Channels are averaged (stereo mixdown). A file at another rate is resampled when
    ``resample_ok`` is true, otherwise :class:`~sdk.errors.InputError` names both rates.
    Corrupt or non-WAV files raise :class:`~sdk.errors.ModelFormatError`.
    """
    return decode_wav_bytes(_read_bytes(path), sample_rate, resample_ok, name=str(path))


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Write int16 samples (shape ``[n]`` mono or ``[n, channels]``) as 16-bit PCM WAV."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        raise InputError(f"write_wav needs int16 samples, got {x.dtype}; convert with "
                         "sdk.audio.float_to_int16")
    if x.ndim == 1:
        x = x[:, None]
    channels = x.shape[1]
    payload = x.astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(payload), b"WAVE", b"fmt ",
                         16, _PCM, channels, sample_rate, sample_rate * 2 * channels,
                         2 * channels, 16, b"data", len(payload))
    Path(path).write_bytes(header + payload)
