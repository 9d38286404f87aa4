"""Lowerings of the layout ops, which keep their input's grid: Reshape, Transpose, Slice,
Concat (inputs requantized to one grid), Gather (also from a constant embedding table), Pad
(with the zero point), Resize (nearest, or bilinear for mode linear), Dropout (identity)."""

from __future__ import annotations

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.graph import Node, qrange
from sdk.kernels.resize import nearest_indices, source_fraction
from sdk.quant.fuse import const_value
from sdk.quant.lowering import (
    Lowering,
    OpLowering,
)

_RESIZE_COORD_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")


def _sattr(node: Node, name: str, default: str) -> str:
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _onnx_nearest_index(in_size: int, out_size: int, coord: str, rounding: str) -> np.ndarray:
    """ONNX Resize(nearest) source index per output position, in exact rationals."""
    num, den = source_fraction(np.arange(out_size, dtype=np.int64), in_size, out_size, coord)
    if rounding == "floor":
        idx = num // den
    elif rounding == "ceil":
        idx = -((-num) // den)
    elif rounding == "round_prefer_ceil":
        idx = (2 * num + den) // (2 * den)
    else:  # round_prefer_floor: ceil(c − ½)
        idx = -((den - 2 * num) // (2 * den))
    return np.clip(idx, 0, in_size - 1)


def lower_resize(L: Lowering, node: Node) -> None:
    """ONNX Resize → ResizeNearest (exactly when ONNX's nearest index map is floor(i·in/out))
    or ResizeBilinear (mode linear, four coordinate modes, H and W only). Every other
    attribute value is refused by name rather than approximated."""
    x, qx, _ = L.input(node.inputs[0])
    out_shape = L.shape(node.outputs[0])
    in_shape = L.shape(node.inputs[0])
    if out_shape is None or in_shape is None:
        raise GraphError(f"{node.name}: Resize needs known input and output shapes")
    mode = _sattr(node, "mode", "nearest")
    coord = _sattr(node, "coordinate_transformation_mode", "half_pixel")
    where = f"integer lowering of {node.name}"
    refused = []
    if mode not in ("nearest", "linear"):
        refused.append(f"Resize mode={mode}")
    if coord not in _RESIZE_COORD_MODES:
        refused.append(f"Resize coordinate_transformation_mode={coord}")
    if int(node.attrs.get("exclude_outside", 0)) != 0:
        refused.append("Resize exclude_outside=1")
    if int(node.attrs.get("antialias", 0)) != 0:
        refused.append("Resize antialias=1")
    policy = _sattr(node, "keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        refused.append(f"Resize keep_aspect_ratio_policy={policy}")
    if refused:
        raise UnsupportedOpError(refused, where)
    scales_in = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if scales_in is not None:
        sc = np.ravel(np.asarray(L.const(scales_in, "Resize scales"), np.float64))
        if sc.size == len(in_shape) and any(
                abs(float(s) - o / i) > 1e-6 * max(1.0, o / i)
                for s, o, i in zip(sc, out_shape, in_shape) if i > 0):
            what = (f"Resize scales {sc.tolist()} that are not output/input sizes "
                    f"{list(out_shape)}/{list(in_shape)}")
            raise UnsupportedOpError([what], where)
    if mode == "nearest":
        rounding = _sattr(node, "nearest_mode", "round_prefer_floor")
        if rounding not in ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"):
            raise UnsupportedOpError([f"Resize nearest_mode={rounding}"], where)
        for ax, (i, o) in enumerate(zip(in_shape, out_shape)):
            if i != o and i > 0 and not np.array_equal(
                    _onnx_nearest_index(i, o, coord, rounding), nearest_indices(i, o)):
                what = (f"Resize nearest with coordinate_transformation_mode={coord}, "
                        f"nearest_mode={rounding} on axis {ax} ({i}→{o}): ResizeNearest "
                        f"computes only floor(i·in/out)")
                raise UnsupportedOpError([what], where)
        L.emitsame_grid(node, "ResizeNearest", [x], sizes=list(out_shape),
                        scales=[o / i for o, i in zip(out_shape, in_shape)])
        return
    if len(in_shape) < 2 or tuple(out_shape[:-2]) != tuple(in_shape[:-2]):
        what = (f"Resize linear over a leading axis ({list(in_shape)} → {list(out_shape)}); "
                f"only the last two axes")
        raise UnsupportedOpError([what], where)
    L.emitsame_grid(node, "ResizeBilinear", [x], sizes=list(out_shape), coord_mode=coord,
                    frac_bits=10, zero_point=int(np.ravel(qx.zero_point)[0]))


def lower_layout(L: Lowering, node: Node) -> None:
    L.emitsame_grid(node)


def lower_dropout(L: Lowering, node: Node) -> None:
    """Inference-mode Dropout is the identity (its optional mask output is not supported)."""
    if len(node.outputs) > 1 and node.outputs[1] and L.consumers.get(node.outputs[1]):
        raise UnsupportedOpError(["Dropout mask output"], "integer lowering")
    x, _, _ = L.input(node.inputs[0])
    L.emitsame_grid(Node("Identity", [node.inputs[0]], node.outputs[:1], {}, node.name),
                "Identity", [x])


def lower_gather(L: Lowering, node: Node) -> None:
    data, idx = node.inputs[:2]
    if const_value(L.fg, data) is None:
        L.emitsame_grid(node)
        return
    # embedding lookup: quantize the table per tensor, gather integer rows
    table, quant = L.quantize_activation_const(data, symmetric=False)
    if const_value(L.fg, idx) is not None:
        indices = L.layout_arg(idx)
    elif idx in L.int_name and idx not in L.actual:  # integer graph input, e.g. token ids
        indices = L.int_name[idx]
    else:
        raise UnsupportedOpError(["Gather with computed indices into a constant table"],
                                 "integer lowering", "feed the indices as an int64 graph input")
    L.emit("Gather", [table, indices], node.outputs[0], quant, **node.attrs)


def lower_concat(L: Lowering, node: Node) -> None:
    out = L.desired(node.outputs[0])
    ins = []
    for i in node.inputs:
        if i in L.int_name:
            ins.append(L.input_as(i, out))
        else:
            v = np.asarray(L.const(i, "Concat operand"), np.float64)
            qmin, qmax = qrange(out[1])
            q = np.clip(np.round(v / float(out[0].scale)) + int(out[0].zero_point), qmin, qmax)
            ins.append(L.add_int_const(i + "_q", q.astype(out[1]), out[0]))
    L.emit("Concat", ins, node.outputs[0], out, **node.attrs)


def lower_pad(L: Lowering, node: Node) -> None:
    x, qx, dx = L.input(node.inputs[0])
    mode = node.attrs.get("mode", "constant")
    if mode not in ("constant", b"constant"):
        L.emitsame_grid(node)
        return
    if len(node.inputs) > 2 and node.inputs[2]:
        v = L.const(node.inputs[2], "Pad value")
        if float(np.ravel(v)[0]) != 0.0:
            raise UnsupportedOpError(["Pad with a non-zero value"], "integer lowering")
    zp = L.add_int_const(node.outputs[0] + "_pad_zp", np.array(int(qx.zero_point), dx))
    ins = [x, L.layout_arg(node.inputs[1]), zp] + [L.layout_arg(i) for i in node.inputs[3:]]
    L.emitsame_grid(node, "Pad", ins, **node.attrs)


LOWERINGS: dict[str, OpLowering] = {
    "Resize": lower_resize, "Gather": lower_gather, "Concat": lower_concat, "Pad": lower_pad,
    "Dropout": lower_dropout,
    **{op: lower_layout for op in ("Reshape", "Flatten", "Transpose", "Slice", "Squeeze",
                                   "Unsqueeze", "Identity", "Split")},
}
