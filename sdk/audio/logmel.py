"""Streaming log-mel filterbank in fixed point, one 10 ms hop at a time, and its float reference.

Frame ``t`` covers samples ``[160·t − 240, 160·t + 160)`` of the int16 stream (a causal 25 ms
window whose missing past is zeros), so hop ``t`` of audio produces frame ``t`` at once and
a 1 s clip at 16 kHz gives 100 frames. For each frame, in integers only:

1. window: ``xw[n] = RDP(x[n]·w[n], 15 − G)`` with ``w = round(32767·hann_periodic(400))``
   (Q15), keeping ``G = 6`` guard bits (``|xw| < 2^21``) so quiet audio keeps its precision;
2. spectrum: the integer 512-point real FFT of :mod:`sdk.audio.fft` (a 256-point complex
   radix-2 FFT of the packed even/odd samples with Q30 twiddles and rounding shifts, then a
   split), zero padded, so ``re, im`` are in Q6 sample units, ``|re|, |im| < 2^29``, with no
   overflow anywhere in int32 (headroom taken once at the input, see that module);
3. power ``P[k] = RDP(re[k]² + im[k]², 2G)`` (int64, back to sample units squared);
4. mel energy ``E[m] = Σ_k P[k]·M[m,k]`` with triangular HTK-mel filters ``M`` in Q15 (peak 32768);
   by Parseval ``Σ_k P[k] < 2^47``, so ``E < 2^62`` never overflows int64;
5. log: ``q[m] = RDP(log2_q16(max(E[m], 1)), 8) − 15·256``, an int16 in Q8 log2 units of the
   true mel energy ``E/2^15`` (floor ``2^−15``); ``log2_q16`` takes the integer part from the
   leading-bit position and the fraction from a 129-entry Q16 table of ``log2(1 + i/128)`` with
   linear interpolation (error < 2·10⁻⁵).

``RDP`` is the project's rounding shift (:func:`sdk.kernels.requant.rounding_divide_by_pot`,
round half away from zero). :func:`logmel_frames_int` is the NumPy reference (vectorised over
frames); :mod:`sdk.audio.logmel_fast` is its Numba twin for one hop (same bits), which
:class:`StreamingLogMel` uses by default. :func:`sdk.audio.logmel_op_count` counts the integer
operations of one hop.

The float reference computes the same quantity (Hann window, 512-point rFFT, the same filters
with float weights, ``log2(max(E, 2^−15))``) in float64. Stated tolerance, checked in
tests/audio on speech, noise and full-scale sweeps: ``|q/256 − ref| ≤ 0.02`` log2 units (0.06 dB)
on every mel bin whose reference is at least ``2^10`` and within 20 log2 units (60 dB) of the
loudest bin of its frame (:func:`tolerance_mask`). Below that, the leakage of the Q15 window
and the rounding of the window and FFT dominate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.audio.fft import FFTTables, build_fft_tables, real_fft_int
from sdk.errors import InputError
from sdk.kernels.requant import rounding_divide_by_pot

SAMPLE_RATE = 16000
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
N_MELS = 40
F_MIN = 20.0
F_MAX = 8000.0
WINDOW_BITS = 15
GUARD_BITS = 6
MEL_BITS = 15
LOG_FRAC_BITS = 8  # output Q8 log2 units
LUT_BITS = 7  # 128 table segments

#: Stated tolerance of the integer front end against the float reference (log2 units), on the
#: bins selected by :func:`tolerance_mask`.
FLOAT_TOLERANCE_LOG2 = 0.02
TOLERANCE_FLOOR_LOG2 = 10.0
TOLERANCE_RANGE_LOG2 = 20.0


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                   f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """Triangular filters on the HTK mel scale, peak 1, shape ``[n_mels, n_fft//2 + 1]``."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lo) / (mid - lo)
    falling = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(rising, falling))


@dataclass(frozen=True)
class LogMelTables:
    """Integer constants of the front end, built once."""

    window_q15: np.ndarray  # int64 [WIN_LENGTH]
    fft: FFTTables
    mel_q15: np.ndarray  # int64 [bins, n_mels]
    mel_lo: np.ndarray  # int64 [n_mels] first non-zero tap (bin) of each filter
    mel_hi: np.ndarray  # int64 [n_mels] one past the last non-zero tap
    log2_lut_q16: np.ndarray  # int64 [2^LUT_BITS + 1]


def _build_tables(n_mels: int) -> LogMelTables:
    n = np.arange(WIN_LENGTH)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)  # periodic Hann
    window = np.round(hann * 32767.0).astype(np.int64)
    mel = np.round(mel_filterbank(n_mels) * (1 << MEL_BITS)).astype(np.int64).T.copy()
    nonzero = mel.T != 0
    lo = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), 0)
    hi = np.where(nonzero.any(axis=1), mel.shape[0] - nonzero[:, ::-1].argmax(axis=1), 0)
    lut = np.round(np.log2(1.0 + np.arange((1 << LUT_BITS) + 1) / (1 << LUT_BITS))
                   * 65536.0).astype(np.int64)
    return LogMelTables(window, build_fft_tables(), mel, lo.astype(np.int64),
                        hi.astype(np.int64), lut)


_TABLE_CACHE: dict[int, LogMelTables] = {}


def logmel_tables(n_mels: int = N_MELS) -> LogMelTables:
    """The (cached, read-only) integer tables for ``n_mels`` bins."""
    if n_mels not in _TABLE_CACHE:
        _TABLE_CACHE[n_mels] = _build_tables(n_mels)
    return _TABLE_CACHE[n_mels]


def _bit_length_minus_one(v: np.ndarray) -> np.ndarray:
    """floor(log2(v)) for int64 v ≥ 1, by binary search on the leading bit (integers only)."""
    v = v.copy()
    b = np.zeros_like(v)
    for s in (32, 16, 8, 4, 2, 1):
        big = (v >> s) > 0
        v = np.where(big, v >> s, v)
        b += np.where(big, s, 0)
    return b


def log2_q16(energy: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``round(65536·log2(e))`` approximately, for int64 ``e ≥ 1`` (integer part + table)."""
    e = np.asarray(energy, dtype=np.int64)
    b = _bit_length_minus_one(e)
    # mantissa r in [2^30, 2^31): shift left small values, truncate large ones
    r = np.where(b <= 30, e << np.maximum(30 - b, 0), e >> np.maximum(b - 30, 0))
    frac = r - (1 << 30)
    seg_shift = 30 - LUT_BITS
    i = frac >> seg_shift
    rem = frac & ((1 << seg_shift) - 1)
    interp = lut[i] + (((lut[i + 1] - lut[i]) * rem) >> seg_shift)
    return (b << 16) + interp


def logmel_frames_int(frames: np.ndarray, tables: LogMelTables) -> np.ndarray:
    """Integer log-mel of windows ``frames`` (int16-valued, shape ``[T, WIN_LENGTH]``) → int16."""
    x = np.asarray(frames, dtype=np.int64)
    xw = rounding_divide_by_pot(x * tables.window_q15, WINDOW_BITS - GUARD_BITS)
    re, im = real_fft_int(xw, tables.fft)
    power = rounding_divide_by_pot(re * re + im * im, 2 * GUARD_BITS)
    energy = power @ tables.mel_q15  # int64 matmul, < 2^62
    q16 = log2_q16(np.maximum(energy, 1), tables.log2_lut_q16)
    q = rounding_divide_by_pot(q16, 16 - LOG_FRAC_BITS) - MEL_BITS * (1 << LOG_FRAC_BITS)
    return q.astype(np.int16)


def _check_samples(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim != 1:
        raise InputError(f"audio must be mono 1-D int16 samples, got shape {x.shape}; mix "
                         "channels down first (sdk.audio.load_wav does)")
    if x.dtype != np.int16:
        raise InputError(f"audio must be int16 samples, got {x.dtype}; convert with "
                         "sdk.audio.float_to_int16")
    return x


def frame_signal(samples: np.ndarray) -> np.ndarray:
    """Causal frames ``[n // 160, 400]``: 240 zeros of history before the first sample."""
    x = _check_samples(samples).astype(np.int64)
    n_frames = len(x) // HOP_LENGTH
    padded = np.concatenate([np.zeros(WIN_LENGTH - HOP_LENGTH, np.int64), x])
    idx = np.arange(n_frames)[:, None] * HOP_LENGTH + np.arange(WIN_LENGTH)[None, :]
    return padded[idx]


def logmel(samples: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """Whole-clip integer log-mel, int16 ``[n // 160, n_mels]`` in Q8 log2 units."""
    return logmel_frames_int(frame_signal(samples), logmel_tables(n_mels))


def logmel_float_reference(samples: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """Float64 reference of :func:`logmel` in log2 units: same frames, filters and floor."""
    frames = frame_signal(samples).astype(np.float64)
    n = np.arange(WIN_LENGTH)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)
    spec = np.fft.rfft(frames * hann, n=N_FFT, axis=1)
    energy = (np.abs(spec) ** 2) @ mel_filterbank(n_mels).T
    return np.log2(np.maximum(energy, 2.0 ** -MEL_BITS))


def tolerance_mask(reference: np.ndarray) -> np.ndarray:
    """Bins where the stated tolerance holds: ``ref ≥ 2^10`` and ``ref ≥ frame max − 20``."""
    r = np.asarray(reference)
    return (r >= TOLERANCE_FLOOR_LOG2) & (r >= r.max(axis=-1, keepdims=True)
                                          - TOLERANCE_RANGE_LOG2)


class StreamingLogMel:
    """Fixed-point log-mel computed one hop at a time; state is the last 240 samples.

    ``step(hop)`` takes exactly 160 int16 samples and returns one int16 frame of ``n_mels``
    Q8 log2 values; ``push(samples)`` accepts any number of samples and returns the frames
    completed (``[k, n_mels]``). Streaming a clip hop by hop equals :func:`logmel` bit for bit.
    ``fast=True`` runs each hop with the compiled Numba twin (:mod:`sdk.audio.logmel_fast`,
    the same bits); ``fast=False`` with the NumPy reference.
    """

    def __init__(self, n_mels: int = N_MELS, fast: bool = True) -> None:
        self.n_mels = n_mels
        self.fast = fast
        self._tables = logmel_tables(n_mels)
        if fast:
            from sdk.audio.logmel_fast import LogMelHopKernel

            self._hop = LogMelHopKernel(self._tables)
        else:
            self._hop = lambda frame: logmel_frames_int(frame[None, :], self._tables)[0]
        self.reset()

    def reset(self) -> None:
        """Forget the audio history (as at the start of a stream)."""
        self._history = np.zeros(WIN_LENGTH - HOP_LENGTH, np.int64)
        self._pending = np.zeros(0, np.int64)

    def get_state(self) -> np.ndarray:
        """Copy of the 240-sample history plus not yet framed samples (int16)."""
        return np.concatenate([self._history, self._pending]).astype(np.int16)

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state returned by :meth:`get_state`."""
        s = np.asarray(state, dtype=np.int64)
        keep = WIN_LENGTH - HOP_LENGTH
        if s.ndim != 1 or not keep <= len(s) < keep + HOP_LENGTH:
            raise InputError(f"log-mel state must hold {keep}..{keep + HOP_LENGTH - 1} samples, "
                             f"got shape {s.shape}; pass what get_state() returned")
        self._history, self._pending = s[:keep].copy(), s[keep:].copy()

    def step(self, hop: np.ndarray) -> np.ndarray:
        """One 10 ms hop (160 int16 samples) → one int16 frame ``[n_mels]``."""
        x = _check_samples(hop)
        if len(x) != HOP_LENGTH or len(self._pending):
            raise InputError(f"step() takes exactly {HOP_LENGTH} samples with nothing pending "
                             f"(got {len(x)}); use push() for other chunk sizes")
        frame = np.concatenate([self._history, x.astype(np.int64)])
        self._history = frame[HOP_LENGTH:]
        return self._hop(frame)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Any number of int16 samples → the frames they complete, ``[k, n_mels]``."""
        x = np.concatenate([self._pending, _check_samples(samples).astype(np.int64)])
        n = len(x) // HOP_LENGTH
        frames = np.empty((n, self.n_mels), np.int16)
        self._pending = x[n * HOP_LENGTH:]
        for i in range(n):
            frame = np.concatenate([self._history, x[i * HOP_LENGTH:(i + 1) * HOP_LENGTH]])
            self._history = frame[HOP_LENGTH:]
            frames[i] = self._hop(frame)
        return frames
