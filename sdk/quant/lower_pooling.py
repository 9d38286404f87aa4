"""Lowerings of pooling: MaxPool, AveragePool (same grid in and out), GlobalAveragePool."""

from __future__ import annotations

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.graph import Node
from sdk.quant.lowering import (
    Lowering,
    OpLowering,
    ints_attr,
    per_tensor,
    requant_attrs,
)


def _pool_common(node: Node) -> tuple[list[int], list[int], list[int]]:
    k = ints_attr(node.attrs["kernel_shape"])
    nd = len(k)
    if int(node.attrs.get("ceil_mode", 0)):
        raise UnsupportedOpError([f"{node.op}(ceil_mode=1)"], "integer lowering")
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", b"NOTSET", "", "VALID", b"VALID"):
        raise UnsupportedOpError([f"{node.op}(auto_pad={auto})"], "integer lowering")
    return k, ints_attr(node.attrs.get("strides", [1] * nd), nd), ints_attr(node.attrs.get("pads", [0] * 2 * nd))


def lower_maxpool(L: Lowering, node: Node) -> None:
    k, s, p = _pool_common(node)
    if len(k) != 2:
        raise UnsupportedOpError([f"MaxPool{len(k)}d"], "integer lowering")
    d = ints_attr(node.attrs.get("dilations", [1, 1]), 2)
    x, _, _ = L.input(node.inputs[0])
    L.emitsame_grid(Node(node.op, [node.inputs[0]], node.outputs[:1], {}, node.name), "QMaxPool2d",
                [x], kernel=k, strides=s, pads=p, dilations=d)


def lower_avgpool(L: Lowering, node: Node) -> None:
    k, s, p = _pool_common(node)
    if len(k) != 2:
        raise UnsupportedOpError([f"AveragePool{len(k)}d"], "integer lowering")
    x, qx, _ = L.input(node.inputs[0])
    include = int(node.attrs.get("count_include_pad", 0))
    # counted padding cells hold real 0.0, i.e. the zero point (docs/ops.md, QAvgPool2d)
    L.emitsame_grid(node, "QAvgPool2d", [x], kernel=k, strides=s, pads=p,
                    count_include_pad=include, x_zp=int(qx.zero_point) if include else 0)


def lower_global_avgpool(L: Lowering, node: Node) -> None:
    x, qx, _dx = L.input(node.inputs[0])
    shape = L.shape(node.inputs[0])
    if shape is None:
        raise GraphError(f"{node.name}: GlobalAveragePool needs the input shape")
    count = int(np.prod(shape[2:]))
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    L.emit("QGlobalAvgPool", [x], fout, out, x_zp=int(qx.zero_point),
           **per_tensor(requant_attrs(float(qx.scale) / count, out, act)))


LOWERINGS: dict[str, OpLowering] = {
    "MaxPool": lower_maxpool, "AveragePool": lower_avgpool,
    "GlobalAveragePool": lower_global_avgpool,
}
