"""Registers the integer operators of docs/ops.md: each maps a node's inputs and attributes
to a kernel of :mod:`sdk.kernels` (``fast=False``, the NumPy specification) or to its Numba
twin in :mod:`sdk.kernels.fast` (``fast=True``, same bits)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.kernels import conv, elementwise, linear, lut, pooling, quantize, resize, transformer
from sdk.kernels.fast import conv as fconv
from sdk.kernels.fast import elementwise as felementwise
from sdk.kernels.fast import linear as flinear
from sdk.kernels.fast import lut as flut
from sdk.kernels.fast import pooling as fpooling
from sdk.kernels.fast import quantize as fquantize
from sdk.kernels.fast import resize as fresize
from sdk.kernels.fast import transformer as ftransformer
from sdk.ops.registry import register

Inputs = list["np.ndarray | None"]
Attrs = dict[str, Any]


def _pick(ref: ModuleType, fast_mod: ModuleType, name: str, fast: bool) -> Callable[..., Any]:
    return getattr(fast_mod if fast else ref, name)


def _opt(inputs: Inputs, i: int) -> np.ndarray | None:
    """Optional input ``i`` (absent or '' in the node)."""
    return inputs[i] if len(inputs) > i and inputs[i] is not None else None


def _req(attrs: Attrs, op: str, *names: str) -> None:
    missing = [n for n in names if n not in attrs]
    if missing:
        raise GraphError(f"{op} node lacks attribute(s) {', '.join(missing)} (docs/ops.md)")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _requant(attrs: Attrs) -> dict[str, Any]:
    """The output side shared by requantizing ops: m0, shift, out_zp, act_min/max, dtype."""
    return {"m0": attrs["m0"], "shift": attrs["shift"], "out_zp": int(attrs.get("out_zp", 0)),
            "act_min": attrs.get("act_min"), "act_max": attrs.get("act_max"),
            "dtype": _s(attrs.get("dtype", "int8"))}


def _scale_zp(inputs: Inputs, attrs: Attrs, op: str) -> tuple[Any, Any]:
    scale = _opt(inputs, 1)
    scale = attrs.get("scale") if scale is None else scale
    zp = _opt(inputs, 2)
    zp = attrs.get("zero_point", 0) if zp is None else zp
    if scale is None:
        raise GraphError(f"{op} needs a scale (attribute or second input)")
    return scale, zp


@register("QuantizeLinear")
def _quantize_linear(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    scale, zp = _scale_zp(inputs, attrs, "QuantizeLinear")
    dtype = attrs.get("dtype")
    if dtype is None:  # ONNX form: the zero point's type is the output type
        zdt = np.asarray(zp).dtype
        dtype = zdt.name if zdt in (np.int8, np.uint8, np.int16) else "int8"
    f = _pick(quantize, fquantize, "quantize_linear", fast)
    return [f(inputs[0], scale, zp, _s(dtype), attrs.get("axis"))]


@register("DequantizeLinear")
def _dequantize_linear(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    scale, zp = _scale_zp(inputs, attrs, "DequantizeLinear")
    f = _pick(quantize, fquantize, "dequantize_linear", fast)
    return [f(inputs[0], scale, zp, attrs.get("axis"))]


@register("Requantize")
def _requantize(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "Requantize", "m0", "shift")
    f = _pick(quantize, fquantize, "requantize_linear", fast)
    return [f(inputs[0], in_zp=int(attrs.get("in_zp", 0)), **_requant(attrs))]


@register("QFullyConnected")
def _fully_connected(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QFullyConnected", "m0", "shift")
    f = _pick(linear, flinear, "fully_connected", fast)
    return [f(inputs[0], inputs[1], _opt(inputs, 2), x_zp=int(attrs.get("x_zp", 0)),
              **_requant(attrs))]


@register("QMatMul")
def _qmatmul(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QMatMul", "m0", "shift")
    f = _pick(linear, flinear, "qmatmul", fast)
    return [f(inputs[0], inputs[1], a_zp=int(attrs.get("a_zp", 0)),
              b_zp=int(attrs.get("b_zp", 0)), **_requant(attrs))]


def _conv_common(attrs: Attrs) -> dict[str, Any]:
    return {"x_zp": int(attrs.get("x_zp", 0)), **_requant(attrs)}


@register("QConv1d")
def _conv1d(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QConv1d", "m0", "shift")
    f = _pick(conv, fconv, "conv1d", fast)
    return [f(inputs[0], inputs[1], _opt(inputs, 2), stride=attrs.get("stride", 1),
              pads=attrs.get("pads", (0, 0)), dilation=attrs.get("dilation", 1),
              group=int(attrs.get("group", 1)), **_conv_common(attrs))]


@register("QConv2d")
def _conv2d(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QConv2d", "m0", "shift")
    f = _pick(conv, fconv, "conv2d", fast)
    return [f(inputs[0], inputs[1], _opt(inputs, 2), strides=attrs.get("strides", (1, 1)),
              pads=attrs.get("pads", (0, 0, 0, 0)), dilations=attrs.get("dilations", (1, 1)),
              group=int(attrs.get("group", 1)), **_conv_common(attrs))]


@register("QDepthwiseConv2d")
def _depthwise(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QDepthwiseConv2d", "m0", "shift")
    f = _pick(conv, fconv, "depthwise_conv2d", fast)
    group = attrs.get("group")
    return [f(inputs[0], inputs[1], _opt(inputs, 2), strides=attrs.get("strides", (1, 1)),
              pads=attrs.get("pads", (0, 0, 0, 0)), dilations=attrs.get("dilations", (1, 1)),
              group=None if group is None else int(group), **_conv_common(attrs))]


@register("QAdd")
def _add(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QAdd", "a_m0", "a_shift", "b_m0", "b_shift", "out_m0", "out_shift")
    f = _pick(elementwise, felementwise, "add", fast)
    keys = ("a_m0", "a_shift", "b_m0", "b_shift", "out_m0", "out_shift")
    return [f(inputs[0], inputs[1], a_zp=int(attrs.get("a_zp", 0)),
              b_zp=int(attrs.get("b_zp", 0)), left_shift=int(attrs.get("left_shift", 20)),
              out_zp=int(attrs.get("out_zp", 0)), act_min=attrs.get("act_min"),
              act_max=attrs.get("act_max"), dtype=_s(attrs.get("dtype", "int8")),
              **{k: int(attrs[k]) for k in keys})]


@register("QMul")
def _mul(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QMul", "m0", "shift")
    f = _pick(elementwise, felementwise, "mul", fast)
    return [f(inputs[0], inputs[1], a_zp=int(attrs.get("a_zp", 0)),
              b_zp=int(attrs.get("b_zp", 0)), **_requant(attrs))]


@register("QClamp")
def _clamp(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QClamp", "min", "max")
    f = _pick(elementwise, felementwise, "clamp", fast)
    return [f(inputs[0], min=int(attrs["min"]), max=int(attrs["max"]))]


@register("QMaxPool2d")
def _maxpool(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QMaxPool2d", "kernel")
    f = _pick(pooling, fpooling, "max_pool2d", fast)
    return [f(inputs[0], kernel=attrs["kernel"], strides=attrs.get("strides", (1, 1)),
              pads=attrs.get("pads", (0, 0, 0, 0)), dilations=attrs.get("dilations", (1, 1)))]


@register("QAvgPool2d")
def _avgpool(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QAvgPool2d", "kernel")
    f = _pick(pooling, fpooling, "avg_pool2d", fast)
    return [f(inputs[0], kernel=attrs["kernel"], strides=attrs.get("strides", (1, 1)),
              pads=attrs.get("pads", (0, 0, 0, 0)),
              count_include_pad=int(attrs.get("count_include_pad", 0)),
              x_zp=int(attrs.get("x_zp", 0)))]


@register("QGlobalAvgPool")
def _gap(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "QGlobalAvgPool", "m0", "shift")
    f = _pick(pooling, fpooling, "global_avg_pool", fast)
    return [f(inputs[0], x_zp=int(attrs.get("x_zp", 0)), **_requant(attrs))]


@register("QLut")
def _lut(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    table = _opt(inputs, 1)
    table = attrs.get("table") if table is None else table
    if table is None:
        raise GraphError("QLut needs its int8 [256] table as second input")
    f = _pick(lut, flut, "lut_apply", fast)
    return [f(inputs[0], np.asarray(table))]


@register("Shiftmax")
def _shiftmax(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "Shiftmax", "x0")
    f = _pick(transformer, ftransformer, "shiftmax", fast)
    return [f(inputs[0], axis=int(attrs.get("axis", -1)), x0=int(attrs["x0"]),
              n=int(attrs.get("n", 15)), out_bits=int(attrs.get("out_bits", 16)))]


@register("ShiftGELU")
def _shift_gelu(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    _req(attrs, "ShiftGELU", "x0", "m0", "shift")
    f = _pick(transformer, ftransformer, "shift_gelu", fast)
    return [f(inputs[0], axis=int(attrs.get("axis", -1)), x0=int(attrs["x0"]),
              n=int(attrs.get("n", 23)), sig_bits=int(attrs.get("sig_bits", 8)),
              clip_min=int(attrs.get("clip_min", -(2**31))),
              clip_max=int(attrs.get("clip_max", 2**31 - 1)),
              x_zp=int(attrs.get("x_zp", 0)), **_requant(attrs))]


def _norm(name: str, op: str) -> Callable[[Inputs, Attrs, bool], list[np.ndarray]]:
    def impl(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
        _req(attrs, op, "m0", "shift")
        f = _pick(transformer, ftransformer, name, fast)
        beta = _opt(inputs, 1)
        beta = attrs.get("beta_q") if beta is None else beta
        return [f(inputs[0], beta, axis=int(attrs.get("axis", -1)),
                  iters=int(attrs.get("iters", 10)), **_requant(attrs))]
    return impl


register("ILayerNorm")(_norm("i_layernorm", "ILayerNorm"))
register("IRMSNorm")(_norm("i_rmsnorm", "IRMSNorm"))


@register("ResizeNearest")
def _resize_nearest(inputs: Inputs, attrs: Attrs, fast: bool) -> list[np.ndarray]:
    x = inputs[0]
    sizes = attrs.get("sizes")
    if sizes is None:
        scales = attrs.get("scales")
        if scales is None:
            raise GraphError("ResizeNearest needs the attribute sizes (the output shape)")
        sizes = [int(np.floor(d * float(s))) for d, s in zip(x.shape, np.ravel(scales))]
    f = _pick(resize, fresize, "resize_nearest", fast)
    return [f(x, sizes=sizes)]
