"""Fixed-point streaming log-mel: tolerance against the float reference, streaming == offline."""

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.audio import (
    HOP_LENGTH,
    StreamingLogMel,
    decode_wav_bytes,
    logmel,
    logmel_float_reference,
    tolerance_mask,
)
from sdk.audio.logmel import FLOAT_TOLERANCE_LOG2, MEL_BITS, N_MELS
from sdk.errors import InputError


def _speech_plus_noise(seed: int = 0) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    wav = subprocess.run(["espeak-ng", "-v", "en-us+m3", "--stdout", "left right stop"],
                         capture_output=True, check=True).stdout
    speech = decode_wav_bytes(wav).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0.0, 40.0, len(speech))
    return np.clip(np.rint(speech + noise), -32768, 32767).astype(np.int16)


def _sweep(amplitude: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    f = 50.0 * np.exp(t / seconds * np.log(7900.0 / 50.0))
    return np.rint(amplitude * np.sin(2 * np.pi * np.cumsum(f) / 16000)).astype(np.int16)


def _max_error_in_tolerance_region(x: np.ndarray) -> float:
    q = logmel(x)
    ref = logmel_float_reference(x)
    mask = tolerance_mask(ref)
    assert mask.sum() > 0.1 * mask.size, "the test signal must exercise the stated region"
    return float(np.abs(q / 256.0 - ref)[mask].max())


def test_speech_within_stated_tolerance_of_float_reference():
    assert _max_error_in_tolerance_region(_speech_plus_noise()) <= FLOAT_TOLERANCE_LOG2


@pytest.mark.parametrize("amplitude", [32767.0, 1000.0, 40.0])
def test_sine_sweep_within_stated_tolerance_at_any_level(amplitude):
    assert _max_error_in_tolerance_region(_sweep(amplitude)) <= FLOAT_TOLERANCE_LOG2


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_amp=st.floats(1.0, 4.5))
def test_random_noise_within_stated_tolerance(seed, log_amp):
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(0.0, 10.0 ** log_amp, 3200), -32768, 32767).astype(np.int16)
    ref = logmel_float_reference(x)
    mask = tolerance_mask(ref)
    assert np.all(np.abs(logmel(x) / 256.0 - ref)[mask] <= FLOAT_TOLERANCE_LOG2)


def test_full_scale_square_wave_does_not_overflow():
    x = np.where((np.arange(16000) // 8) % 2 == 0, 32767, -32768).astype(np.int16)
    q = logmel(x)
    ref = logmel_float_reference(x)
    assert ref.max() > 44  # near the largest mel energy a full-scale int16 signal reaches
    mask = tolerance_mask(ref)
    assert np.all(np.abs(q / 256.0 - ref)[mask] <= FLOAT_TOLERANCE_LOG2)


def test_digital_silence_gives_the_floor():
    q = logmel(np.zeros(1600, np.int16))
    assert q.shape == (10, N_MELS)
    assert np.all(q == -MEL_BITS * 256)


def test_one_second_gives_100_frames_of_int16():
    q = logmel(np.ones(16000, np.int16))
    assert q.shape == (100, N_MELS) and q.dtype == np.int16


def test_hop_by_hop_equals_whole_clip():
    x = _sweep(8000.0, 1.0)
    fe = StreamingLogMel()
    frames = np.stack([fe.step(x[i:i + HOP_LENGTH]) for i in range(0, len(x), HOP_LENGTH)])
    assert np.array_equal(frames, logmel(x))


def test_push_with_odd_chunk_sizes_equals_whole_clip():
    x = _sweep(3000.0, 1.0)
    fe = StreamingLogMel()
    rng = np.random.default_rng(1)
    parts, pos = [], 0
    while pos < len(x):
        n = int(rng.integers(1, 500))
        parts.append(fe.push(x[pos:pos + n]))
        pos += n
    assert np.array_equal(np.concatenate(parts), logmel(x))


def test_saved_state_resumes_the_stream_exactly():
    x = _sweep(5000.0, 1.0)
    a = StreamingLogMel()
    first = a.push(x[:7001])
    b = StreamingLogMel()
    b.set_state(a.get_state())
    rest = b.push(x[7001:])
    assert np.array_equal(np.concatenate([first, rest]), logmel(x))


def test_reset_forgets_history():
    x = _sweep(5000.0, 0.5)
    fe = StreamingLogMel()
    fe.push(x)
    fe.reset()
    assert np.array_equal(fe.push(x), logmel(x))


@pytest.mark.parametrize("bad, match", [
    (np.zeros(HOP_LENGTH, np.float32), "int16"),
    (np.zeros((HOP_LENGTH, 2), np.int16), "mono"),
    (np.zeros(100, np.int16), "exactly 160"),
])
def test_step_rejects_bad_hops(bad, match):
    with pytest.raises(InputError, match=match):
        StreamingLogMel().step(bad)


def test_set_state_rejects_wrong_size():
    with pytest.raises(InputError, match="get_state"):
        StreamingLogMel().set_state(np.zeros(3, np.int16))
