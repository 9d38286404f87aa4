"""Facts about the TFLite flatbuffer format shared by the .tflite writer and reader.

TFLite stores float scales, not integer multipliers: an interpreter derives each op's dyadic
multiplier from the tensor scales when it prepares the op. The SDK's integer ops store the
multiplier (``m0``, ``shift``) instead, so writing and reading a model needs the exact rule
each TFLite kernel uses:

* CONV_2D, DEPTHWISE_CONV_2D, per-channel FULLY_CONNECTED:
  ``M[c] = double(s_in) · double(s_w[c]) / double(s_out)``.
* per-tensor FULLY_CONNECTED, BATCH_MATMUL: ``M = double(float32(s_in · s_w)) / double(s_out)``
  (the product is taken in float32, as TFLite's ``GetQuantizedConvolutionMultipler`` does).
* MUL: ``M = double(float32(float32(s_a · s_b) / s_out))`` (all in float32).
* ADD (int8): ``left_shift = 20``, ``t = 2·max(s_a, s_b)``, ``M_a = s_a / t``,
  ``M_b = s_b / t``, ``M_out = t / (2^20 · s_out)``, all in double.

Layout: the IR is NCHW, TFLite NHWC. A 4-D activation tensor that meets a spatial op
(conv, pooling, resize) — directly or through element-wise ops — is stored NHWC in the file;
every other tensor keeps the IR's axis order. :func:`nhwc_tensors` decides this on either side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from sdk.kernels import elementwise
from sdk.kernels.elementwise import ADD_LEFT_SHIFT
from sdk.kernels.requant import quantize_multiplier_array
from sdk.ops.schema import LAYOUT_FREE, SPATIAL, ops_with

# IR dtype name <-> tflite TensorType value
TFLITE_TYPE = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7,
               "int8": 9}
IR_DTYPE = {v: k for k, v in TFLITE_TYPE.items()}

# ActivationFunctionType
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3

# Padding
PAD_SAME, PAD_VALID = 0, 1


NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)

# IR ops whose 4-D activations are NHWC in TFLite
SPATIAL_OPS = ops_with(SPATIAL)
# IR ops that are indifferent to axis order (same shape in and out, per-element or broadcast)
ELEMENTWISE_OPS = ops_with(LAYOUT_FREE)  # Pad among them: rank kept, pads permuted


def resize_nearest_matches(in_size: int, out_size: int) -> bool:
    """Whether TFLite's float32 ``floor(i · (in/out))`` picks the IR's exact
    ``floor(i · in / out)`` source index for every output position (align_corners and
    half_pixel_centers off)."""
    i = np.arange(out_size, dtype=np.float32)
    tfl = np.minimum(np.floor(i * (np.float32(in_size) / np.float32(out_size))), in_size - 1)
    exact = (np.arange(out_size, dtype=np.int64) * in_size) // max(out_size, 1)
    return bool(np.array_equal(tfl.astype(np.int64), exact))


def _f32(x: float) -> float:
    return float(np.float32(x))


def conv_multipliers(s_in: float, s_w: np.ndarray, s_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (m0, shift) as TFLite derives them for CONV_2D / DEPTHWISE_CONV_2D."""
    s_w = np.atleast_1d(np.asarray(s_w, np.float32)).astype(np.float64)
    return quantize_multiplier_array(float(np.float32(s_in)) * s_w / float(np.float32(s_out)))


def fc_multipliers(s_in: float, s_w: np.ndarray, s_out: float) -> tuple[np.ndarray, np.ndarray]:
    """(m0, shift) as TFLite derives them for FULLY_CONNECTED.

    One weight scale: float32 product, double division. Several: double throughout."""
    s_w = np.atleast_1d(np.asarray(s_w, np.float32))
    if s_w.size == 1:
        m = _f32(np.float32(s_in) * s_w[0]) / float(np.float32(s_out))
        return quantize_multiplier_array(np.array([m]))
    return conv_multipliers(s_in, s_w, s_out)


def matmul_multiplier(s_a: float, s_b: float, s_out: float) -> tuple[int, int]:
    """(m0, shift) for BATCH_MATMUL: float32 product, double division."""
    m0, sh = quantize_multiplier_array(
        np.array([_f32(np.float32(s_a) * np.float32(s_b)) / float(np.float32(s_out))]))
    return int(m0[0]), int(sh[0])


def mul_multiplier(s_a: float, s_b: float, s_out: float) -> tuple[int, int]:
    """(m0, shift) for MUL: the whole multiplier in float32."""
    m = np.float32(np.float32(s_a) * np.float32(s_b)) / np.float32(s_out)
    m0, sh = quantize_multiplier_array(np.array([float(np.float32(m))]))
    return int(m0[0]), int(sh[0])


def add_params(s_a: float, s_b: float, s_out: float, dtype: str = "int8") -> dict[str, int]:
    """QAdd attributes (without zero points and clamp) as TFLite's integer ADD derives them."""
    return elementwise.add_params(s_a, s_b, s_out, ADD_LEFT_SHIFT[dtype])


def activation_range(act: int, scale: float, zero_point: int, dtype: str) -> tuple[int, int]:
    """Output clamp of a fused activation, as TFLite's CalculateActivationRangeQuantized."""
    from sdk.graph.ir import qrange

    qmin, qmax = qrange(dtype)

    def q(v: float) -> int:
        return int(zero_point + round_half_away(v / float(np.float32(scale))))

    if act == ACT_NONE:
        return qmin, qmax
    if act == ACT_RELU:
        return max(qmin, q(0.0)), qmax
    if act == ACT_RELU6:
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == ACT_RELU_N1_TO_1:
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"fused activation {act} has no quantized range")


def fused_activation(act_min: int, act_max: int, scale: float, zero_point: int,
                     dtype: str) -> int | None:
    """The fused activation whose quantized range is exactly [act_min, act_max], or None."""
    for act in (ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1):
        if activation_range(act, scale, zero_point, dtype) == (act_min, act_max):
            return act
    return None


def round_half_away(x: float) -> float:
    """C's std::round."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def same_pads(in_size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite SAME padding for one spatial axis: (before, after)."""
    out = -(-in_size // stride)
    eff = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def padding_kind(in_hw: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
                 dilations: tuple[int, int], pads: Iterable[int]) -> int | None:
    """PAD_VALID / PAD_SAME when the IR's explicit pads [t, l, b, r] equal one of them."""
    t, l, b, r = (int(p) for p in pads)
    if (t, l, b, r) == (0, 0, 0, 0):
        return PAD_VALID
    ph = same_pads(in_hw[0], kernel[0], strides[0], dilations[0])
    pw = same_pads(in_hw[1], kernel[1], strides[1], dilations[1])
    if (t, b) == ph and (l, r) == pw:
        return PAD_SAME
    return None


class _Groups:
    """Union-find over tensor names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def nhwc_tensors(nodes: Iterable[tuple[str, list[str], list[str]]],
                 rank: dict[str, int], constants: set[str]) -> set[str]:
    """Names of the 4-D activation tensors that live in NHWC order in a .tflite file.

    ``nodes`` are (op, inputs, outputs) with IR op names. Tensors joined by element-wise ops
    form a group; a group touching a spatial op is NHWC.
    """
    groups = _Groups()
    seeds: set[str] = set()
    for op, ins, outs in nodes:
        acts = [t for t in list(ins) + list(outs) if t and t not in constants and rank.get(t) == 4]
        if op in SPATIAL_OPS:
            seeds.update(t for t in acts if t in ins[:1] or t in outs)
        elif op in ELEMENTWISE_OPS:
            for t in acts[1:]:
                groups.union(acts[0], t)
    roots = {groups.find(t) for t in seeds}
    return {t for t in groups.parent if groups.find(t) in roots} | seeds
