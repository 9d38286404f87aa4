"""Layout operators with ONNX semantics, for any dtype (float or quantized integers).

They move or select elements and never change a value, so a quantized tensor keeps its
scale and zero point through them (Pad takes the pad value from the caller: the zero point
for quantized tensors).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def int_tuple(v: np.ndarray | Sequence[int] | None) -> list[int]:
    return [] if v is None else [int(a) for a in np.asarray(v).ravel()]


def reshape(x: np.ndarray, shape: np.ndarray, *, allowzero: int = 0) -> np.ndarray:
    """ONNX Reshape: ``-1`` infers one dim; ``0`` copies the input's dim (unless ``allowzero``)."""
    dims = int_tuple(shape)
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return np.reshape(x, dims)


def flatten(x: np.ndarray, *, axis: int = 1) -> np.ndarray:
    """``[d0..d_{a−1}, d_a..d_{r−1}] → [Π d0..d_{a−1}, Π d_a..d_{r−1}]``."""
    a = axis % x.ndim if x.ndim else 0
    if axis == x.ndim:
        a = x.ndim
    lead = int(np.prod(x.shape[:a], dtype=np.int64))
    return np.reshape(x, (lead, -1) if x.size else (lead, int(np.prod(x.shape[a:]))))


def transpose(x: np.ndarray, *, perm: Sequence[int] | None = None) -> np.ndarray:
    """Permute axes (reverse them when ``perm`` is absent)."""
    return np.transpose(x, None if perm is None else list(perm))


def concat(inputs: Sequence[np.ndarray], *, axis: int) -> np.ndarray:
    """Join along ``axis``."""
    return np.concatenate(list(inputs), axis=axis)


def slice_(x: np.ndarray, starts: np.ndarray, ends: np.ndarray, axes: np.ndarray | None = None,
           steps: np.ndarray | None = None) -> np.ndarray:
    """ONNX Slice: per listed axis ``x[start:end:step]``, with ONNX's clamping of out-of-range
    (including ±2^63) bounds."""
    st, en = int_tuple(starts), int_tuple(ends)
    ax = int_tuple(axes) if axes is not None else list(range(len(st)))
    sp = int_tuple(steps) if steps is not None else [1] * len(st)
    sel = [slice(None)] * x.ndim
    for s, e, a, p in zip(st, en, ax, sp):
        a %= x.ndim
        n = x.shape[a]
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if p > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
        else:
            s, e = min(max(s, -1), n - 1), min(max(e, -1), n - 1)
        sel[a] = slice(s, e if e >= 0 else None, p)
    return x[tuple(sel)]


def gather(x: np.ndarray, indices: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """``out[i..., j..., k...] = x[i..., indices[j...], k...]`` (negative indices wrap)."""
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take(x, idx, axis=axis)


def squeeze(x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
    """Drop the listed size-1 axes (all size-1 axes when ``axes`` is absent)."""
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(a % x.ndim for a in int_tuple(axes)))


def unsqueeze(x: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Insert size-1 axes at the listed positions of the output."""
    out_rank = x.ndim + len(int_tuple(axes))
    y = x
    for a in sorted(a % out_rank for a in int_tuple(axes)):
        y = np.expand_dims(y, a)
    return y


def pad(x: np.ndarray, pads: np.ndarray, value: float = 0, axes: np.ndarray | None = None,
        *, mode: str = "constant") -> np.ndarray:
    """ONNX Pad: ``pads = [b_1..b_k, e_1..e_k]`` for the listed axes (all axes by default);
    negative pads crop. Modes constant, reflect, edge, wrap."""
    p = int_tuple(pads)
    ax = [a % x.ndim for a in int_tuple(axes)] if axes is not None else list(range(x.ndim))
    k = len(ax)
    widths = [[0, 0] for _ in range(x.ndim)]
    for i, a in enumerate(ax):
        widths[a] = [p[i], p[i + k]]
    crop = [slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths)]
    y = x[tuple(crop)]
    w = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        return np.pad(y, w, mode="constant", constant_values=np.asarray(value, x.dtype))
    return np.pad(y, w, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


def identity(x: np.ndarray) -> np.ndarray:
    """The input, unchanged."""
    return x


def expand(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Broadcast ``x`` against ``shape`` (bidirectional: the result may be larger than shape)."""
    target = np.broadcast_shapes(x.shape, tuple(int_tuple(shape)))
    return np.broadcast_to(x, target).copy()


def tile(x: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    """Repeat ``x`` ``repeats[i]`` times along axis ``i``."""
    return np.tile(x, int_tuple(repeats))


def split(x: np.ndarray, sizes: np.ndarray | None = None, *, axis: int = 0,
          num_outputs: int | None = None) -> list[np.ndarray]:
    """Cut along ``axis`` into pieces of the given ``sizes``; without sizes, into
    ``num_outputs`` pieces of ``ceil(len/num_outputs)`` (the last one smaller)."""
    n = x.shape[axis]
    if sizes is None:
        chunk = -(-n // num_outputs)
        bounds = [min(chunk * i, n) for i in range(1, num_outputs)]
    else:
        bounds = list(np.cumsum(int_tuple(sizes))[:-1])
    return np.split(x, bounds, axis=axis)


def depth_to_space(x: np.ndarray, *, blocksize: int, mode: str = "DCR") -> np.ndarray:
    """``[N, C·b², H, W] → [N, C, H·b, W·b]``; DCR takes depth as (b, b, C), CRD as (C, b, b)."""
    n, c, h, w = x.shape
    b = blocksize
    if mode == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


def space_to_depth(x: np.ndarray, *, blocksize: int) -> np.ndarray:
    """``[N, C, H·b, W·b] → [N, C·b², H, W]`` (inverse of DepthToSpace DCR)."""
    n, c, h, w = x.shape
    b = blocksize
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)
