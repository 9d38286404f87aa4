"""Nearest-neighbour resize, ONNX ``Resize(mode=nearest, coordinate_transformation_mode=
asymmetric, nearest_mode=floor)`` with integer index arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output position: ``src[i] = floor(i · in / out)``.

    This is ONNX's ``floor(i / scale)`` with ``scale = out/in``, computed exactly in
    integers (no float rounding at exact multiples).
    """
    return (np.arange(out_size, dtype=np.int64) * in_size) // max(out_size, 1)


def resize_nearest(x: np.ndarray, *, sizes: Any) -> np.ndarray:
    """ResizeNearest: ``out[i_0, ..., i_{r−1}] = x[src_0[i_0], ..., src_{r−1}[i_{r−1}]]`` with
    ``src_d = nearest_indices(x.shape[d], sizes[d])``; any dtype, quantization unchanged.

    ``sizes`` is the full output shape (the frontend turns ONNX ``scales`` into sizes,
    ``floor(in·scale)``)."""
    x = np.asarray(x)
    sz = tuple(int(s) for s in np.asarray(sizes).ravel())
    if len(sz) != x.ndim:
        raise GraphError(f"ResizeNearest sizes {list(sz)} must give one size per axis of the "
                         f"input shape {x.shape}")
    if any(s < 0 for s in sz):
        raise GraphError(f"ResizeNearest sizes must be >= 0, got {list(sz)}")
    if any(s > 0 and d == 0 for s, d in zip(sz, x.shape)):
        raise GraphError(f"ResizeNearest cannot grow an empty axis: input {x.shape}, sizes "
                         f"{list(sz)}")
    out = x
    for d, s in enumerate(sz):
        if s != x.shape[d]:
            out = np.take(out, nearest_indices(x.shape[d], s), axis=d)
    return np.ascontiguousarray(out)


COORD_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")


def source_fraction(i: np.ndarray, in_size: int, out_size: int, mode: str
                    ) -> tuple[np.ndarray, int]:
    """ONNX source coordinate of output positions ``i`` as an exact fraction ``num / den``
    (``den > 0``, integers), for ``scale = out/in``:

    * ``half_pixel``: ``(i + ½)·in/out − ½ = ((2i+1)·in − out) / (2·out)``
    * ``pytorch_half_pixel``: the same when ``out > 1``, else ``0``
    * ``asymmetric``: ``i·in/out``
    * ``align_corners``: ``i·(in−1)/(out−1)`` when ``out > 1``, else ``0``
    """
    i = np.asarray(i, np.int64)
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and out_size > 1):
        return (2 * i + 1) * in_size - out_size, 2 * out_size
    if mode == "asymmetric":
        return i * in_size, out_size
    if mode in ("align_corners", "pytorch_half_pixel"):
        if out_size > 1:
            return i * (in_size - 1), out_size - 1
        return np.zeros_like(i), 1
    raise GraphError(f"ResizeBilinear coord_mode {mode!r} is not one of {list(COORD_MODES)}")


def bilinear_taps(in_size: int, out_size: int, mode: str, frac_bits: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output position: the two source indices ``lo``, ``hi`` and the weight of ``hi`` as
    a Q``frac_bits`` integer, all exact integer arithmetic (a compile-time table).

    ``c = num/den`` from :func:`source_fraction` is clamped to ``[0, in−1]`` (ONNX/ORT linear:
    edge padding), ``lo = floor(c)``, ``hi = min(lo+1, in−1)``, ``r = num − lo·den``,
    ``w_hi = floor((r·2^(B+1) + den) / (2·den))`` (``r/den`` rounded half up, r ≥ 0),
    the weight of ``lo`` is ``2^B − w_hi``."""
    num, den = source_fraction(np.arange(out_size, dtype=np.int64), in_size, out_size, mode)
    num = np.clip(num, 0, (in_size - 1) * den)
    lo = num // den
    r = num - lo * den
    hi = np.minimum(lo + 1, in_size - 1)
    w_hi = (r * (1 << (frac_bits + 1)) + den) // (2 * den)
    return lo, hi, w_hi


def _round_shift_away(v: np.ndarray, bits: int) -> np.ndarray:
    """``round_half_away(v / 2^bits)`` in int64."""
    half = np.int64(1) << np.int64(bits - 1) if bits > 0 else np.int64(0)
    mag = (np.abs(v) + half) >> np.int64(bits)
    return np.where(v < 0, -mag, mag)


def resize_bilinear(x: np.ndarray, *, sizes: Any, coord_mode: str = "half_pixel",
                    frac_bits: int = 10, zero_point: int = 0) -> np.ndarray:
    """ResizeBilinear: ONNX ``Resize(mode=linear)`` over the last two axes of an integer tensor
    (leading axes unchanged), same scale and zero point in and out.

    With ``(ylo, yhi, wy)`` = :func:`bilinear_taps` ``(H, H', coord_mode, B)`` and ``(xlo, xhi,
    wx)`` likewise for W (``B = frac_bits``, weights in Q``B``, ``w̄ = 2^B − w``), ``d = x − zp``:

        acc = w̄y·(w̄x·d[ylo,xlo] + wx·d[ylo,xhi]) + wy·(w̄x·d[yhi,xlo] + wx·d[yhi,xhi])
        out = clamp(zp + round_half_away(acc / 2^(2B)), dtype range)

    The weights sum to ``2^(2B)``, so the result is a convex combination (the clamp never
    binds). ``acc`` fits in int32 for 8-bit inputs with ``B ≤ 11``; int16 inputs need int64
    (the reference computes in int64)."""
    x = np.asarray(x)
    sz = tuple(int(s) for s in np.asarray(sizes).ravel())
    if x.dtype.kind not in "iu":
        raise GraphError(f"ResizeBilinear takes an integer tensor, got {x.dtype}")
    if len(sz) != x.ndim or x.ndim < 2 or sz[:-2] != x.shape[:-2]:
        raise GraphError(f"ResizeBilinear resizes the last two axes only: input {x.shape}, "
                         f"sizes {list(sz)}")
    if min(sz[-2:]) <= 0 or min(x.shape[-2:]) <= 0:
        raise GraphError(f"ResizeBilinear needs non-empty spatial axes: input {x.shape}, "
                         f"sizes {list(sz)}")
    if not 1 <= int(frac_bits) <= 15:
        raise GraphError(f"ResizeBilinear frac_bits must be in 1..15, got {frac_bits}")
    b = int(frac_bits)
    one = np.int64(1) << np.int64(b)
    ylo, yhi, wy = bilinear_taps(x.shape[-2], sz[-2], coord_mode, b)
    xlo, xhi, wx = bilinear_taps(x.shape[-1], sz[-1], coord_mode, b)
    d = x.astype(np.int64) - np.int64(zero_point)
    top = d[..., ylo, :]
    bot = d[..., yhi, :]
    row_t = (one - wx) * top[..., xlo] + wx * top[..., xhi]
    row_b = (one - wx) * bot[..., xlo] + wx * bot[..., xhi]
    acc = (one - wy)[:, None] * row_t + wy[:, None] * row_b
    out = np.int64(zero_point) + _round_shift_away(acc, 2 * b)
    info = np.iinfo(x.dtype)
    return np.clip(out, info.min, info.max).astype(x.dtype)
