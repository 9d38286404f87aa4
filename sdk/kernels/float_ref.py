"""Float32 reference kernels with ONNX semantics (the float side of the IR).

Float is for import and calibration only, so each op has one NumPy implementation; heavy ops
(Conv, Gemm, MatMul) lower to BLAS matrix products (im2col for convolution). Every function
takes and returns NumPy arrays; attributes arrive as keyword arguments with ONNX's names and
defaults. Spatial layout is ONNX's NCHW (N-D: ``[N, C, d1, ..., dk]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

F32 = np.float32


# -- padding and window geometry -------------------------------------------------------------
def resolve_pads(in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int], pads: Sequence[int] | None, auto_pad: str,
                 ceil_mode: bool = False) -> tuple[list[int], list[int], list[int]]:
    """Begin pads, end pads and output sizes of a sliding window (ONNX Conv / Pool rules).

    ``out = floor((in + pb + pe − ((k−1)·d + 1)) / s) + 1`` (``ceil`` with ``ceil_mode``).
    ``SAME_UPPER`` / ``SAME_LOWER``: ``out = ceil(in / s)``, total pad
    ``max(0, (out−1)·s + (k−1)·d + 1 − in)``, the odd pixel at the end (UPPER) or begin (LOWER).
    """
    k = len(in_spatial)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pb, pe, outs = [], [], []
        for i in range(k):
            out = -(-in_spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_spatial[i])
            small, big = total // 2, total - total // 2
            pb.append(small if auto_pad == "SAME_UPPER" else big)
            pe.append(big if auto_pad == "SAME_UPPER" else small)
            outs.append(out)
        return pb, pe, outs
    if auto_pad == "VALID" or pads is None:
        pads = [0] * (2 * k)
    pb, pe = list(pads[:k]), list(pads[k:])
    outs = []
    for i in range(k):
        span = in_spatial[i] + pb[i] + pe[i] - ((kernel[i] - 1) * dilations[i] + 1)
        out = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (out - 1) * strides[i] >= in_spatial[i] + pb[i]:
            out -= 1  # the last window must start inside the input or its begin pad
        outs.append(out)
    return pb, pe, outs


def _windows(xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
             dilations: Sequence[int], outs: Sequence[int]) -> np.ndarray:
    """View ``[N, C, o1..ok, k1..kk]`` of the windows of a padded ``[N, C, d1..dk]`` array."""
    k = len(kernel)
    span = [(kernel[i] - 1) * dilations[i] + 1 for i in range(k)]
    v = sliding_window_view(xp, span, axis=tuple(range(2, 2 + k)))
    sel = (slice(None), slice(None))
    sel += tuple(slice(0, (outs[i] - 1) * strides[i] + 1, strides[i]) for i in range(k))
    sel += tuple(slice(None, None, dilations[i]) for i in range(k))
    return v[sel]


def _pad_spatial(x: np.ndarray, pb: Sequence[int], pe: Sequence[int], value: float) -> np.ndarray:
    if not any(pb) and not any(pe):
        return x
    widths = [(0, 0), (0, 0)] + [(int(b), int(e)) for b, e in zip(pb, pe)]
    return np.pad(x, widths, constant_values=value)


# -- convolution and dense -------------------------------------------------------------------
def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, *,
         strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
         dilations: Sequence[int] | None = None, group: int = 1, auto_pad: str = "NOTSET",
         kernel_shape: Sequence[int] | None = None) -> np.ndarray:
    """ONNX Conv (N-D cross-correlation), NCHW, weights ``[O, C/group, k1..kk]``.

    ``y[n, o, p] = b[o] + Σ_{c ∈ group(o), q} x_pad[n, c, p·s + q·d] · w[o, c, q]``.
    Computed as im2col followed by one matrix product per group (a batched ``np.matmul``);
    depthwise convolution (one input and one output channel per group) accumulates shifted
    windows instead, which avoids a tall, thin product per channel.
    """
    x = np.asarray(x, F32)
    w = np.asarray(w, F32)
    n, c = x.shape[:2]
    o = w.shape[0]
    kernel = list(w.shape[2:])
    k = len(kernel)
    strides = list(strides or [1] * k)
    dilations = list(dilations or [1] * k)
    pb, pe, outs = resolve_pads(x.shape[2:], kernel, strides, dilations, pads, auto_pad)
    xp = _pad_spatial(x, pb, pe, 0.0)
    cg, og = c // group, o // group
    win = _windows(xp, kernel, strides, dilations, outs)  # [N, C, o.., k..]
    if cg == 1 and og == 1:
        y = np.zeros((n, c, *outs), F32)
        wk = w.reshape(o, -1)
        for idx, kk in enumerate(np.ndindex(*kernel)):
            tap = win[(slice(None), slice(None)) + (Ellipsis,) + kk]
            y += tap * wk[:, idx].reshape((1, o) + (1,) * k)
    else:
        kprod = int(np.prod(kernel))
        p = int(np.prod(outs))
        # cols: [group, N, Cg·K, P]
        perm = (0, 1) + tuple(range(2 + k, 2 + 2 * k)) + tuple(range(2, 2 + k))
        cols = np.ascontiguousarray(win.transpose(perm)).reshape(n, group, cg * kprod, p)
        wg = w.reshape(group, 1, og, cg * kprod)
        y = np.matmul(wg, cols.transpose(1, 0, 2, 3))  # [group, N, Og, P]
        y = y.transpose(1, 0, 2, 3).reshape(n, o, *outs)
    if b is not None:
        y = y + np.asarray(b, F32).reshape((1, o) + (1,) * k)
    return np.ascontiguousarray(y, dtype=F32)


def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, *, alpha: float = 1.0,
         beta: float = 1.0, transA: int = 0, transB: int = 0) -> np.ndarray:
    """ONNX Gemm: ``Y = alpha · A' · B' + beta · C`` with ``A' = Aᵀ if transA`` (same for B)."""
    a = np.asarray(a, F32).T if transA else np.asarray(a, F32)
    b = np.asarray(b, F32).T if transB else np.asarray(b, F32)
    y = a @ b
    if alpha != 1.0:
        y = y * F32(alpha)
    if c is not None:
        y = y + F32(beta) * np.asarray(c, F32)
    return y.astype(F32, copy=False)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX MatMul: ``np.matmul`` semantics (batch dims broadcast, 1-D operands promoted)."""
    return np.matmul(a, b)


# -- element-wise ----------------------------------------------------------------------------
def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)``."""
    return np.maximum(x, np.zeros((), x.dtype))


def leaky_relu(x: np.ndarray, *, alpha: float = 0.01) -> np.ndarray:
    """``x if x ≥ 0 else alpha·x``."""
    return np.where(x >= 0, x, x * x.dtype.type(alpha))


def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``x if x ≥ 0 else slope·x`` (slope broadcasts unidirectionally to x)."""
    return np.where(x >= 0, x, x * slope).astype(x.dtype)


def elu(x: np.ndarray, *, alpha: float = 1.0) -> np.ndarray:
    """``x if x ≥ 0 else alpha·(eˣ − 1)``."""
    return np.where(x >= 0, x, F32(alpha) * np.expm1(x)).astype(x.dtype)


def clip(x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
    """``min(max(x, lo), hi)``; an absent bound does not clip."""
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, x.dtype))
    return y


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``σ(x) = 1 / (1 + e^−x)``, evaluated as ``½(1 + tanh(x/2))`` (no overflow)."""
    return (F32(0.5) * (np.tanh(F32(0.5) * x) + F32(1))).astype(x.dtype)


def hard_sigmoid(x: np.ndarray, *, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    """``max(0, min(1, alpha·x + beta))``."""
    return np.clip(F32(alpha) * x + F32(beta), 0, 1).astype(x.dtype)


def hard_swish(x: np.ndarray) -> np.ndarray:
    """``x · max(0, min(1, x/6 + ½))``."""
    return (x * np.clip(x / F32(6) + F32(0.5), 0, 1)).astype(x.dtype)


def softplus(x: np.ndarray) -> np.ndarray:
    """``ln(1 + eˣ)``, as ``max(x,0) + ln(1 + e^−|x|)``."""
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype)


def erf(x: np.ndarray) -> np.ndarray:
    """Gauss error function ``erf(x) = 2/√π ∫₀ˣ e^(−t²) dt`` (float64 evaluation, cast back)."""
    from scipy.special import erf as _erf

    return _erf(np.asarray(x, np.float64)).astype(x.dtype)


def gelu(x: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    """ONNX Gelu: ``½x(1 + erf(x/√2))``; ``approximate="tanh"``:
    ``½x(1 + tanh(√(2/π)(x + 0.044715x³)))``."""
    xd = np.asarray(x, np.float64)
    if approximate == "tanh":
        y = 0.5 * xd * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (xd + 0.044715 * xd ** 3)))
    else:
        from scipy.special import erf as _erf

        y = 0.5 * xd * (1.0 + _erf(xd / math.sqrt(2.0)))
    return y.astype(x.dtype)


def softmax(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """``softmax(x)_i = e^(x_i − max x) / Σ_j e^(x_j − max x)`` along ``axis`` (opset ≥ 13)."""
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def masked_softmax(x: np.ndarray, ids: np.ndarray | None, keep: np.ndarray | None, *,
                   axis: int = -1, mask_shape=None) -> np.ndarray:
    """Softmax of ``x`` with a key mask (the prepared-graph form of ``Softmax(x + bias)`` where
    ``bias`` is 0 on kept positions and a huge negative elsewhere): position ``i`` is kept when
    ``ids.reshape(mask_shape)[i] != 0`` (if ``ids`` is given) and ``keep[i]`` (if given);
    the others read ``float32 min``, as the exporters' ``(1 − mask)·finfo.min`` does."""
    k = np.ones(np.shape(x), bool)
    if ids is not None:
        k = k & (np.asarray(ids).reshape([int(d) for d in mask_shape]) != 0)
    if keep is not None:
        k = k & np.asarray(keep).astype(bool)
    return softmax(np.where(k, x, np.finfo(np.float32).min).astype(x.dtype), axis=axis)


def masked_mean(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean of ``x [B, T, D]`` over the tokens ``ids [B, T]`` keeps (``!= 0``):
    ``y[b, 0] = Σ_t m·x[b, t] / Σ_t m`` (0 when no token is kept); output ``[B, 1, D]``."""
    m = (np.asarray(ids) != 0).astype(np.float64)
    s = np.einsum("bt,btd->bd", m, np.asarray(x, np.float64))
    n = m.sum(axis=1, keepdims=True)
    return np.where(n > 0, s / np.maximum(n, 1), 0.0)[:, None, :].astype(x.dtype)


def rms_normalization(x: np.ndarray, scale: np.ndarray, *, axis: int = -1,
                      epsilon: float = 1e-5) -> np.ndarray:
    """ONNX RMSNormalization (opset 23) over axes ``axis..rank−1``:
    ``y = x / √(mean(x²) + ε) · scale``."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    ms = np.mean(x * x, axis=axes, keepdims=True)
    return (x / np.sqrt(ms + F32(epsilon)) * scale).astype(x.dtype)


def log_softmax(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """``x_i − max x − ln Σ_j e^(x_j − max x)`` along ``axis``."""
    m = np.max(x, axis=axis, keepdims=True)
    s = x - m
    return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype)


# -- normalization ---------------------------------------------------------------------------
def batch_normalization(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
                        var: np.ndarray, *, epsilon: float = 1e-5) -> np.ndarray:
    """Inference BatchNormalization: ``y = scale·(x − mean)/√(var + ε) + bias`` per channel
    (axis 1)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = np.asarray(scale, F32) / np.sqrt(np.asarray(var, F32) + F32(epsilon))
    shift = np.asarray(bias, F32) - np.asarray(mean, F32) * inv
    return (x * inv.reshape(shape) + shift.reshape(shape)).astype(F32)


def layer_normalization(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None, *,
                        axis: int = -1, epsilon: float = 1e-5) -> np.ndarray:
    """ONNX LayerNormalization over axes ``axis..rank−1``:
    ``y = (x − μ)/√(σ² + ε) · scale + bias`` with ``μ``, ``σ²`` the mean and (biased)
    variance over those axes."""
    axes = tuple(range(axis % x.ndim, x.ndim))
    mu = np.mean(x, axis=axes, keepdims=True)
    d = x - mu
    var = np.mean(d * d, axis=axes, keepdims=True)
    y = d / np.sqrt(var + F32(epsilon)) * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def instance_normalization(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, *,
                           epsilon: float = 1e-5) -> np.ndarray:
    """``y = scale[c]·(x − μ_nc)/√(σ²_nc + ε) + bias[c]``, statistics over the spatial axes."""
    axes = tuple(range(2, x.ndim))
    mu = np.mean(x, axis=axes, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mu) / np.sqrt(var + F32(epsilon)) * scale.reshape(shape) + bias.reshape(shape)
    return y.astype(x.dtype)


def lrn(x: np.ndarray, *, size: int, alpha: float = 1e-4, beta: float = 0.75,
        bias: float = 1.0) -> np.ndarray:
    """Local response normalization across channels:
    ``y_c = x_c / (bias + alpha/size · Σ_{c'} x_{c'}²)^beta`` with
    ``c' ∈ [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]`` clipped to the channel range."""
    sq = np.asarray(x, F32) ** 2
    c = x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    csum = np.cumsum(padded, axis=1, dtype=np.float64)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    window = (csum[:, size:size + c] - csum[:, :c]).astype(F32)
    return (x / (F32(bias) + F32(alpha / size) * window) ** F32(beta)).astype(F32)


# -- pooling ---------------------------------------------------------------------------------
def max_pool(x: np.ndarray, *, kernel_shape: Sequence[int], strides: Sequence[int] | None = None,
             pads: Sequence[int] | None = None, dilations: Sequence[int] | None = None,
             auto_pad: str = "NOTSET", ceil_mode: int = 0, storage_order: int = 0) -> np.ndarray:
    """``y[n, c, p] = max_q x_pad[n, c, p·s + q·d]``, padding never wins (−∞)."""
    k = len(kernel_shape)
    strides = list(strides or [1] * k)
    dilations = list(dilations or [1] * k)
    pb, pe, outs = resolve_pads(x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad,
                                bool(ceil_mode))
    pe = _overhang(x.shape[2:], kernel_shape, strides, dilations, pb, pe, outs)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    win = _windows(_pad_spatial(x, pb, pe, fill), kernel_shape, strides, dilations, outs)
    return np.max(win, axis=tuple(range(-k, 0)))


def _overhang(in_spatial, kernel, strides, dilations, pb, pe, outs) -> list[int]:
    """End pads extended so that ceil-mode windows past the end pad are addressable."""
    out = []
    for i in range(len(kernel)):
        need = (outs[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
        out.append(max(pe[i], need - in_spatial[i] - pb[i]))
    return out


def average_pool(x: np.ndarray, *, kernel_shape: Sequence[int],
                 strides: Sequence[int] | None = None, pads: Sequence[int] | None = None,
                 dilations: Sequence[int] | None = None, auto_pad: str = "NOTSET",
                 ceil_mode: int = 0, count_include_pad: int = 0) -> np.ndarray:
    """``y = Σ_window x / count``; ``count`` is the number of window positions inside the input
    (``count_include_pad=0``) or inside the padded input (``=1``); positions a ceil-mode
    window hangs past the end pad never count."""
    k = len(kernel_shape)
    strides = list(strides or [1] * k)
    dilations = list(dilations or [1] * k)
    pb, pe, outs = resolve_pads(x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad,
                                bool(ceil_mode))
    pe2 = _overhang(x.shape[2:], kernel_shape, strides, dilations, pb, pe, outs)
    win = _windows(_pad_spatial(x, pb, pe2, 0.0), kernel_shape, strides, dilations, outs)
    total = np.sum(win, axis=tuple(range(-k, 0)), dtype=F32)
    # a mask of the positions that count, pooled the same way
    mask = np.zeros((1, 1) + tuple(x.shape[2:]), F32)
    mask[...] = 1.0
    if count_include_pad:
        mask = _pad_spatial(mask, pb, pe, 1.0)
        mask = _pad_spatial(mask, [0] * k, [a - b for a, b in zip(pe2, pe)], 0.0)
    else:
        mask = _pad_spatial(mask, pb, pe2, 0.0)
    count = np.sum(_windows(mask, kernel_shape, strides, dilations, outs), axis=tuple(range(-k, 0)))
    return (total / np.maximum(count, 1)).astype(F32)


def global_average_pool(x: np.ndarray) -> np.ndarray:
    """Mean over all spatial axes, kept as size-1 axes: ``[N, C, 1, .., 1]``."""
    return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True, dtype=F32).astype(x.dtype)


def global_max_pool(x: np.ndarray) -> np.ndarray:
    """Max over all spatial axes, kept as size-1 axes."""
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


# -- reductions ------------------------------------------------------------------------------
def reduce(kind: str, x: np.ndarray, axes: Sequence[int] | None = None, *, keepdims: int = 1,
           noop_with_empty_axes: int = 0) -> np.ndarray:
    """ONNX Reduce{Mean,Sum,Max,Min,Prod,L2,SumSquare} over ``axes`` (all axes when empty,
    unless ``noop_with_empty_axes``)."""
    if axes is None or len(axes) == 0:
        if noop_with_empty_axes:
            return x
        axes_t = None
    else:
        axes_t = tuple(int(a) % x.ndim for a in np.asarray(axes).ravel())
    kd = bool(keepdims)
    if kind == "ReduceMean":
        y = np.mean(x, axis=axes_t, keepdims=kd)
    elif kind == "ReduceSum":
        y = np.sum(x, axis=axes_t, keepdims=kd)
    elif kind == "ReduceMax":
        y = np.max(x, axis=axes_t, keepdims=kd)
    elif kind == "ReduceMin":
        y = np.min(x, axis=axes_t, keepdims=kd)
    elif kind == "ReduceProd":
        y = np.prod(x, axis=axes_t, keepdims=kd)
    elif kind == "ReduceSumSquare":
        y = np.sum(x * x, axis=axes_t, keepdims=kd)
    elif kind == "ReduceL2":
        y = np.sqrt(np.sum(x * x, axis=axes_t, keepdims=kd))
    else:
        raise ValueError(f"unknown reduction {kind!r}")
    return np.asarray(y, x.dtype)


def arg_extreme(kind: str, x: np.ndarray, *, axis: int = 0, keepdims: int = 1,
                select_last_index: int = 0) -> np.ndarray:
    """ONNX ArgMax / ArgMin along ``axis`` (int64 indices; first occurrence unless
    ``select_last_index``)."""
    f = np.argmax if kind == "ArgMax" else np.argmin
    if select_last_index:
        flipped = np.flip(x, axis=axis)
        idx = x.shape[axis] - 1 - f(flipped, axis=axis)
    else:
        idx = f(x, axis=axis)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, axis) if keepdims else idx


# -- resize ----------------------------------------------------------------------------------
def _source_coords(out_len: int, in_len: int, scale: float, mode: str,
                   roi: tuple[float, float] | None = None) -> np.ndarray:
    """Input coordinate of each output index (ONNX coordinate_transformation_mode)."""
    o = np.arange(out_len, dtype=np.float64)
    if mode == "asymmetric":
        return o / scale
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(o)
    if mode == "align_corners":
        return o * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(o)
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adj = out_len / (scale * in_len)
        center = in_len / 2.0
        offset = center * (1 - adj)
        return offset + (o + 0.5) / scale - 0.5
    if mode == "tf_crop_and_resize":
        start, end = roi if roi is not None else (0.0, 1.0)
        if out_len > 1:
            return start * (in_len - 1) + o * (end - start) * (in_len - 1) / (out_len - 1)
        return np.full_like(o, 0.5 * (start + end) * (in_len - 1))
    raise ValueError(f"unsupported coordinate_transformation_mode {mode!r}")


def _nearest_index(coord: np.ndarray, in_len: int, nearest_mode: str) -> np.ndarray:
    if nearest_mode == "floor":
        idx = np.floor(coord)
    elif nearest_mode == "ceil":
        idx = np.ceil(coord)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.floor(coord + 0.5)
    else:  # round_prefer_floor
        idx = np.ceil(coord - 0.5)
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def resize(x: np.ndarray, out_shape: Sequence[int], scales: Sequence[float], *,
           mode: str = "nearest", coordinate_transformation_mode: str = "half_pixel",
           nearest_mode: str = "round_prefer_floor") -> np.ndarray:
    """ONNX Resize, modes ``nearest`` and ``linear`` (separable, per axis).

    Output index ``o`` maps to input coordinate ``c(o)`` by the coordinate transformation
    (e.g. half_pixel: ``c = (o + ½)/scale − ½``; asymmetric: ``c = o/scale``). Nearest picks
    ``round(c)`` by ``nearest_mode``; linear interpolates ``(1−t)·x[⌊c⌋] + t·x[⌊c⌋+1]`` with
    ``c`` clamped to ``[0, len−1]``.
    """
    y = x
    for ax in range(x.ndim):
        if out_shape[ax] == x.shape[ax] and scales[ax] == 1.0:
            continue
        coord = _source_coords(out_shape[ax], x.shape[ax], float(scales[ax]),
                               coordinate_transformation_mode)
        if mode == "nearest":
            y = np.take(y, _nearest_index(coord, x.shape[ax], nearest_mode), axis=ax)
        elif mode == "linear":
            c = np.clip(coord, 0, x.shape[ax] - 1)
            lo = np.floor(c).astype(np.int64)
            hi = np.minimum(lo + 1, x.shape[ax] - 1)
            t = (c - lo).astype(F32)
            shape = [1] * x.ndim
            shape[ax] = -1
            t = t.reshape(shape)
            y = np.take(y, lo, axis=ax) * (1 - t) + np.take(y, hi, axis=ax) * t
        else:
            raise ValueError(f"unsupported Resize mode {mode!r}")
    return y.astype(x.dtype, copy=False)


# -- generators ------------------------------------------------------------------------------
def constant_of_shape(shape: np.ndarray, value: np.ndarray | None = None) -> np.ndarray:
    """A tensor of ``shape`` filled with the one element of ``value`` (default float32 0)."""
    v = np.zeros(1, F32) if value is None else np.asarray(value).reshape(-1)
    return np.full(tuple(int(d) for d in np.asarray(shape).ravel()), v[0], dtype=v.dtype)


def shape_of(x: np.ndarray, *, start: int = 0, end: int | None = None) -> np.ndarray:
    """ONNX Shape: the dims of ``x`` as int64, sliced ``[start:end]``."""
    return np.asarray(x.shape[start:end], dtype=np.int64)


def range_(start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``[start, start + delta, ...]`` while below ``limit`` (above, for negative delta)."""
    s = np.asarray(start)
    return np.arange(s.item(), np.asarray(limit).item(), np.asarray(delta).item(), dtype=s.dtype)
