"""Integer pooling: max, average (TFLite rounding), global average (requantized).

Windows follow ONNX: ``pads = [top, left, bottom, right]``, output size
``OH = (H + top + bottom − dh·(kh − 1) − 1) // sh + 1`` (floor mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import InputError
from sdk.kernels.checks import (
    channel_vector,
    check_range,
    int_tuple,
    integer_array,
    non_negative,
    out_dtype,
    positive,
)
from sdk.kernels.requant import requantize, round_half_away_div, wrap_int32


def pool_geometry(x_shape: tuple[int, ...], kernel: Any, strides: Any, pads: Any,
                  dilations: Any) -> tuple[tuple[int, ...], ...]:
    """Checked ``(kernel, strides, pads, dilations, (OH, OW))`` of a 2-D pooling window."""
    if len(x_shape) != 4:
        raise InputError(f"2-D pooling needs x [N,C,H,W], got shape {x_shape}")
    k = int_tuple(kernel, 2, "kernel")
    st = int_tuple(strides, 2, "strides")
    pd = int_tuple(pads, 4, "pads")
    dl = int_tuple(dilations, 2, "dilations")
    positive(k, "kernel")
    positive(st, "strides")
    positive(dl, "dilations")
    non_negative(pd, "pads")
    h, w = x_shape[2], x_shape[3]
    oh = (h + pd[0] + pd[2] - dl[0] * (k[0] - 1) - 1) // st[0] + 1
    ow = (w + pd[1] + pd[3] - dl[1] * (k[1] - 1) - 1) // st[1] + 1
    if oh < 0 or ow < 0:
        raise InputError(f"pooling window {k} is larger than the padded input {h}x{w}")
    return k, st, pd, dl, (oh, ow)


def _windows(x: np.ndarray, fill: int, k: tuple[int, ...], st: tuple[int, ...],
             pd: tuple[int, ...], dl: tuple[int, ...], out: tuple[int, ...]):
    """Yield, for each kernel offset, the strided view of ``x`` padded with ``fill`` and the
    matching view of a validity mask (1 inside the image, 0 in the padding)."""
    t, l, b, r = pd
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    valid = np.pad(np.ones(x.shape[2:], np.int64), ((t, b), (l, r)))
    oh, ow = out
    for i in range(k[0]):
        for j in range(k[1]):
            ys = slice(i * dl[0], i * dl[0] + st[0] * (oh - 1) + 1, st[0])
            xs = slice(j * dl[1], j * dl[1] + st[1] * (ow - 1) + 1, st[1])
            yield xp[:, :, ys, xs], valid[ys, xs]


def max_pool2d(x: np.ndarray, *, kernel: Any, strides: Any = (1, 1), pads: Any = (0, 0, 0, 0),
               dilations: Any = (1, 1)) -> np.ndarray:
    """QMaxPool2d: ``out[n,c,y,x] = max over the in-image window positions of x``.

    Padding never wins (it is the dtype minimum); a window lying wholly in the padding gives
    the dtype minimum. Same scale and dtype in and out.
    """
    x = integer_array(x, "MaxPool input")
    k, st, pd, dl, out = pool_geometry(x.shape, kernel, strides, pads, dilations)
    lo = int(np.iinfo(x.dtype).min)
    res = np.full(x.shape[:2] + out, lo, dtype=x.dtype)
    for view, _ in _windows(x, lo, k, st, pd, dl, out):
        res = np.maximum(res, view)
    return res


def avg_pool2d(x: np.ndarray, *, kernel: Any, strides: Any = (1, 1), pads: Any = (0, 0, 0, 0),
               count_include_pad: int = 0, x_zp: int = 0) -> np.ndarray:
    """QAvgPool2d: ``out = round_half_away(Σ_window x / count)``, same scale and dtype.

    ``count`` is the number of in-image positions, or ``kh·kw`` with ``count_include_pad``
    (padded positions then hold ``x_zp``, the real value 0). A window with count 0 gives
    ``x_zp``.
    """
    x = integer_array(x, "AvgPool input")
    k, st, pd, dl, out = pool_geometry(x.shape, kernel, strides, pads, (1, 1))
    total = np.zeros(x.shape[:2] + out, dtype=np.int64)
    count = np.zeros(out, dtype=np.int64)
    fill = int(x_zp) if count_include_pad else 0
    for view, valid in _windows(x.astype(np.int64), fill, k, st, pd, dl, out):
        if count_include_pad:
            total += view
        else:
            total += view * valid
            count += valid
    if count_include_pad:
        count[...] = k[0] * k[1]
    safe = np.maximum(count, 1)
    avg = np.where(count > 0, round_half_away_div(total, safe), np.int64(x_zp))
    info = np.iinfo(x.dtype)
    return np.clip(avg, info.min, info.max).astype(x.dtype)


def global_avg_pool(x: np.ndarray, *, x_zp: int = 0, m0: Any, shift: Any, out_zp: int = 0,
                    act_min: int | None = None, act_max: int | None = None,
                    dtype: Any = "int8") -> np.ndarray:
    """QGlobalAvgPool on ``x [N, C, ...]``: ``acc[n,c] = wrap32(Σ_spatial (x − x_zp))``,
    ``out[n,c,1,..] = requantize(acc, m0, shift, out_zp, act_min, act_max)`` with
    ``M = s_in/(s_out·count)`` (the division is folded into the multiplier); ``m0``/``shift``
    per tensor or per channel. Output keeps the rank with spatial sizes 1 (ONNX)."""
    x = integer_array(x, "GlobalAvgPool input")
    if x.ndim < 3:
        raise InputError(f"GlobalAvgPool needs x [N, C, spatial...], got shape {x.shape}")
    dt = out_dtype(dtype)
    act_min, act_max = check_range(act_min, act_max, dt)
    axes = tuple(range(2, x.ndim))
    acc = wrap_int32(np.sum(x.astype(np.int64) - x_zp, axis=axes, keepdims=True))
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.ndim - 2)
    m = channel_vector(m0, c, "m0").reshape(shape)
    s = channel_vector(shift, c, "shift").reshape(shape)
    return requantize(acc, m, s, out_zp, act_min, act_max, dt)
