"""Write an integer IR graph as a .tflite flatbuffer, without TensorFlow.

Only the ``tflite`` schema package (generated flatbuffer accessors) and ``flatbuffers`` are
used. What TFLite cannot express exactly is refused with a reason (see :func:`node_supported`)
so the partitioner can leave that node to the reference backend:

* a node's integer multiplier must equal the one TFLite derives from the tensor scales
  (rules in :mod:`sdk.frontends.tflite_format`), otherwise the file would compute other bits;
* a fused clamp must be one of TFLite's activations (none, ReLU, ReLU6, ReLU-1..1);
* SDK-only integer ops (Shiftmax, ShiftGELU, I-LayerNorm, LUTs, global average pool with a
  folded count) have no TFLite twin.

Layout: 4-D activations around spatial ops are written NHWC (weights OHWI, depthwise
``[1, kh, kw, C·mult]``); a TRANSPOSE is inserted where an NHWC tensor meets an op that needs
the IR's order. :class:`TFLiteModel` says which inputs/outputs are NHWC in the file.
Every ``Buffer.data`` is 16-byte aligned (TFLite Micro and XNNPACK read weights in place).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite

from sdk.errors import UnsupportedOpError
from sdk.frontends import tflite_format as tf
from sdk.graph.ir import Graph, Node, Tensor, qrange

BuiltinOp = tflite.BuiltinOperator
Opt = tflite.BuiltinOptions


@dataclass
class TFLiteModel:
    """A written flatbuffer and how its inputs/outputs map to the IR graph."""

    data: bytes
    inputs: list[str]
    outputs: list[str]
    nhwc: set[str] = field(default_factory=set)  # I/O tensors stored NHWC in the file

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.data)
        return path


# ---------------------------------------------------------------------------------------------
# support checks


def _quant(g: Graph, name: str) -> tuple[np.ndarray, np.ndarray]:
    t = g.tensor(name)
    if t.quant is None:
        raise _Refuse(f"tensor {name!r} has no quantization parameters")
    return t.quant.scale, t.quant.zero_point


class _Refuse(Exception):
    """A node that cannot be written exactly (message = the reason)."""


def _same_ints(a: Any, b: Any) -> bool:
    return np.array_equal(np.asarray(a, np.int64).ravel(), np.asarray(b, np.int64).ravel()) or (
        np.asarray(b).size == 1 and np.all(np.asarray(a, np.int64) == int(np.asarray(b).ravel()[0])))


def _check_multiplier(node: Node, expected: tuple[np.ndarray, np.ndarray], m0_key: str = "m0",
                      shift_key: str = "shift") -> None:
    m0, sh = node.attrs[m0_key], node.attrs[shift_key]
    if not (_same_ints(m0, expected[0]) and _same_ints(sh, expected[1])):
        raise _Refuse(f"its multiplier ({m0_key}={np.ravel(m0)[:3]}..., {shift_key}="
                      f"{np.ravel(sh)[:3]}...) differs from the one TFLite derives from the "
                      f"tensor scales ({np.ravel(expected[0])[:3]}..., "
                      f"{np.ravel(expected[1])[:3]}...)")


def _fused(g: Graph, node: Node) -> int:
    out = g.tensor(node.outputs[0])
    s, z = _quant(g, out.name)
    lo, hi = qrange(out.dtype)
    act = tf.fused_activation(int(node.attrs.get("act_min", lo)), int(node.attrs.get("act_max", hi)),
                              float(s), int(z), out.dtype)
    if act is None:
        raise _Refuse(f"its output clamp [{node.attrs.get('act_min')}, {node.attrs.get('act_max')}] "
                      "is not a TFLite activation (none, ReLU, ReLU6, ReLU-1..1)")
    return act


def _check_zp(g: Graph, node: Node, attr: str, tensor: str) -> None:
    _, z = _quant(g, tensor)
    if int(node.attrs.get(attr, 0)) != int(z):
        raise _Refuse(f"attribute {attr}={node.attrs.get(attr)} differs from the zero point "
                      f"{int(z)} of tensor {tensor!r}")


# ops whose operands (and output) must share one integer type in TFLite's kernels
_SAME_TYPE = ("QAdd", "QMul", "QMatMul", "Concat", "QClamp", "QMaxPool2d", "QAvgPool2d",
              "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Pad", "ResizeNearest")


# ops whose int16 kernels accept any zero point (measured; the others require 0)
_INT16_ZP_OK = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Pad", "ResizeNearest",
                "QMaxPool2d", "QAvgPool2d", "QuantizeLinear")


def _check_litert_prepares(g: Graph, node: Node) -> None:
    """Refuse what LiteRT's kernels reject at prepare or run time (measured on LiteRT 2.x by
    tests/backends/test_delegate_honesty.py, every written op in int8 and int16):

    * the int16 kernels of ADD, MUL, FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, BATCH_MATMUL,
      CONCATENATION, RELU, DEQUANTIZE and QUANTIZE from int16 (a requantize) or to int16 from
      an integer require zero point 0 on their int16 tensors (layout ops and pools do not);
    * binary ops, BATCH_MATMUL, CONCATENATION and the layout ops take one type for all operands
      and the output (an int16 x int8 BATCH_MATMUL fails to prepare with ``batch_matmul.cc
      rhs_data->params.zero_point != 0``: the int16 path needs every zero point 0; an
      int8 x int8 -> int16 one prepares but computes garbage), and FULLY_CONNECTED / CONV_2D
      keep the input's type;
    * BATCH_MATMUL takes rank 2..5 and per-tensor quantization. (An int8 x int8 -> int8
      BATCH_MATMUL with non-zero zero points on both sides is fine: bit-exact, measured.)
    """
    op = node.op
    for name in [t for t in node.inputs + node.outputs if t and op not in _INT16_ZP_OK]:
        t = g.tensor(name)
        if t.dtype == "int16" and t.quant is not None and np.any(t.quant.zero_point != 0):
            raise _Refuse(f"LiteRT's int16 kernels need zero point 0, and tensor {name!r} has "
                          f"{int(np.ravel(t.quant.zero_point)[0])}")
    dtypes = [g.tensor(t).dtype for t in node.inputs if t and not g.tensor(t).is_constant]
    out_dt = g.tensor(node.outputs[0]).dtype if node.outputs else None
    if op in ("QMatMul", "QAdd", "QMul", "Concat"):
        operands = [g.tensor(t).dtype for t in (node.inputs if op == "Concat" else node.inputs[:2])]
        if len(set(operands + [out_dt])) != 1:
            raise _Refuse(f"TFLite's {op} kernel takes one type for its operands and output, "
                          f"not {' x '.join(operands)} -> {out_dt}")
    elif (op in _SAME_TYPE or op in ("QFullyConnected", "QConv2d", "QDepthwiseConv2d")) and \
            dtypes and dtypes[0] != out_dt:
        raise _Refuse(f"TFLite's {op} kernel keeps its input type ({dtypes[0]} -> {out_dt})")
    if op == "QMatMul":
        for name in node.inputs[:2]:
            shape = g.tensor(name).shape
            if shape is None or not 2 <= len(shape) <= 5:
                raise _Refuse(f"BATCH_MATMUL takes operands of rank 2 to 5, not {shape}")
        for name in node.inputs[:2] + node.outputs[:1]:
            q = g.tensor(name).quant
            if q is not None and q.scale.size > 1:
                raise _Refuse("BATCH_MATMUL takes per-tensor quantization only")


def _check_node(g: Graph, node: Node) -> None:
    """Raise _Refuse(reason) when ``node`` cannot be written bit-exactly."""
    op, a = node.op, node.attrs
    if op not in _WRITERS:
        raise _Refuse("TFLite has no operator that computes it bit-exactly")
    for name in node.outputs:
        if g.tensor(name).dtype not in tf.TFLITE_TYPE:
            raise _Refuse(f"dtype {g.tensor(name).dtype} has no TFLite type")
    _check_litert_prepares(g, node)
    if op in ("QFullyConnected", "QConv2d", "QDepthwiseConv2d"):
        x, w = node.inputs[0], node.inputs[1]
        if not g.tensor(w).is_constant:
            raise _Refuse("its weights are not a constant")
        s_x, _ = _quant(g, x)
        s_w, z_w = _quant(g, w)
        s_o, _ = _quant(g, node.outputs[0])
        if np.any(z_w != 0):
            raise _Refuse("its weights are not symmetric (zero point != 0)")
        _check_zp(g, node, "x_zp", x)
        _check_zp(g, node, "out_zp", node.outputs[0])
        rule = tf.fc_multipliers if op == "QFullyConnected" else tf.conv_multipliers
        _check_multiplier(node, rule(float(s_x), s_w, float(s_o)))
        _fused(g, node)
        if op == "QConv2d" and int(a.get("group", 1)) != 1:
            raise _Refuse("grouped convolution (group > 1) is not a TFLite CONV_2D")
        if op != "QFullyConnected" and g.tensor(x).shape is None:
            raise _Refuse("its input shape is unknown")
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        _check_boundary(g, node)
    elif op == "QAdd":
        (s_a, _), (s_b, _), (s_o, _) = (_quant(g, t) for t in (*node.inputs[:2], node.outputs[0]))
        exp = tf.add_params(float(s_a), float(s_b), float(s_o), g.tensor(node.outputs[0]).dtype)
        for k, v in exp.items():
            if int(a.get(k, -999)) != v:
                raise _Refuse(f"attribute {k}={a.get(k)} differs from TFLite's ADD rule ({v})")
        _check_zp(g, node, "a_zp", node.inputs[0])
        _check_zp(g, node, "b_zp", node.inputs[1])
        _check_zp(g, node, "out_zp", node.outputs[0])
        _fused(g, node)
    elif op == "QMul":
        (s_a, _), (s_b, _), (s_o, _) = (_quant(g, t) for t in (*node.inputs[:2], node.outputs[0]))
        m0, sh = tf.mul_multiplier(float(s_a), float(s_b), float(s_o))
        _check_multiplier(node, (np.array(m0), np.array(sh)))
        _fused(g, node)
    elif op == "QMatMul":
        (s_a, _), (s_b, _), (s_o, _) = (_quant(g, t) for t in (*node.inputs[:2], node.outputs[0]))
        m0, sh = tf.matmul_multiplier(float(s_a), float(s_b), float(s_o))
        _check_multiplier(node, (np.array(m0), np.array(sh)))
        if _fused(g, node) != tf.ACT_NONE:
            raise _Refuse("BATCH_MATMUL has no fused activation")
        _check_zp(g, node, "a_zp", node.inputs[0])
        _check_zp(g, node, "b_zp", node.inputs[1])
    elif op == "QClamp":
        s, z = _quant(g, node.outputs[0])
        dt = g.tensor(node.outputs[0]).dtype
        act = tf.fused_activation(int(a["min"]), int(a["max"]), float(s), int(z), dt)
        if act in (None, tf.ACT_NONE):
            raise _Refuse(f"clamp [{a['min']}, {a['max']}] is not a TFLite ReLU/ReLU6/ReLU-1..1")
        if _quant(g, node.inputs[0])[0] != s or _quant(g, node.inputs[0])[1] != z:
            raise _Refuse("input and output quantization differ")
    elif op == "Requantize":
        (s_i, _), (s_o, _) = _quant(g, node.inputs[0]), _quant(g, node.outputs[0])
        lo, hi = qrange(g.tensor(node.outputs[0]).dtype)
        if (int(a.get("act_min", lo)), int(a.get("act_max", hi))) != (lo, hi):
            raise _Refuse("QUANTIZE (requantize) has no output clamp")
        m0, sh = tf.conv_multipliers(float(s_i), np.array([1.0], np.float32), float(s_o))
        _check_multiplier(node, (m0, sh))
        _check_zp(g, node, "in_zp", node.inputs[0])
        _check_zp(g, node, "out_zp", node.outputs[0])
    elif op in ("QMaxPool2d", "QAvgPool2d"):
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise _Refuse("dilated pooling is not a TFLite op")
        shape = g.tensor(node.inputs[0]).shape
        if shape is None or len(shape) != 4:
            raise _Refuse("pooling input must be 4-D with a known shape")
        kind = tf.padding_kind(shape[2:], tuple(a["kernel"]), tuple(a.get("strides", [1, 1])),
                               (1, 1), a.get("pads", [0, 0, 0, 0]))
        if kind is None:
            raise _Refuse(f"pads {a.get('pads')} are neither SAME nor VALID")
        if op == "QAvgPool2d" and kind == tf.PAD_SAME and a.get("count_include_pad", 0):
            raise _Refuse("TFLite's average pool does not count padding")
    elif op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
        if g.tensor(node.outputs[0]).shape is None:
            raise _Refuse("its output shape is unknown")
    elif op == "ResizeNearest":
        xs, ys = g.tensor(node.inputs[0]).shape, g.tensor(node.outputs[0]).shape
        if xs is None or ys is None or len(xs) != 4 or xs[:2] != ys[:2]:
            raise _Refuse("only 4-D spatial resizes (N and C unchanged) are a TFLite op")
        if not all(tf.resize_nearest_matches(i, o) for i, o in zip(xs[2:], ys[2:])):
            raise _Refuse(f"TFLite's float32 index rule differs from the exact one for "
                          f"{xs[2:]} -> {ys[2:]}")
    elif op == "Pad":
        x = g.tensor(node.inputs[0])
        pads = _pad_amounts(g, node)
        if pads is None or x.shape is None:
            raise _Refuse("its pads are not a constant")
        if str(node.attrs.get("mode", "constant")).strip("b'") != "constant":
            raise _Refuse("only constant padding is a TFLite PAD")
        value = _pad_value(g, node)
        _, z = _quant(g, node.outputs[0])
        if value != int(z):
            raise _Refuse(f"TFLite pads quantized tensors with the zero point ({int(z)}), "
                          f"not {value}")
    elif op == "Transpose":
        if "perm" not in a:
            raise _Refuse("it has no perm attribute")
    elif op == "Concat":
        q = [_quant(g, t) for t in node.inputs + node.outputs]
        if any(float(s) != float(q[0][0]) or int(z) != int(q[0][1]) for s, z in q):
            raise _Refuse("its inputs and output do not share one scale and zero point")


def _check_boundary(g: Graph, node: Node) -> None:
    """QUANTIZE / DEQUANTIZE take their grid from the integer tensor's quantization: the
    node's own scale and zero point (attributes or constant inputs) must be that grid."""
    q_name = node.outputs[0] if node.op == "QuantizeLinear" else node.inputs[0]
    t_s, t_z = _quant(g, q_name)

    def given(i: int, attr: str) -> Any:
        if len(node.inputs) > i and node.inputs[i]:
            src = g.tensor(node.inputs[i])
            if src.data is None:
                raise _Refuse(f"its {attr} is not a constant")
            return src.data
        return node.attrs.get(attr)

    scale, zp = given(1, "scale"), given(2, "zero_point")
    if scale is None:
        raise _Refuse("it has no scale")
    zp = 0 if zp is None else zp
    if np.asarray(scale).size != 1 or np.asarray(t_s).size != 1:
        raise _Refuse("per-axis QUANTIZE/DEQUANTIZE is not written")
    if np.float32(np.ravel(scale)[0]) != np.float32(np.ravel(t_s)[0]) or \
            int(np.ravel(zp)[0]) != int(np.ravel(t_z)[0]):
        raise _Refuse(f"its scale/zero point ({float(np.ravel(scale)[0])}, "
                      f"{int(np.ravel(zp)[0])}) differ from tensor {q_name!r}'s "
                      f"({float(np.ravel(t_s)[0])}, {int(np.ravel(t_z)[0])})")


def _pad_amounts(g: Graph, node: Node) -> np.ndarray | None:
    """IR Pad's pads (ONNX order [begin..., end...]) as [rank, 2], or None if not constant."""
    src = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else None
    pads = g.tensor(src).data if src is not None else node.attrs.get("pads")
    if pads is None or (len(node.inputs) > 3 and node.inputs[3]):
        return None
    p = np.asarray(pads, np.int64).ravel()
    return np.stack([p[: p.size // 2], p[p.size // 2:]], axis=1)


def _pad_value(g: Graph, node: Node) -> int:
    if len(node.inputs) > 2 and node.inputs[2]:
        return int(np.asarray(g.tensor(node.inputs[2]).data).ravel()[0])
    return int(node.attrs.get("value", 0) or 0)


def node_supported(graph: Graph, node: Node) -> tuple[bool, str]:
    """Whether the writer can express ``node`` exactly; the reason when not."""
    try:
        _check_node(graph, node)
    except _Refuse as why:
        return False, str(why)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return False, f"its attributes are incomplete ({type(exc).__name__}: {exc})"
    return True, ""


# ---------------------------------------------------------------------------------------------
# the builder state


@dataclass
class _T:
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int = 0
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    qdim: int = 0


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int = 0
    options: Callable[[flatbuffers.Builder], int] | None = None


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.tensors: list[_T] = []
        self.buffers: list[bytes] = [b""]
        self.ops: list[_Op] = []
        self.codes: list[int] = []
        self.index: dict[tuple[str, bool], int] = {}
        rank = {n: len(t.shape) for n, t in graph.tensors.items() if t.shape is not None}
        consts = {t.name for t in graph.initializers()}
        self.nhwc = tf.nhwc_tensors(((n.op, n.inputs, n.outputs) for n in graph.nodes), rank, consts)
        self.pending: list[tuple[int, int, tuple[int, ...]]] = []
        self.names: set[str] = set()

    # tensors ---------------------------------------------------------------------------------
    def new_tensor(self, name: str, t: Tensor, nhwc: bool, data: np.ndarray | None = None,
                   quant: tuple[np.ndarray, np.ndarray, int] | None = None) -> int:
        shape = tuple(t.shape or ())
        if nhwc and len(shape) == 4:
            shape = tuple(shape[i] for i in tf.NCHW_TO_NHWC)
        rec = _T(name, shape, t.dtype)
        if quant is not None:
            rec.scale, rec.zero_point, rec.qdim = quant
        elif t.quant is not None:
            rec.scale, rec.zero_point = t.quant.scale.ravel(), t.quant.zero_point.ravel()
            rec.qdim = t.quant.axis or 0
        if data is not None:
            rec.shape = tuple(data.shape)
            rec.buffer = len(self.buffers)
            self.buffers.append(np.ascontiguousarray(data).tobytes())
        self.tensors.append(rec)
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray, quant: tuple | None = None) -> int:
        data = np.asarray(data)
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        t = Tensor(name, str(data.dtype), data.shape)
        return self.new_tensor(t.name, t, False, data, quant)

    def inp(self, name: str, nhwc: bool) -> int:
        """tflite index of IR tensor ``name`` in the requested layout (TRANSPOSE if needed)."""
        t = self.g.tensor(name)
        nhwc = nhwc and t.shape is not None and len(t.shape) == 4
        if t.is_constant:
            key = (name, nhwc)
            if key not in self.index:
                data = t.data.transpose(tf.NCHW_TO_NHWC) if nhwc else t.data
                self.index[key] = self.new_tensor(name if not nhwc else f"{name}@nhwc", t, False, data)
            return self.index[key]
        home = name in self.nhwc
        key = (name, home)
        if key not in self.index:
            self.index[key] = self.new_tensor(name, t, home)
        if home == nhwc:
            return self.index[key]
        alt = (name, nhwc)
        if alt not in self.index:
            self.index[alt] = self.new_tensor(f"{name}@{'nhwc' if nhwc else 'nchw'}", t, nhwc)
            perm = tf.NCHW_TO_NHWC if nhwc else tf.NHWC_TO_NCHW
            self.transpose(self.index[key], self.index[alt], perm)
        return self.index[alt]

    def out(self, name: str, nhwc: bool) -> int:
        """Index an op should write ``name`` to in layout ``nhwc``; fixes up the home layout."""
        t = self.g.tensor(name)
        nhwc = nhwc and t.shape is not None and len(t.shape) == 4
        home = name in self.nhwc and t.shape is not None and len(t.shape) == 4
        key = (name, home)
        if key not in self.index:
            self.index[key] = self.new_tensor(name, t, home)
        if home == nhwc:
            return self.index[key]
        tmp = self.new_tensor(f"{name}@{'nhwc' if nhwc else 'nchw'}", t, nhwc)
        self.index[(name, nhwc)] = tmp
        perm = tf.NCHW_TO_NHWC if home else tf.NHWC_TO_NCHW
        self.pending.append((tmp, self.index[key], perm))
        return tmp

    def transpose(self, src: int, dst: int, perm: tuple[int, ...]) -> None:
        p = self.const(f"{self.tensors[src].name}@perm", np.array(perm, np.int32))
        self.emit(BuiltinOp.TRANSPOSE, [src, p], [dst])

    def emit(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0,
             options: Callable[[flatbuffers.Builder], int] | None = None) -> None:
        self.ops.append(_Op(code, inputs, outputs, options_type, options))
        pending, self.pending = self.pending, []
        for src, dst, perm in pending:
            self.transpose(src, dst, perm)

    def opcode(self, code: int) -> int:
        if code not in self.codes:
            self.codes.append(code)
        return self.codes.index(code)

    # serialization ---------------------------------------------------------------------------
    def serialize(self, inputs: list[int], outputs: list[int], name: str) -> bytes:
        b = flatbuffers.Builder(1024)
        buf_offs = []
        for data in self.buffers:
            if data:
                b.StartVector(1, len(data), 16)
                b.head -= len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                vec = b.EndVector()
                tflite.BufferStart(b)
                tflite.BufferAddData(b, vec)
            else:
                tflite.BufferStart(b)
            buf_offs.append(tflite.BufferEnd(b))
        t_offs = [self._tensor(b, t) for t in self.tensors]
        op_offs = []
        for op in self.ops:
            ins = _ivec(b, op.inputs)
            outs = _ivec(b, op.outputs)
            opt = op.options(b) if op.options else None
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, self.opcode(op.code))
            tflite.OperatorAddInputs(b, ins)
            tflite.OperatorAddOutputs(b, outs)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, op.options_type)
                tflite.OperatorAddBuiltinOptions(b, opt)
            op_offs.append(tflite.OperatorEnd(b))
        sg_name = b.CreateString(name)
        t_vec = _ovec(b, t_offs)
        o_vec = _ovec(b, op_offs)
        in_vec, out_vec = _ivec(b, inputs), _ivec(b, outputs)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, t_vec)
        tflite.SubGraphAddInputs(b, in_vec)
        tflite.SubGraphAddOutputs(b, out_vec)
        tflite.SubGraphAddOperators(b, o_vec)
        tflite.SubGraphAddName(b, sg_name)
        sg = tflite.SubGraphEnd(b)
        code_offs = []
        for code in self.codes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offs.append(tflite.OperatorCodeEnd(b))
        codes_vec = _ovec(b, code_offs)
        sgs = _ovec(b, [sg])
        bufs = _ovec(b, buf_offs)
        desc = b.CreateString("edge-sdk tflite_writer")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_vec)
        tflite.ModelAddSubgraphs(b, sgs)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bufs)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def _tensor(self, b: flatbuffers.Builder, t: _T) -> int:
        name = b.CreateString(t.name)
        shape = _ivec(b, list(t.shape))
        q = None
        if t.scale is not None:
            sc = b.CreateNumpyVector(np.asarray(t.scale, np.float32).ravel())
            zp = b.CreateNumpyVector(np.asarray(t.zero_point, np.int64).ravel())
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, sc)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            tflite.QuantizationParametersAddQuantizedDimension(b, int(t.qdim))
            q = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, tf.TFLITE_TYPE[t.dtype])
        tflite.TensorAddBuffer(b, t.buffer)
        tflite.TensorAddName(b, name)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        return tflite.TensorEnd(b)


def _ivec(b: flatbuffers.Builder, values: list[int]) -> int:
    return b.CreateNumpyVector(np.asarray(values, np.int32))


def _ovec(b: flatbuffers.Builder, offs: list[int]) -> int:
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _options(kind: str, **fields: Any) -> Callable[[flatbuffers.Builder], int]:
    """Deferred builder for a ``<kind>Options`` table with scalar fields."""

    def build(b: flatbuffers.Builder) -> int:
        vec_fields = {k: _ivec(b, v) for k, v in fields.items() if isinstance(v, list)}
        getattr(tflite, f"{kind}Start")(b)
        for k, v in fields.items():
            getattr(tflite, f"{kind}Add{k}")(b, vec_fields.get(k, v))
        return getattr(tflite, f"{kind}End")(b)

    return build


# ---------------------------------------------------------------------------------------------
# per-op writers: (writer, graph node) -> emits tflite ops


def _bias(w: _Writer, node: Node, n_out: int, s_w: np.ndarray) -> int:
    s_x = float(w.g.tensor(node.inputs[0]).quant.scale)
    scale = (np.float32(s_x) * np.asarray(s_w, np.float32)).astype(np.float32).ravel()
    # TFLite's 16x8 kernels (int16 activations, int8 weights) take an int64 bias
    bdt = np.int64 if w.g.tensor(node.inputs[0]).dtype == "int16" else np.int32
    if len(node.inputs) > 2 and node.inputs[2]:
        data = np.asarray(w.g.tensor(node.inputs[2]).data, np.int64).astype(bdt)
        name = node.inputs[2]
    else:
        data, name = np.zeros(n_out, bdt), f"{node.name}_bias"
    if scale.size == 1 and n_out > 1:
        scale = np.full(1, scale[0], np.float32)
    return w.const(name, data, (scale, np.zeros(scale.size, np.int64), 0))


def _weights(w: _Writer, name: str, data: np.ndarray, qdim: int) -> int:
    q = w.g.tensor(name).quant
    return w.const(name, data, (q.scale.ravel(), q.zero_point.ravel(), qdim if q.per_axis else 0))


def _write_fc(w: _Writer, node: Node) -> None:
    x = w.g.tensor(node.inputs[0])
    wt = w.g.tensor(node.inputs[1])
    wi = _weights(w, wt.name, wt.data, 0)
    bi = _bias(w, node, wt.shape[0], wt.quant.scale)
    keep = x.shape is not None and len(x.shape) > 2
    w.emit(BuiltinOp.FULLY_CONNECTED, [w.inp(x.name, False), wi, bi],
           [w.out(node.outputs[0], False)], Opt.FullyConnectedOptions,
           _options("FullyConnectedOptions", FusedActivationFunction=_fused(w.g, node),
                    KeepNumDims=keep))


def _conv_pads(w: _Writer, node: Node, xi: int, kernel: tuple[int, int]) -> tuple[int, int]:
    """Returns (input index, padding kind); inserts PAD when pads are neither SAME nor VALID."""
    a = node.attrs
    x = w.g.tensor(node.inputs[0])
    strides, dil = tuple(a.get("strides", [1, 1])), tuple(a.get("dilations", [1, 1]))
    pads = a.get("pads", [0, 0, 0, 0])
    kind = tf.padding_kind(x.shape[2:], kernel, strides, dil, pads)
    if kind is not None:
        return xi, kind
    t, l, bo, r = (int(p) for p in pads)
    n, c, h, wd = x.shape
    padded = Tensor(f"{x.name}@padded", x.dtype, (n, c, h + t + bo, wd + l + r), x.quant)
    pi = w.new_tensor(padded.name, padded, True)
    pv = w.const(f"{node.name}@pads", np.array([[0, 0], [t, bo], [l, r], [0, 0]], np.int32))
    w.emit(BuiltinOp.PAD, [xi, pv], [pi], Opt.PadOptions, _options("PadOptions"))
    return pi, tf.PAD_VALID


def _write_conv(w: _Writer, node: Node) -> None:
    a = node.attrs
    wt = w.g.tensor(node.inputs[1])
    depthwise = node.op == "QDepthwiseConv2d"
    o, _, kh, kwd = wt.shape
    if depthwise:
        wi = _weights(w, wt.name, wt.data.transpose(1, 2, 3, 0), 3)
    else:
        wi = _weights(w, wt.name, wt.data.transpose(0, 2, 3, 1), 0)
    bi = _bias(w, node, o, wt.quant.scale)
    xi, kind = _conv_pads(w, node, w.inp(node.inputs[0], True), (kh, kwd))
    sh, sw = (int(s) for s in a.get("strides", [1, 1]))
    dh, dw = (int(d) for d in a.get("dilations", [1, 1]))
    act = _fused(w.g, node)
    yi = w.out(node.outputs[0], True)
    if depthwise:
        c = w.g.tensor(node.inputs[0]).shape[1]
        w.emit(BuiltinOp.DEPTHWISE_CONV_2D, [xi, wi, bi], [yi], Opt.DepthwiseConv2DOptions,
               _options("DepthwiseConv2DOptions", Padding=kind, StrideW=sw, StrideH=sh,
                        DepthMultiplier=o // c, FusedActivationFunction=act,
                        DilationWFactor=dw, DilationHFactor=dh))
    else:
        w.emit(BuiltinOp.CONV_2D, [xi, wi, bi], [yi], Opt.Conv2DOptions,
               _options("Conv2DOptions", Padding=kind, StrideW=sw, StrideH=sh,
                        FusedActivationFunction=act, DilationWFactor=dw, DilationHFactor=dh))


def _elementwise_layout(w: _Writer, node: Node) -> bool:
    return node.outputs[0] in w.nhwc


def _binary_inputs(w: _Writer, node: Node, nhwc: bool) -> list[int]:
    out = []
    for name in node.inputs[:2]:
        t = w.g.tensor(name)
        if nhwc and t.is_constant and t.data.ndim < 4:
            data = t.data.reshape((1,) * (4 - t.data.ndim) + t.data.shape)
            out.append(w.const(f"{name}@nhwc", data.transpose(tf.NCHW_TO_NHWC),
                               (t.quant.scale.ravel(), t.quant.zero_point.ravel(), 0)))
        else:
            out.append(w.inp(name, nhwc))
    return out


def _write_add(w: _Writer, node: Node) -> None:
    nhwc = _elementwise_layout(w, node)
    code, kind = ((BuiltinOp.ADD, "AddOptions") if node.op == "QAdd"
                  else (BuiltinOp.MUL, "MulOptions"))
    w.emit(code, _binary_inputs(w, node, nhwc), [w.out(node.outputs[0], nhwc)],
           getattr(Opt, kind), _options(kind, FusedActivationFunction=_fused(w.g, node)))


def _write_clamp(w: _Writer, node: Node) -> None:
    s, z = _quant(w.g, node.outputs[0])
    act = tf.fused_activation(int(node.attrs["min"]), int(node.attrs["max"]), float(s), int(z),
                              w.g.tensor(node.outputs[0]).dtype)
    code = {tf.ACT_RELU: BuiltinOp.RELU, tf.ACT_RELU6: BuiltinOp.RELU6,
            tf.ACT_RELU_N1_TO_1: BuiltinOp.RELU_N1_TO_1}[act]
    nhwc = _elementwise_layout(w, node)
    w.emit(code, [w.inp(node.inputs[0], nhwc)], [w.out(node.outputs[0], nhwc)])


def _write_unary(code: int, options: str | None = None) -> Callable[[_Writer, Node], None]:
    def write(w: _Writer, node: Node) -> None:
        nhwc = _elementwise_layout(w, node)
        opt = getattr(Opt, options) if options else 0
        w.emit(code, [w.inp(node.inputs[0], nhwc)], [w.out(node.outputs[0], nhwc)], opt,
               _options(options) if options else None)
    return write


def _write_pool(w: _Writer, node: Node) -> None:
    a = node.attrs
    kh, kw = (int(k) for k in a["kernel"])
    sh, sw = (int(s) for s in a.get("strides", [1, 1]))
    x = w.g.tensor(node.inputs[0])
    kind = tf.padding_kind(x.shape[2:], (kh, kw), (sh, sw), (1, 1), a.get("pads", [0, 0, 0, 0]))
    code = BuiltinOp.MAX_POOL_2D if node.op == "QMaxPool2d" else BuiltinOp.AVERAGE_POOL_2D
    w.emit(code, [w.inp(x.name, True)], [w.out(node.outputs[0], True)], Opt.Pool2DOptions,
           _options("Pool2DOptions", Padding=kind, StrideW=sw, StrideH=sh, FilterWidth=kw,
                    FilterHeight=kh, FusedActivationFunction=tf.ACT_NONE))


def _write_reshape(w: _Writer, node: Node) -> None:
    shape = list(w.g.tensor(node.outputs[0]).shape)
    given = node.inputs[1] if len(node.inputs) > 1 and node.inputs[1] else ""
    si = w.const(given or f"{node.outputs[0]}@shape", np.array(shape, np.int32))
    w.emit(BuiltinOp.RESHAPE, [w.inp(node.inputs[0], False), si], [w.out(node.outputs[0], False)],
           Opt.ReshapeOptions, _options("ReshapeOptions", NewShape=shape))


def _write_transpose(w: _Writer, node: Node) -> None:
    perm = w.const(f"{node.name}@perm", np.array(node.attrs["perm"], np.int32))
    w.emit(BuiltinOp.TRANSPOSE, [w.inp(node.inputs[0], False), perm],
           [w.out(node.outputs[0], False)], Opt.TransposeOptions, _options("TransposeOptions"))


def _write_matmul(w: _Writer, node: Node) -> None:
    w.emit(BuiltinOp.BATCH_MATMUL, [w.inp(n, False) for n in node.inputs[:2]],
           [w.out(node.outputs[0], False)], Opt.BatchMatMulOptions,
           _options("BatchMatMulOptions", AdjX=False, AdjY=False))


def _write_concat(w: _Writer, node: Node) -> None:
    rank = len(w.g.tensor(node.outputs[0]).shape)
    nhwc = node.outputs[0] in w.nhwc and rank == 4
    axis = int(node.attrs.get("axis", 0)) % rank
    if nhwc:
        axis = tf.NCHW_TO_NHWC.index(axis)
    w.emit(BuiltinOp.CONCATENATION, [w.inp(n, nhwc) for n in node.inputs],
           [w.out(node.outputs[0], nhwc)], Opt.ConcatenationOptions,
           _options("ConcatenationOptions", Axis=axis, FusedActivationFunction=tf.ACT_NONE))


def _write_resize(w: _Writer, node: Node) -> None:
    _, _, h, wd = w.g.tensor(node.outputs[0]).shape
    size = w.const(f"{node.outputs[0]}@size", np.array([h, wd], np.int32))
    w.emit(BuiltinOp.RESIZE_NEAREST_NEIGHBOR, [w.inp(node.inputs[0], True), size],
           [w.out(node.outputs[0], True)], Opt.ResizeNearestNeighborOptions,
           _options("ResizeNearestNeighborOptions", AlignCorners=False, HalfPixelCenters=False))


def _write_pad(w: _Writer, node: Node) -> None:
    nhwc = _elementwise_layout(w, node)
    pads = _pad_amounts(w.g, node)
    if nhwc and pads.shape[0] == 4:
        pads = pads[list(tf.NCHW_TO_NHWC)]
    pv = w.const(f"{node.outputs[0]}@paddings", pads.astype(np.int32))
    w.emit(BuiltinOp.PAD, [w.inp(node.inputs[0], nhwc), pv], [w.out(node.outputs[0], nhwc)],
           Opt.PadOptions, _options("PadOptions"))


_WRITERS: dict[str, Callable[[_Writer, Node], None]] = {
    "ResizeNearest": _write_resize,
    "Pad": _write_pad,
    "QuantizeLinear": _write_unary(BuiltinOp.QUANTIZE),
    "DequantizeLinear": _write_unary(BuiltinOp.DEQUANTIZE),
    "Requantize": _write_unary(BuiltinOp.QUANTIZE),
    "QFullyConnected": _write_fc,
    "QConv2d": _write_conv,
    "QDepthwiseConv2d": _write_conv,
    "QAdd": _write_add,
    "QMul": _write_add,
    "QClamp": _write_clamp,
    "QMaxPool2d": _write_pool,
    "QAvgPool2d": _write_pool,
    "Reshape": _write_reshape,
    "Flatten": _write_reshape,
    "Squeeze": _write_reshape,
    "Unsqueeze": _write_reshape,
    "Transpose": _write_transpose,
    "QMatMul": _write_matmul,
    "Concat": _write_concat,
}

SUPPORTED_OPS = frozenset(_WRITERS)


def write_tflite(graph: Graph, path: str | Path | None = None) -> TFLiteModel:
    """Serialize ``graph`` (integer IR, every node supported) as a .tflite flatbuffer.

    Raises UnsupportedOpError listing every node the format cannot express exactly, with why.
    """
    graph.validate()
    refused = [(n, node_supported(graph, n)[1]) for n in graph.nodes]
    refused = [(n, why) for n, why in refused if why]
    if refused:
        raise UnsupportedOpError(
            [n.op for n, _ in refused], where="the .tflite writer",
            hint="; ".join(f"{n.name}: {why}" for n, why in refused[:5])
            + "; run those nodes on the reference backend (partition the graph)")
    w = _Writer(graph)
    in_idx = [w.inp(name, name in w.nhwc) for name in graph.inputs]
    for node in graph.topological_order():
        _WRITERS[node.op](w, node)
    out_idx = [w.inp(name, name in w.nhwc) for name in graph.outputs]
    model = TFLiteModel(w.serialize(in_idx, out_idx, graph.name), list(graph.inputs),
                        list(graph.outputs),
                        {n for n in graph.inputs + graph.outputs if n in w.nhwc})
    if path is not None:
        model.save(path)
    return model
