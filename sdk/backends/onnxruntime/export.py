"""Export an integer IR (sub-)graph as an ONNX QDQ model.

Every integer op becomes ``DequantizeLinear`` on its inputs, the float ONNX op, and
``QuantizeLinear`` on its output (ONNX Runtime fuses these patterns into its QLinear
kernels); the integer tensors between ops keep their IR names, dtypes and scales. Layout ops
(Reshape, Transpose, Concat, MaxPool, Clip) run on the integers directly and are exact; a LUT
is a Gather into its table. SDK-only ops (Shiftmax, ShiftGELU, I-LayerNorm, integer RMSNorm)
have no ONNX twin and are refused, so the partitioner leaves them to the reference backend.

Numerics: ONNX Runtime requantizes with a float multiply and rounds half to even, so each
requantizing op may differ from the SDK's double-rounding rule by 1 LSB.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sdk.graph.ir import Graph, Node, qrange
from sdk.ops.schema import opdef

OPSET = 21
_ONNX_TYPE = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8,
              "int16": TensorProto.INT16, "int32": TensorProto.INT32, "int64": TensorProto.INT64,
              "bool": TensorProto.BOOL}


class _Refuse(Exception):
    pass


class _Exporter:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.k = 0

    def fresh(self, base: str) -> str:
        self.k += 1
        return f"{base}__{self.k}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits[name] = numpy_helper.from_array(np.asarray(value), name)
        return name

    def add(self, op: str, ins: list[str], outs: list[str] | None = None, **attrs: Any) -> str:
        outs = outs or [self.fresh(op.lower())]
        self.nodes.append(helper.make_node(op, ins, outs, **attrs))
        return outs[0]

    def tensor_input(self, name: str) -> str:
        """The IR tensor as an ONNX value (constants become initializers)."""
        t = self.g.tensor(name)
        if t.is_constant and name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(t.data), name)
        return name

    def qparams(self, name: str) -> tuple[np.ndarray, np.ndarray, int | None]:
        t = self.g.tensor(name)
        if t.quant is None:
            raise _Refuse(f"tensor {name!r} has no quantization parameters")
        zp = t.quant.zero_point.astype(t.dtype if t.dtype != "int32" else "int32")
        return t.quant.scale, zp, t.quant.axis

    def dq(self, name: str, scale: np.ndarray | None = None, axis: int | None = None) -> str:
        s, z, ax = self.qparams(name) if scale is None else (
            np.asarray(scale, np.float32), np.zeros(np.shape(scale), self.g.tensor(name).dtype), axis)
        attrs = {"axis": int(ax)} if np.ndim(s) == 1 and ax is not None else {}
        return self.add("DequantizeLinear", [self.tensor_input(name), self.const("s", s),
                                             self.const("z", z)], **attrs)

    def q(self, xf: str, out: str, node: Node, value: str | None = None,
          in_scale: Any = None) -> str:
        """Quantize ``xf`` with the quantization of IR tensor ``out`` (and the node's
        activation clamp) into the ONNX value ``value`` (default: ``out``).

        ``in_scale`` is the scale of the float value ``xf`` (the product of the input scales).
        The node's own multiplier (``m0``, ``shift``) is what the integer graph computes; when
        the lowering folded a constant into it (a score divided by √d, a scalar Mul), it is not
        ``in_scale / s_out``: the quantize then uses ``in_scale / M`` so ONNX Runtime computes
        the same product, and a node whose channels disagree differently is refused."""
        value = value or out
        s, z, _ = self.qparams(out)
        if in_scale is not None and "m0" in node.attrs and "shift" in node.attrs:
            s = _honour_multiplier(node, np.asarray(in_scale, np.float64), s)
        lo, hi = qrange(self.g.tensor(out).dtype)
        a_lo, a_hi = int(node.attrs.get("act_min", lo)), int(node.attrs.get("act_max", hi))
        if (a_lo, a_hi) == (lo, hi):
            return self.add("QuantizeLinear", [xf, self.const("s", s), self.const("z", z)],
                            [value])
        qv = self.add("QuantizeLinear", [xf, self.const("s", s), self.const("z", z)])
        dt = self.g.tensor(out).dtype
        return self.add("Clip", [qv, self.const("lo", np.array(a_lo, dt)),
                                 self.const("hi", np.array(a_hi, dt))], [value])


def _honour_multiplier(node: Node, in_scale: np.ndarray, s_out: np.ndarray) -> np.ndarray:
    """The output scale that makes ``round(acc · in_scale / scale)`` the node's multiplier."""
    m0 = np.asarray(node.attrs["m0"], np.float64).ravel()
    shift = np.asarray(node.attrs["shift"], np.float64).ravel()
    m_node = m0 * np.exp2(shift - 31)
    m_scales = np.ravel(in_scale) / float(np.ravel(s_out)[0]) if np.size(s_out) == 1 else None
    if m_scales is None or np.any(m_node == 0) or (m_node.size == 1 < m_scales.size):
        return s_out   # nothing to compare (a per-channel operand under one multiplier)
    ratio = np.broadcast_to(m_scales, np.broadcast_shapes(m_scales.shape, m_node.shape)) / m_node
    # m0 holds 31 bits: a multiplier derived from the same scales agrees to ~1e-9
    if np.allclose(ratio, 1.0, rtol=1e-6, atol=0):
        return s_out
    if not np.allclose(ratio, ratio[0], rtol=1e-6, atol=0):
        raise _Refuse("its multiplier folds a per-channel factor the tensor scales do not carry")
    return np.asarray(np.float64(np.ravel(s_out)[0]) * ratio[0], np.float32).reshape(
        np.shape(s_out))


def _bias(e: _Exporter, node: Node, w_scale: np.ndarray) -> str | None:
    if len(node.inputs) < 3 or not node.inputs[2]:
        return None
    s_x = e.qparams(node.inputs[0])[0]
    s = (np.float32(s_x) * np.asarray(w_scale, np.float32)).astype(np.float32).ravel()
    b = np.asarray(e.g.tensor(node.inputs[2]).data, np.int32)
    name = e.const(node.inputs[2], b)
    zero = np.zeros(s.shape, np.int32)
    return e.add("DequantizeLinear", [name, e.const("s", s), e.const("z", zero)],
                 **({"axis": 0} if s.size > 1 else {}))


def _fc(e: _Exporter, node: Node) -> None:
    x, w = node.inputs[0], node.inputs[1]
    wt = e.g.tensor(w)
    if not wt.is_constant:
        raise _Refuse("its weights are not a constant")
    s_w = wt.quant.scale
    w_kn = e.const(w, np.ascontiguousarray(wt.data.T))  # [K, N]: per-column scales on axis 1
    zero = np.zeros(s_w.shape, np.int8)
    wf = e.add("DequantizeLinear", [w_kn, e.const("s", s_w), e.const("z", zero)],
               **({"axis": 1} if s_w.ndim == 1 else {}))
    x_shape = e.g.tensor(x).shape
    flatten = (x_shape is not None and len(x_shape) > 2
               and all(d is not None and d >= 0 for d in x_shape))
    if not flatten:
        y = e.add("MatMul", [e.dq(x), wf])
        b = _bias(e, node, s_w)
        if b is not None:
            y = e.add("Add", [y, b])
        e.q(y, node.outputs[0], node, in_scale=_product(e, x, s_w))
        return
    # ONNX Runtime 1.32's QDQ rewrite of MatMul+Add on a 3-D input (and its propagation of
    # Q/DQ around a float Reshape) builds a QuantizeLinear it then rejects (int8 output,
    # uint8 zero point). Flattening the integer tensor before the DequantizeLinear and
    # restoring the shape on the integer output keeps every rewrite on 2-D tensors.
    s_x, z_x, _ = e.qparams(x)
    x2 = e.add("Reshape", [e.tensor_input(x),
                           e.const("shape", np.array([-1, x_shape[-1]], np.int64))])
    y = e.add("MatMul", [e.add("DequantizeLinear", [x2, e.const("s", s_x), e.const("z", z_x)]),
                         wf])
    b = _bias(e, node, s_w)
    if b is not None:
        y = e.add("Add", [y, b])
    out = node.outputs[0]
    q2 = e.q(y, out, node, value=e.fresh("fc_2d_q"), in_scale=_product(e, x, s_w))
    out_shape = [int(d) for d in x_shape[:-1]] + [int(wt.data.shape[0])]
    e.add("Reshape", [q2, e.const("shape", np.array(out_shape, np.int64))], [out])


def _conv(e: _Exporter, node: Node) -> None:
    a = node.attrs
    x, w = node.inputs[0], node.inputs[1]
    wt = e.g.tensor(w)
    s_w = wt.quant.scale
    zero = np.zeros(s_w.shape, np.int8)
    wf = e.add("DequantizeLinear", [e.tensor_input(w), e.const("s", s_w), e.const("z", zero)],
               **({"axis": 0} if s_w.ndim == 1 else {}))
    ins = [e.dq(x), wf]
    b = _bias(e, node, s_w)
    if b is not None:
        ins.append(b)
    group = int(a.get("group", 1))
    if node.op == "QDepthwiseConv2d":
        group = e.g.tensor(x).shape[1]
    y = e.add("Conv", ins, strides=list(a.get("strides", [1, 1])), pads=list(a.get("pads", [0] * 4)),
              dilations=list(a.get("dilations", [1, 1])), group=group,
              kernel_shape=list(wt.shape[2:]))
    e.q(y, node.outputs[0], node, in_scale=_product(e, x, s_w))


def _binary(onnx_op: str) -> Callable[[_Exporter, Node], None]:
    def export(e: _Exporter, node: Node) -> None:
        y = e.add(onnx_op, [e.dq(node.inputs[0]), e.dq(node.inputs[1])])
        in_scale = (_product(e, node.inputs[0], e.qparams(node.inputs[1])[0])
                    if onnx_op in ("MatMul", "Mul") else None)
        e.q(y, node.outputs[0], node, in_scale=in_scale)
    return export


def _requantize(e: _Exporter, node: Node) -> None:
    s_in = np.ravel(e.qparams(node.inputs[0])[0])
    # a per-axis input is dequantized per channel: the scales alone say what it computes
    e.q(e.dq(node.inputs[0]), node.outputs[0], node,
        in_scale=np.float64(s_in[0]) if s_in.size == 1 else None)


def _product(e: _Exporter, x: str, other_scale: Any) -> np.ndarray:
    """The scale of a float product of ``x`` (dequantized) and an operand of ``other_scale``,
    as ONNX Runtime forms it (float32 scales)."""
    s_x = np.float64(np.float32(np.ravel(e.qparams(x)[0])[0]))
    return s_x * np.asarray(other_scale, np.float32).astype(np.float64).ravel()


def _clamp(e: _Exporter, node: Node) -> None:
    dt = e.g.tensor(node.inputs[0]).dtype
    e.add("Clip", [e.tensor_input(node.inputs[0]), e.const("lo", np.array(node.attrs["min"], dt)),
                   e.const("hi", np.array(node.attrs["max"], dt))], [node.outputs[0]])


def _maxpool(e: _Exporter, node: Node) -> None:
    a = node.attrs
    e.add("MaxPool", [e.tensor_input(node.inputs[0])], [node.outputs[0]],
          kernel_shape=list(a["kernel"]), strides=list(a.get("strides", [1, 1])),
          pads=list(a.get("pads", [0] * 4)), dilations=list(a.get("dilations", [1, 1])))


def _avgpool(e: _Exporter, node: Node) -> None:
    a = node.attrs
    y = e.add("AveragePool", [e.dq(node.inputs[0])], kernel_shape=list(a["kernel"]),
              strides=list(a.get("strides", [1, 1])), pads=list(a.get("pads", [0] * 4)),
              count_include_pad=int(a.get("count_include_pad", 0)))
    e.q(y, node.outputs[0], node)


def _gap(e: _Exporter, node: Node) -> None:
    e.q(e.add("GlobalAveragePool", [e.dq(node.inputs[0])]), node.outputs[0], node)


def _lut(e: _Exporter, node: Node) -> None:
    idx = e.add("Cast", [e.tensor_input(node.inputs[0])], to=TensorProto.INT32)
    idx = e.add("Add", [idx, e.const("offset", np.array(128, np.int32))])
    e.add("Gather", [e.tensor_input(node.inputs[1]), idx], [node.outputs[0]], axis=0)


def _reshape(e: _Exporter, node: Node) -> None:
    shape = np.array(e.g.tensor(node.outputs[0]).shape, np.int64)
    e.add("Reshape", [e.tensor_input(node.inputs[0]), e.const("shape", shape)], [node.outputs[0]])


def _transpose(e: _Exporter, node: Node) -> None:
    e.add("Transpose", [e.tensor_input(node.inputs[0])], [node.outputs[0]],
          perm=list(node.attrs["perm"]))


def _concat(e: _Exporter, node: Node) -> None:
    e.add("Concat", [e.tensor_input(i) for i in node.inputs], [node.outputs[0]],
          axis=int(node.attrs.get("axis", 0)))


def _slice(e: _Exporter, node: Node) -> None:  # ONNX Slice: starts/ends/axes/steps inputs
    e.add("Slice", [e.tensor_input(i) if i else "" for i in node.inputs], [node.outputs[0]])


def _pad(e: _Exporter, node: Node) -> None:
    g = e.g
    src = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else None
    pads = np.asarray(g.tensor(src).data if src else node.attrs["pads"], np.int64).ravel()
    dt = g.tensor(node.inputs[0]).dtype
    if len(node.inputs) > 2 and node.inputs[2]:
        value = np.asarray(g.tensor(node.inputs[2]).data).ravel()[0]
    else:
        value = node.attrs.get("value", 0) or 0
    e.add("Pad", [e.tensor_input(node.inputs[0]), e.const("pads", pads),
                  e.const("value", np.array(value, dt))], [node.outputs[0]], mode="constant")


def _resize(e: _Exporter, node: Node) -> None:
    sizes = np.array(e.g.tensor(node.outputs[0]).shape, np.int64)
    e.add("Resize", [e.tensor_input(node.inputs[0]), "", "", e.const("sizes", sizes)],
          [node.outputs[0]], mode="nearest", coordinate_transformation_mode="asymmetric",
          nearest_mode="floor")


def _quantize(e: _Exporter, node: Node) -> None:
    a = node.attrs
    dt = a.get("dtype", e.g.tensor(node.outputs[0]).dtype)
    e.add("QuantizeLinear", [e.tensor_input(node.inputs[0]),
                             e.const("s", np.asarray(a["scale"], np.float32)),
                             e.const("z", np.asarray(a["zero_point"], dt))], [node.outputs[0]])


def _dequantize(e: _Exporter, node: Node) -> None:
    a = node.attrs
    dt = e.g.tensor(node.inputs[0]).dtype
    s = np.asarray(a["scale"], np.float32)
    attrs = {"axis": int(a["axis"])} if s.ndim == 1 and a.get("axis") is not None else {}
    e.add("DequantizeLinear", [e.tensor_input(node.inputs[0]), e.const("s", s),
                               e.const("z", np.asarray(a["zero_point"], dt))],
          [node.outputs[0]], **attrs)


EXPORTERS: dict[str, Callable[[_Exporter, Node], None]] = {
    "QFullyConnected": _fc, "QConv2d": _conv, "QDepthwiseConv2d": _conv,
    "QAdd": _binary("Add"), "QMul": _binary("Mul"), "QMatMul": _binary("MatMul"),
    "Requantize": _requantize, "QClamp": _clamp, "QMaxPool2d": _maxpool,
    "QAvgPool2d": _avgpool, "QGlobalAvgPool": _gap, "QLut": _lut,
    "Reshape": _reshape, "Flatten": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Identity": _reshape, "Transpose": _transpose, "Concat": _concat,
    "QuantizeLinear": _quantize, "DequantizeLinear": _dequantize,
    "Pad": _pad, "ResizeNearest": _resize, "Slice": _slice,
}


def node_supported(graph: Graph, node: Node) -> tuple[bool, str]:
    """Whether the QDQ exporter can express ``node``; the reason when not."""
    if node.op not in EXPORTERS:
        d = opdef(node.op)
        return False, (d.exporters_skip.get("onnxruntime") if d is not None else None) or \
            "ONNX has no operator for it"
    names = [n for n in node.inputs + node.outputs if n]
    for n in names:
        t = graph.tensor(n)
        if t.dtype in ("int8", "uint8", "int16") and t.quant is None and not t.is_constant:
            return False, f"tensor {n!r} has no quantization parameters"
        if t.shape is None:
            return False, f"tensor {n!r} has no known shape"
    if node.op == "Pad" and (str(node.attrs.get("mode", "constant")).strip("b'") != "constant"
                             or (len(node.inputs) > 3 and node.inputs[3])):
        return False, "only constant padding over all axes is exported"
    if node.op == "Pad" and len(node.inputs) > 1 and node.inputs[1] and not graph.tensor(
            node.inputs[1]).is_constant:
        return False, "its pads are not a constant"
    if node.op in ("QFullyConnected", "QConv2d", "QDepthwiseConv2d"):
        w = graph.tensor(node.inputs[1])
        if not w.is_constant or w.quant is None or np.any(w.quant.zero_point != 0):
            return False, "its weights are not constant symmetric int8"
    return True, ""


def export_qdq(graph: Graph) -> onnx.ModelProto:
    """The graph as an ONNX QDQ model (opset 21) with the IR's input/output names."""
    e = _Exporter(graph)
    for node in graph.topological_order():
        ok, why = node_supported(graph, node)
        if not ok:
            raise _Refuse(f"node {node.name!r} ({node.op}): {why}")
        EXPORTERS[node.op](e, node)

    def info(name: str) -> onnx.ValueInfoProto:
        t = graph.tensor(name)
        return helper.make_tensor_value_info(name, _ONNX_TYPE[t.dtype], list(t.shape))

    g = helper.make_graph(e.nodes, graph.name, [info(n) for n in graph.inputs],
                          [info(n) for n in graph.outputs], list(e.inits.values()))
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edge-sdk")
    model.ir_version = 10
    return model
