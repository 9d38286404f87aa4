"""The integer operators of docs/ops.md, each declared once: its :class:`~sdk.ops.schema.OpDef`
(inputs, attributes, traits, shape rule, cost formula, NumPy specification and Numba twin,
firmware opcode) beside the small function that maps a node's operands and prepared
attributes to the kernel. ``fast=False`` runs the specification in :mod:`sdk.kernels`,
``fast=True`` its twin in :mod:`sdk.kernels.fast` (same bits, tested)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.ops.registry import defop
from sdk.ops.schema import (
    ELEMENTWISE,
    INPLACE,
    KEEPS_GRID,
    LAYOUT_FREE,
    REQUANTIZES,
    SPATIAL,
    Attr,
    Cost,
    CostInputs,
    OpDef,
    per_element,
    requant_attrs,
)
from sdk.ops.shape_rules import (
    broadcast_rule,
    conv_rule,
    fc_rule,
    gap_rule,
    matmul_rule,
    pool_rule,
    resize_rule,
    same_rule,
)

Inputs = list["np.ndarray | None"]
_NOT_WRITTEN = "the exporter has no mapping for it yet"
_NO_PEER_OP = {exporter: "no operator there computes the I-ViT integer arithmetic bit for bit"
               for exporter in ("onnxruntime", "tflite")}
Prepared = dict[str, Any]
Kernel = Callable[..., Any]


def _opt(inputs: Inputs, i: int) -> np.ndarray | None:
    """Optional input ``i`` (absent or '' in the node)."""
    return inputs[i] if len(inputs) > i and inputs[i] is not None else None


def _out(p: Prepared) -> dict[str, Any]:
    """The requantizing output side as kernel keyword arguments."""
    return {k: p[k] for k in ("m0", "shift", "out_zp", "act_min", "act_max", "dtype")}


# -- cost formulas ---------------------------------------------------------------------------
def _conv_cost(c: CostInputs) -> Cost:
    """``|out|·(C/g)·k`` MACs (weights ``[O, C/g, k...]``), one bias add per output."""
    n = c.out_elems
    per_output = int(np.prod(c.shape(1)[1:], dtype=np.int64))
    return Cost(macs=n * per_output, adds=n if c.has(2) else 0, requants=n)


def _fc_cost(c: CostInputs) -> Cost:
    """``rows·N·K`` MACs for x ``[..., K]``, w ``[N, K]``; one bias add per output."""
    rows = int(np.prod(c.shape(0)[:-1], dtype=np.int64))
    n, k = c.shape(1)[:2]
    return Cost(macs=rows * n * k, adds=rows * n if c.has(2) else 0, requants=rows * n)


def _matmul_cost(c: CostInputs) -> Cost:
    """``|out|·K`` MACs."""
    n = c.out_elems
    return Cost(macs=n * c.shape(0)[-1], requants=n)


def _add_cost(c: CostInputs) -> Cost:
    """One add per output; three requantizations (two input rescales and the output)."""
    n = c.out_elems
    return Cost(adds=n, requants=3 * n)


def _maxpool_cost(c: CostInputs) -> Cost:
    kh, kw = c.attrs["kernel"]
    return Cost(other=c.out_elems * kh * kw)   # compares


def _avgpool_cost(c: CostInputs) -> Cost:
    kh, kw = c.attrs["kernel"]
    n = c.out_elems
    return Cost(adds=n * kh * kw, other=n)     # sums and the division by the count


def _gap_cost(c: CostInputs) -> Cost:
    return Cost(adds=c.size(0), requants=c.out_elems)


# -- float boundary ------------------------------------------------------------------------
_BOUNDARY_ATTRS = (Attr("scale", "array", None), Attr("zero_point", "array", None),
                   Attr("dtype", "str", None), Attr("axis", "optional_int", None))


def _scale_zp(inputs: Inputs, p: Prepared, op: str) -> tuple[Any, Any]:
    scale = _opt(inputs, 1)
    scale = p["scale"] if scale is None else scale
    zp = _opt(inputs, 2)
    zp = (0 if p["zero_point"] is None else p["zero_point"]) if zp is None else zp
    if scale is None:
        raise GraphError(f"{op} needs a scale (attribute or second input)")
    return scale, zp


@defop(OpDef("QuantizeLinear", "boundary", ("x", "scale?", "zero_point?"), attrs=_BOUNDARY_ATTRS,
             traits=frozenset({ELEMENTWISE, LAYOUT_FREE}),
             spec="sdk.kernels.quantize:quantize_linear",
             twin="sdk.kernels.fast.quantize:quantize_linear", cost=per_element(other=2),
             firmware_why_not="float boundary: the host quantizes inputs before sending them",
             formula="clamp(round_half_even(x/scale)+zp)"))
def _quantize_linear(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    scale, zp = _scale_zp(inputs, p, "QuantizeLinear")
    dtype = p["dtype"]
    if dtype is None:  # ONNX form: the zero point's type is the output type
        zdt = np.asarray(zp).dtype
        dtype = zdt.name if zdt in (np.int8, np.uint8, np.int16) else "int8"
    return [f(inputs[0], scale, zp, dtype, p["axis"])]


@defop(OpDef("DequantizeLinear", "boundary", ("q", "scale?", "zero_point?"),
             attrs=_BOUNDARY_ATTRS, traits=frozenset({ELEMENTWISE, LAYOUT_FREE}),
             spec="sdk.kernels.quantize:dequantize_linear",
             twin="sdk.kernels.fast.quantize:dequantize_linear", cost=per_element(other=2),
             firmware_why_not="float boundary: the host dequantizes the outputs it reads",
             formula="(q-zp)*scale"))
def _dequantize_linear(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    scale, zp = _scale_zp(inputs, p, "DequantizeLinear")
    return [f(inputs[0], scale, zp, p["axis"])]


# -- linear ----------------------------------------------------------------------------------
@defop(OpDef("Requantize", "integer", ("x",),
             attrs=(Attr("in_zp", "int", 0),) + requant_attrs(),
             traits=frozenset({ELEMENTWISE, INPLACE, REQUANTIZES, LAYOUT_FREE}),
             spec="sdk.kernels.quantize:requantize_linear",
             twin="sdk.kernels.fast.quantize:requantize_linear",
             cost=per_element(requants=1), shape=same_rule, firmware="REQUANTIZE",
             formula="requantize(x - in_zp, m0, shift, out_zp)"))
def _requantize(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], in_zp=p["in_zp"], **_out(p))]


@defop(OpDef("QFullyConnected", "integer", ("x", "w", "bias?"),
             attrs=(Attr("x_zp", "int", 0),) + requant_attrs(),
             traits=frozenset({REQUANTIZES}), spec="sdk.kernels.linear:fully_connected",
             twin="sdk.kernels.fast.linear:fully_connected", cost=_fc_cost, shape=fc_rule,
             firmware="FULLY_CONNECTED",
             formula="acc = Σ_k (x-x_zp)·w + bias, requantize per N"))
def _fully_connected(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], _opt(inputs, 2), x_zp=p["x_zp"], **_out(p))]


@defop(OpDef("QMatMul", "integer", ("a", "b"),
             attrs=(Attr("a_zp", "int", 0), Attr("b_zp", "int", 0)) + requant_attrs(),
             traits=frozenset({REQUANTIZES}), spec="sdk.kernels.linear:qmatmul",
             twin="sdk.kernels.fast.linear:qmatmul", cost=_matmul_cost, shape=matmul_rule,
             firmware="MATMUL", formula="acc = Σ_k (a-a_zp)(b-b_zp), requantize"))
def _qmatmul(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], a_zp=p["a_zp"], b_zp=p["b_zp"], **_out(p))]


# -- convolution -----------------------------------------------------------------------------
_CONV2D_ATTRS = (Attr("strides", "int_or_ints", (1, 1)), Attr("pads", "int_or_ints", (0, 0, 0, 0)),
                 Attr("dilations", "int_or_ints", (1, 1)), Attr("group", "int", 1),
                 Attr("x_zp", "int", 0)) + requant_attrs()


@defop(OpDef("QConv1d", "integer", ("x", "w", "bias?"),
             attrs=(Attr("stride", "int_or_ints", 1), Attr("pads", "int_or_ints", (0, 0)),
                    Attr("dilation", "int_or_ints", 1), Attr("group", "int", 1),
                    Attr("x_zp", "int", 0)) + requant_attrs(),
             traits=frozenset({REQUANTIZES}), spec="sdk.kernels.conv:conv1d",
             twin="sdk.kernels.fast.conv:conv1d", cost=_conv_cost, shape=conv_rule,
             firmware="CONV2D", exporters_skip={"onnxruntime": _NOT_WRITTEN, "tflite": "TFLite has no 1-D convolution builtin"},
             formula="1-D conv with padding value x_zp, requantize per O"))
def _conv1d(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], _opt(inputs, 2), stride=p["stride"], pads=p["pads"],
              dilation=p["dilation"], group=p["group"], x_zp=p["x_zp"], **_out(p))]


@defop(OpDef("QConv2d", "integer", ("x", "w", "bias?"), attrs=_CONV2D_ATTRS,
             traits=frozenset({REQUANTIZES, SPATIAL}), spec="sdk.kernels.conv:conv2d",
             twin="sdk.kernels.fast.conv:conv2d", cost=_conv_cost, shape=conv_rule,
             firmware="CONV2D", formula="conv with padding value x_zp, requantize per O"))
def _conv2d(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], _opt(inputs, 2), strides=p["strides"], pads=p["pads"],
              dilations=p["dilations"], group=p["group"], x_zp=p["x_zp"], **_out(p))]


@defop(OpDef("QDepthwiseConv2d", "integer", ("x", "w", "bias?"),
             attrs=tuple(a if a.name != "group" else Attr("group", "optional_int", None)
                         for a in _CONV2D_ATTRS),
             traits=frozenset({REQUANTIZES, SPATIAL}),
             spec="sdk.kernels.conv:depthwise_conv2d",
             twin="sdk.kernels.fast.conv:depthwise_conv2d", cost=_conv_cost, shape=conv_rule,
             firmware="CONV2D", formula="depthwise conv (group = C), requantize per channel"))
def _depthwise(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], _opt(inputs, 2), strides=p["strides"], pads=p["pads"],
              dilations=p["dilations"], group=p["group"], x_zp=p["x_zp"], **_out(p))]


# -- element-wise ----------------------------------------------------------------------------
@defop(OpDef("QAdd", "integer", ("a", "b"),
             attrs=(Attr("a_zp", "int", 0), Attr("b_zp", "int", 0),
                    Attr("left_shift", "int", 20), Attr("a_m0"), Attr("a_shift"),
                    Attr("b_m0"), Attr("b_shift"), Attr("out_m0"), Attr("out_shift"),
                    Attr("out_zp", "int", 0), Attr("act_min", "optional_int", None),
                    Attr("act_max", "optional_int", None), Attr("dtype", "str", "int8")),
             traits=frozenset({ELEMENTWISE, INPLACE, LAYOUT_FREE}),
             spec="sdk.kernels.elementwise:add", twin="sdk.kernels.fast.elementwise:add",
             cost=_add_cost, shape=broadcast_rule, firmware="ADD",
             formula="TFLite integer Add: both inputs rescaled to a common scale, added, "
                     "requantized"))
def _add(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], **p)]


@defop(OpDef("QMul", "integer", ("a", "b"),
             attrs=(Attr("a_zp", "int", 0), Attr("b_zp", "int", 0)) + requant_attrs(False),
             traits=frozenset({ELEMENTWISE, INPLACE, REQUANTIZES, LAYOUT_FREE}),
             spec="sdk.kernels.elementwise:mul", twin="sdk.kernels.fast.elementwise:mul",
             cost=per_element(muls=1, requants=1), shape=broadcast_rule, firmware="MUL",
             formula="requantize((a-a_zp)(b-b_zp))"))
def _mul(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], inputs[1], a_zp=p["a_zp"], b_zp=p["b_zp"], **_out(p))]


@defop(OpDef("QClamp", "integer", ("x",), attrs=(Attr("min"), Attr("max")),
             traits=frozenset({ELEMENTWISE, INPLACE, KEEPS_GRID, LAYOUT_FREE}),
             spec="sdk.kernels.elementwise:clamp", twin="sdk.kernels.fast.elementwise:clamp",
             cost=per_element(other=2), shape=same_rule, firmware="CLAMP",
             formula="clamp(x, min, max) on the input's grid"))
def _clamp(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], min=p["min"], max=p["max"])]


@defop(OpDef("QLut", "integer", ("x", "table?"), attrs=(Attr("table", "array", None),),
             traits=frozenset({ELEMENTWISE, INPLACE, LAYOUT_FREE}),
             spec="sdk.kernels.lut:lut_apply", twin="sdk.kernels.fast.lut:lut_apply",
             cost=per_element(other=1), shape=same_rule, firmware="LUT",
             exporters_skip={"tflite": "TFLite has no general int8 table lookup builtin"},
             formula="table[x+128]"))
def _lut(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    table = _opt(inputs, 1)
    table = p["table"] if table is None else table
    if table is None:
        raise GraphError("QLut needs its int8 [256] table as second input")
    return [f(inputs[0], np.asarray(table))]


# -- pooling ---------------------------------------------------------------------------------
@defop(OpDef("QMaxPool2d", "integer", ("x",),
             attrs=(Attr("kernel", "ints"), Attr("strides", "int_or_ints", (1, 1)),
                    Attr("pads", "int_or_ints", (0, 0, 0, 0)),
                    Attr("dilations", "int_or_ints", (1, 1))),
             traits=frozenset({KEEPS_GRID, SPATIAL}), spec="sdk.kernels.pooling:max_pool2d",
             twin="sdk.kernels.fast.pooling:max_pool2d", cost=_maxpool_cost, shape=pool_rule,
             firmware="MAXPOOL2D", formula="max over the window"))
def _maxpool(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], **p)]


@defop(OpDef("QAvgPool2d", "integer", ("x",),
             attrs=(Attr("kernel", "ints"), Attr("strides", "int_or_ints", (1, 1)),
                    Attr("pads", "int_or_ints", (0, 0, 0, 0)),
                    Attr("count_include_pad", "int", 0), Attr("x_zp", "int", 0)),
             traits=frozenset({KEEPS_GRID, SPATIAL}), spec="sdk.kernels.pooling:avg_pool2d",
             twin="sdk.kernels.fast.pooling:avg_pool2d", cost=_avgpool_cost, shape=pool_rule,
             firmware="AVGPOOL2D", formula="round_half_away(Σx / count)"))
def _avgpool(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], **p)]


@defop(OpDef("QGlobalAvgPool", "integer", ("x",),
             attrs=(Attr("x_zp", "int", 0),) + requant_attrs(False),
             traits=frozenset({REQUANTIZES, SPATIAL}),
             spec="sdk.kernels.pooling:global_avg_pool",
             twin="sdk.kernels.fast.pooling:global_avg_pool", cost=_gap_cost, shape=gap_rule,
             firmware="GLOBAL_AVGPOOL", exporters_skip={"tflite": _NOT_WRITTEN},
             formula="requantize(Σ(x-x_zp)), M = s_in/(s_out·count)"))
def _gap(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], x_zp=p["x_zp"], **_out(p))]


# -- integer-only transformer ops (I-ViT) ----------------------------------------------------
def _shiftmax_shape(shapes: list, dtypes: list, values: list, attrs: dict) -> list:
    from sdk.kernels.transformer import shiftmax_dtype

    return [(shapes[0], shiftmax_dtype(int(attrs.get("out_bits", 16))).name)]


@defop(OpDef("Shiftmax", "integer", ("x",),
             attrs=(Attr("axis", "int", -1), Attr("x0"), Attr("n", "int", 15),
                    Attr("out_bits", "int", 16)),
             spec="sdk.kernels.transformer:shiftmax", twin="sdk.kernels.fast.transformer:shiftmax",
             cost=per_element(other=8), shape=_shiftmax_shape, firmware="SHIFTMAX",
             exporters_skip=_NO_PEER_OP,
             formula="I-ViT integer softmax along axis, scale 2^-(out_bits-1)"))
def _shiftmax(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], **p)]


@defop(OpDef("ShiftGELU", "integer", ("x",),
             attrs=(Attr("axis", "int", -1), Attr("x0"), Attr("n", "int", 23),
                    Attr("sig_bits", "int", 8), Attr("clip_min", "int", -(2**31)),
                    Attr("clip_max", "int", 2**31 - 1), Attr("x_zp", "int", 0))
             + requant_attrs(False),
             traits=frozenset({REQUANTIZES, INPLACE}), spec="sdk.kernels.transformer:shift_gelu",
             twin="sdk.kernels.fast.transformer:shift_gelu",
             cost=per_element(other=8, requants=1), shape=same_rule, firmware="SHIFT_GELU",
             exporters_skip=_NO_PEER_OP,
             formula="requantize(xc·σ_shift(1.702·clip(xc))), xc = x − x_zp"))
def _shift_gelu(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], **p)]


_NORM_ATTRS = (Attr("axis", "int", -1), Attr("iters", "int", 10),
               Attr("beta_q", "array", None)) + requant_attrs()


def _norm(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    beta = _opt(inputs, 1)
    beta = p["beta_q"] if beta is None else beta
    return [f(inputs[0], beta, axis=p["axis"], iters=p["iters"], **_out(p))]


defop(OpDef("ILayerNorm", "integer", ("x", "beta_q?"), attrs=_NORM_ATTRS,
            traits=frozenset({REQUANTIZES}), spec="sdk.kernels.transformer:i_layernorm",
            twin="sdk.kernels.fast.transformer:i_layernorm",
            cost=per_element(other=4, requants=1), shape=same_rule, firmware="INT_NORM",
            exporters_skip=_NO_PEER_OP,
             formula="I-ViT integer LayerNorm (Newton integer square root)"))(_norm)
defop(OpDef("IRMSNorm", "integer", ("x", "beta_q?"), attrs=_NORM_ATTRS,
            traits=frozenset({REQUANTIZES}), spec="sdk.kernels.transformer:i_rmsnorm",
            twin="sdk.kernels.fast.transformer:i_rmsnorm",
            cost=per_element(other=3, requants=1), shape=same_rule, firmware="INT_NORM",
            exporters_skip=_NO_PEER_OP,
             formula="integer RMSNorm (ILayerNorm without the mean)"))(_norm)


# -- resize ----------------------------------------------------------------------------------
@defop(OpDef("ResizeNearest", "layout", ("x",),
             attrs=(Attr("sizes", "ints", None), Attr("scales", "array", None)),
             traits=frozenset({KEEPS_GRID, SPATIAL}), spec="sdk.kernels.resize:resize_nearest",
             twin="sdk.kernels.fast.resize:resize_nearest", shape=resize_rule,
             firmware="RESIZE_NEAREST",
             formula="out[i] = x[floor(i·in/out)] per axis"))
def _resize_nearest(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    x = inputs[0]
    sizes = p["sizes"]
    if sizes is None:
        scales = p["scales"]
        if scales is None:
            raise GraphError("ResizeNearest needs the attribute sizes (the output shape)")
        sizes = [int(np.floor(d * float(s))) for d, s in zip(x.shape, np.ravel(scales))]
    return [f(x, sizes=sizes)]


@defop(OpDef("ResizeBilinear", "integer", ("x",),
             attrs=(Attr("sizes", "ints", doc="full output shape (only the last two axes change)"),
                    Attr("coord_mode", "str", "half_pixel",
                         doc="half_pixel | asymmetric | align_corners | pytorch_half_pixel"),
                    Attr("frac_bits", "int", 10, doc="Q format of the interpolation weights"),
                    Attr("zero_point", "int", 0, doc="the (shared) input/output zero point")),
             traits=frozenset({KEEPS_GRID, SPATIAL}), spec="sdk.kernels.resize:resize_bilinear",
             twin="sdk.kernels.fast.resize:resize_bilinear", shape=resize_rule,
             cost=per_element(adds=3, muls=6, other=1),
             firmware_why_not="not in the firmware yet: bilinear upsampling runs on the host",
             exporters_skip={
                 "onnxruntime": "ORT's integer Resize(linear) rounds its float weights "
                                "differently (not bit-exact)",
                 "tflite": "TFLite RESIZE_BILINEAR rounds differently (not bit-exact); "
                           + _NOT_WRITTEN},
             formula="zp + round_half_away(Σ wy·wx·(x−zp) / 2^(2B)), Q-B weights exact"))
def _resize_bilinear(inputs: Inputs, p: Prepared, f: Kernel) -> list[np.ndarray]:
    return [f(inputs[0], sizes=p["sizes"], coord_mode=p["coord_mode"],
              frac_bits=p["frac_bits"], zero_point=p["zero_point"])]
