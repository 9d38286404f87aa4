"""Numba twin of :func:`sdk.audio.logmel.logmel_frames_int` for one hop (the same bits).

The kernel runs the five steps of :mod:`sdk.audio.logmel` on one 400-sample frame with scalar
int64 loops: window, the integer real FFT of :mod:`sdk.audio.fft` (trivial twiddles 1 and −i
moved instead of multiplied, which gives the same bits as the table's ``±2^30``), power, the
non-zero taps of each mel filter, and the table log2. Rounding shifts are
:func:`sdk.kernels.fast.requant.rdpot`, the scalar form of the project's rounding rule.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sdk.audio.fft import N_COMPLEX, SPLIT_BITS, TWIDDLE_BITS
from sdk.audio.logmel import (
    GUARD_BITS,
    LOG_FRAC_BITS,
    LUT_BITS,
    MEL_BITS,
    WINDOW_BITS,
    LogMelTables,
)
from sdk.kernels.fast.requant import rdpot


@njit(cache=True, inline="always")
def _log2_q16(e, lut):  # pragma: no cover - compiled
    b = 0
    v = e
    for s in (32, 16, 8, 4, 2, 1):
        if (v >> s) > 0:
            v >>= s
            b += s
    r = e << (30 - b) if b <= 30 else e >> (b - 30)
    frac = r - (1 << 30)
    seg_shift = 30 - LUT_BITS
    i = frac >> seg_shift
    rem = frac & ((1 << seg_shift) - 1)
    return (b << 16) + lut[i] + (((lut[i + 1] - lut[i]) * rem) >> seg_shift)


@njit(cache=True)
def logmel_hop_kernel(frame, window, bitrev, tw_re, tw_im, sp_re, sp_im, mel_t, mel_lo,
                      mel_hi, lut, out):  # pragma: no cover - compiled
    """``out[m]`` (int16) = integer log-mel of one int64 ``frame[400]``; ``mel_t`` is
    ``[n_mels, 257]`` (the transposed Q15 filters)."""
    n = N_COMPLEX
    zr = np.zeros(n, np.int64)
    zi = np.zeros(n, np.int64)
    shift = WINDOW_BITS - GUARD_BITS
    for m in range(n):
        if 2 * m < frame.size:
            zr[bitrev[m]] = rdpot(frame[2 * m] * window[2 * m], shift)
        if 2 * m + 1 < frame.size:
            zi[bitrev[m]] = rdpot(frame[2 * m + 1] * window[2 * m + 1], shift)
    span = 2
    while span <= n:
        half = span // 2
        stride = n // span
        for j in range(half):
            k = j * stride
            wr = tw_re[k]
            wi = tw_im[k]
            for a in range(j, n, span):
                b = a + half
                if k == 0:
                    tr = zr[b]
                    ti = zi[b]
                elif 4 * k == n:
                    tr = zi[b]
                    ti = -zr[b]
                else:
                    tr = rdpot(wr * zr[b] - wi * zi[b], TWIDDLE_BITS)
                    ti = rdpot(wr * zi[b] + wi * zr[b], TWIDDLE_BITS)
                zr[b] = zr[a] - tr
                zi[b] = zi[a] - ti
                zr[a] += tr
                zi[a] += ti
        span *= 2
    bins = n + 1
    power = np.empty(bins, np.int64)
    for k in range(bins):
        f = k % n
        r = (n - k) % n
        a_r = zr[f] + zr[r]
        a_i = zi[f] - zi[r]
        b_r = zr[f] - zr[r]
        b_i = zi[f] + zi[r]
        re = rdpot((a_r << TWIDDLE_BITS) + sp_re[k] * b_i + sp_im[k] * b_r, SPLIT_BITS)
        im = rdpot((a_i << TWIDDLE_BITS) + sp_im[k] * b_i - sp_re[k] * b_r, SPLIT_BITS)
        power[k] = rdpot(re * re + im * im, 2 * GUARD_BITS)
    for m in range(out.size):
        e = np.int64(0)
        for k in range(mel_lo[m], mel_hi[m]):
            e += power[k] * mel_t[m, k]
        q16 = _log2_q16(max(e, np.int64(1)), lut)
        out[m] = rdpot(q16, 16 - LOG_FRAC_BITS) - MEL_BITS * (1 << LOG_FRAC_BITS)


class LogMelHopKernel:
    """The compiled per-hop kernel bound to one set of tables (contiguous int64 copies)."""

    def __init__(self, tables: LogMelTables) -> None:
        fft = tables.fft
        self._args = tuple(np.ascontiguousarray(a, dtype=np.int64) for a in (
            tables.window_q15, fft.bitrev, fft.twiddle_re, fft.twiddle_im, fft.split_re,
            fft.split_im, tables.mel_q15.T, tables.mel_lo, tables.mel_hi, tables.log2_lut_q16))
        self.n_mels = tables.mel_q15.shape[1]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One int64 frame ``[400]`` → int16 ``[n_mels]``."""
        out = np.empty(self.n_mels, np.int16)
        logmel_hop_kernel(frame, *self._args, out)
        return out
