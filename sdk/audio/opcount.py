"""Integer operations of one hop of the log-mel front end, counted from the algorithm's loops.

:func:`logmel_op_count` walks the same loops as :mod:`sdk.audio.logmel_fast` (the per-hop
kernel) and counts, per step: ``mul32`` multiplies (32×32 or 32×16, 64-bit product), ``add32``
additions/subtractions, ``other`` rounding shifts, shifts, compares and table steps. Moves
(packing, bit reversal, the −i twiddle's swap) are not counted. :func:`direct_dft_op_count`
counts the direct 512-point DFT that the FFT replaced, for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdk.audio.fft import N_COMPLEX

_LOG_OTHER = 6 + 4  # leading-bit search steps + table interpolation per mel bin


@dataclass
class LogMelOpCount:
    """Operations and constant bytes of one hop; ``steps`` maps a step to ``(mul, add, other)``."""

    name: str
    mul32: int
    add32: int
    other: int
    table_bytes: int
    steps: dict[str, tuple[int, int, int]] = field(default_factory=dict)


def _fft_stage_counts(n: int = N_COMPLEX) -> tuple[int, int, int]:
    """Radix-2 DIT butterflies: twiddles 1 and −i cost 4 adds; others 4 mul, 6 add, 2 shifts."""
    mul = add = other = 0
    span = 2
    while span <= n:
        half, stride = span // 2, n // span
        for j in range(half):
            k = j * stride
            groups = n // span
            if k == 0 or 4 * k == n:
                add += 4 * groups
            else:
                mul += 4 * groups
                add += 6 * groups
                other += 2 * groups
        span *= 2
    return mul, add, other


def _sum(steps: dict[str, tuple[int, int, int]]) -> tuple[int, int, int]:
    return tuple(int(sum(v[i] for v in steps.values())) for i in range(3))  # type: ignore


def logmel_op_count(n_mels: int = 40) -> LogMelOpCount:
    """Count one hop of :func:`sdk.audio.logmel` computed with the integer real FFT.

    ``window``: 400 × (mul, rounding shift); ``fft``: :func:`_fft_stage_counts`; ``split``:
    per bin 4 adds for A, B, 4 mul + 4 add + 2 shifts + 2 rounding shifts; ``power``: per bin
    2 mul, 1 add, 1 rounding shift; ``mel``: one multiply-add per non-zero tap; ``log``: per mel
    bin ``6 + 4`` steps and a rounding shift.
    """
    from sdk.audio.logmel import WIN_LENGTH, logmel_tables

    tables = logmel_tables(n_mels)
    bins = N_COMPLEX + 1
    taps = int(np.count_nonzero(tables.mel_q15))
    steps = {
        "window": (WIN_LENGTH, 0, WIN_LENGTH),
        "fft": _fft_stage_counts(),
        "split": (4 * bins, 8 * bins, 4 * bins),
        "power": (2 * bins, bins, bins),
        "mel": (taps, taps, 0),
        "log": (0, 0, n_mels * (_LOG_OTHER + 1)),
    }
    mul, add, other = _sum(steps)
    fft = tables.fft
    table_bytes = (2 * WIN_LENGTH + 4 * (len(fft.twiddle_re) + len(fft.twiddle_im)
                                         + len(fft.split_re) + len(fft.split_im))
                   + len(fft.bitrev) + 2 * taps + 4 * len(tables.log2_lut_q16))
    return LogMelOpCount(f"log-mel front end ({n_mels} mels, 512-point integer real FFT)",
                         mul, add, other, table_bytes, steps)


def direct_dft_op_count(n_mels: int = 40) -> LogMelOpCount:
    """The same hop with the direct 512-point DFT of the 400 windowed samples (cos and sin per
    bin and sample) that the FFT replaced: for comparison only."""
    from sdk.audio.logmel import WIN_LENGTH, logmel_tables

    tables = logmel_tables(n_mels)
    bins = N_COMPLEX + 1
    taps = int(np.count_nonzero(tables.mel_q15))
    dft = 2 * WIN_LENGTH * bins
    steps = {
        "window": (WIN_LENGTH, 0, WIN_LENGTH),
        "dft": (dft, dft, 2 * bins),
        "power": (2 * bins, bins, bins),
        "mel": (taps, taps, 0),
        "log": (0, 0, n_mels * (_LOG_OTHER + 1)),
    }
    mul, add, other = _sum(steps)
    table_bytes = 2 * WIN_LENGTH + 2 * dft + 2 * taps + 4 * len(tables.log2_lut_q16)
    return LogMelOpCount(f"log-mel front end ({n_mels} mels, direct 512-point DFT)", mul, add,
                         other, table_bytes, steps)
