"""Integer real FFT of the log-mel front end: accuracy, headroom, the Numba twin, op counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.audio import (
    HOP_LENGTH,
    WIN_LENGTH,
    StreamingLogMel,
    direct_dft_op_count,
    logmel,
    logmel_op_count,
)
from sdk.audio.fft import build_fft_tables, real_fft_int
from sdk.audio.logmel import GUARD_BITS, WINDOW_BITS, logmel_frames_int, logmel_tables
from sdk.audio.logmel_fast import LogMelHopKernel
from sdk.errors import InputError
from sdk.kernels.requant import rounding_divide_by_pot
from sdk.profile import logmel_front_end_count


def _windowed(frames: np.ndarray) -> np.ndarray:
    w = logmel_tables().window_q15
    return rounding_divide_by_pot(frames.astype(np.int64) * w, WINDOW_BITS - GUARD_BITS)


def test_fft_matches_float_fft_to_a_few_units():
    x = np.random.default_rng(0).integers(-32768, 32768, (20, WIN_LENGTH))
    xw = _windowed(x)
    re, im = real_fft_int(xw, build_fft_tables())
    ref = np.fft.rfft(xw.astype(np.float64), 512, axis=1)
    # rounding: at most half a unit per butterfly stage and split, in Q6 sample units
    assert np.abs(re - ref.real).max() < 64 and np.abs(im - ref.imag).max() < 64
    assert np.abs(ref).max() > 2**24


def test_headroom_bound_holds_for_the_worst_full_scale_frame():
    w = logmel_tables().window_q15
    bound = int(np.sum(-rounding_divide_by_pot(-32768 * w, WINDOW_BITS - GUARD_BITS)))
    assert bound < 2**28.7  # the module's stated Σ|xw| bound: 2·bound fits int32
    # the frame whose bin 37 reaches the bound's order: signs of cos(2π·37n/512)
    n = np.arange(WIN_LENGTH)
    x = np.where(np.cos(2 * np.pi * 37 * n / 512) >= 0, 32767, -32768)[None, :]
    re, im = real_fft_int(_windowed(x), build_fft_tables())
    ref = np.fft.rfft(_windowed(x).astype(np.float64), 512, axis=1)
    assert np.abs(re[0, 37]) > 0.6 * bound
    assert np.abs(re - ref.real).max() < 64 and np.abs(im - ref.imag).max() < 64


_frames = st.tuples(st.integers(0, 2**31 - 1),
                    st.sampled_from(["normal", "full", "silence", "min", "tone"]),
                    st.floats(0.0, 4.6))


def _make_frame(seed: int, kind: str, log_amp: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros(WIN_LENGTH, np.int64)
    if kind == "min":
        return np.full(WIN_LENGTH, -32768, np.int64)
    if kind == "full":
        return rng.choice(np.array([-32768, 32767]), WIN_LENGTH).astype(np.int64)
    if kind == "tone":
        k = rng.uniform(0, 256)
        return np.rint(32767 * np.cos(2 * np.pi * k * np.arange(WIN_LENGTH) / 512
                                      + rng.uniform(0, 6.3))).astype(np.int64)
    x = rng.normal(0.0, 10.0 ** log_amp, WIN_LENGTH)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int64)


@settings(max_examples=60, deadline=None)
@given(spec=_frames)
def test_numba_hop_kernel_is_bit_exact_with_numpy(spec):
    frame = _make_frame(*spec)
    tables = logmel_tables()
    assert np.array_equal(LogMelHopKernel(tables)(frame),
                          logmel_frames_int(frame[None, :], tables)[0])


@pytest.mark.parametrize("fast", [True, False])
def test_streaming_is_bit_exact_with_the_whole_clip(fast):
    rng = np.random.default_rng(3)
    x = np.concatenate([np.clip(rng.normal(0, 3000, 4000), -32768, 32767),
                        np.zeros(800), np.full(800, 32767), np.full(800, -32768),
                        rng.normal(0, 2, 1600)]).astype(np.int16)
    fe = StreamingLogMel(fast=fast)
    frames = np.stack([fe.step(x[i:i + HOP_LENGTH]) for i in range(0, len(x), HOP_LENGTH)])
    assert np.array_equal(frames, logmel(x))


def test_fft_butterfly_count_matches_the_closed_form():
    # 256-point radix-2: 8·128 butterflies; per stage of span s, 256/s use twiddle 1 and
    # (s ≥ 4) 256/s use −i: 255 + 127 trivial, the rest cost 4 multiplies each
    nontrivial = 8 * 128 - 255 - 127
    assert logmel_op_count().steps["fft"][0] == 4 * nontrivial


def test_op_count_drops_more_than_five_fold_and_feeds_the_profiler():
    fft, dft = logmel_op_count(40), direct_dft_op_count(40)
    assert dft.mul32 > 5 * fft.mul32 and dft.add32 > 5 * fft.add32
    prof = logmel_front_end_count(40)
    assert (prof.mul32, prof.add32, prof.other, prof.table_bytes) == (
        fft.mul32, fft.add32, fft.other, fft.table_bytes)


def test_fft_rejects_frames_longer_than_512():
    with pytest.raises(InputError, match="frame the signal"):
        real_fft_int(np.zeros((1, 600), np.int64), build_fft_tables())
