"""Lowerings of the layout ops, which keep their input's grid: Reshape, Transpose, Slice,
Concat (inputs requantized to one grid), Gather (also from a constant embedding table), Pad
(with the zero point), Resize (nearest), Dropout (identity)."""

from __future__ import annotations

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.graph import Node, qrange
from sdk.quant.fuse import const_value
from sdk.quant.lowering import (
    Lowering,
    OpLowering,
)


def lower_resize(L: Lowering, node: Node) -> None:
    x, _, _ = L.input(node.inputs[0])
    out_shape = L.shape(node.outputs[0])
    in_shape = L.shape(node.inputs[0])
    if out_shape is None or in_shape is None:
        raise GraphError(f"{node.name}: Resize needs known input and output shapes")
    L.emitsame_grid(node, "ResizeNearest", [x], sizes=list(out_shape),
                scales=[o / i for o, i in zip(out_shape, in_shape)])


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
