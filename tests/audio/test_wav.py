"""WAV loading: mono int16 out, stereo mixdown, resampling, and clear errors."""

import shutil
import struct
import subprocess

import numpy as np
import pytest

from sdk.audio import load_wav, read_wav_info, write_wav
from sdk.errors import InputError, ModelFormatError


def _tone(freq: float, rate: int, seconds: float = 0.5, amp: float = 12000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def _raw_wav(path, payload: bytes, tag: int, channels: int, rate: int, bits: int) -> None:
    align = channels * bits // 8
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(payload), b"WAVE", b"fmt ", 16,
                         tag, channels, rate, rate * align, align, bits, b"data", len(payload))
    path.write_bytes(header + payload)


def test_int16_mono_round_trip(tmp_path):
    x = _tone(440.0, 16000)
    write_wav(tmp_path / "a.wav", x)
    assert np.array_equal(load_wav(tmp_path / "a.wav"), x)
    info = read_wav_info(tmp_path / "a.wav")
    assert (info.sample_rate, info.channels, info.bits_per_sample) == (16000, 1, 16)


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path):
    left = _tone(300.0, 16000)
    right = _tone(1200.0, 16000, amp=6000.0)
    write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1))
    expect = (left.astype(np.float64) + right) / 2.0
    assert np.abs(load_wav(tmp_path / "s.wav") - expect).max() <= 0.5


def test_other_rate_is_resampled_to_16k(tmp_path):
    write_wav(tmp_path / "r.wav", _tone(1000.0, 44100, seconds=1.0), sample_rate=44100)
    y = load_wav(tmp_path / "r.wav")
    assert len(y) == 16000
    assert abs(_peak_hz(y, 16000) - 1000.0) <= 2.0


def test_other_rate_rejected_when_resampling_is_off(tmp_path):
    write_wav(tmp_path / "r.wav", _tone(1000.0, 8000), sample_rate=8000)
    with pytest.raises(InputError, match="8000 Hz.*16000 Hz"):
        load_wav(tmp_path / "r.wav", resample_ok=False)


def test_absurd_rate_rejected(tmp_path):
    _raw_wav(tmp_path / "b.wav", b"\0\0" * 100, 1, 1, 50, 16)
    with pytest.raises(InputError, match="50 Hz"):
        load_wav(tmp_path / "b.wav")


def test_24_bit_and_float_wavs_decode(tmp_path):
    x = _tone(500.0, 16000)
    v = x.astype(np.int32) << 8
    b24 = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8)
    _raw_wav(tmp_path / "p24.wav", b24.tobytes(), 1, 1, 16000, 24)
    _raw_wav(tmp_path / "f32.wav", (x / 32768.0).astype("<f4").tobytes(), 3, 1, 16000, 32)
    assert np.array_equal(load_wav(tmp_path / "p24.wav"), x)
    assert np.array_equal(load_wav(tmp_path / "f32.wav"), x)


def test_unsupported_encoding_says_how_to_convert(tmp_path):
    _raw_wav(tmp_path / "alaw.wav", b"\0" * 100, 6, 1, 16000, 8)
    with pytest.raises(InputError, match="sox"):
        load_wav(tmp_path / "alaw.wav")


def test_not_a_wav_and_missing_file(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"hello, not audio")
    with pytest.raises(ModelFormatError, match="RIFF"):
        load_wav(tmp_path / "x.wav")
    with pytest.raises(InputError, match="does not exist"):
        load_wav(tmp_path / "nope.wav")


def test_write_wav_needs_int16(tmp_path):
    with pytest.raises(InputError, match="int16"):
        write_wav(tmp_path / "f.wav", np.zeros(10, np.float32))


def test_sox_made_stereo_44k_file_loads_as_16k_mono(tmp_path):
    if shutil.which("sox") is None:
        pytest.skip("sox not installed")
    path = tmp_path / "sox.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(path),
                    "synth", "0.5", "sine", "700", "gain", "-6"], check=True)
    info = read_wav_info(path)
    assert (info.sample_rate, info.channels) == (44100, 2)
    y = load_wav(path)
    assert y.dtype == np.int16 and y.ndim == 1 and len(y) == 8000
    assert abs(_peak_hz(y, 16000) - 700.0) <= 4.0
