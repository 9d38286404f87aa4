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
