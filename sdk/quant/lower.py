"""Integer-only lowering: a float graph plus a :class:`QuantPlan` → an integer graph whose
nodes are the operators of docs/ops.md.

Every multiplier is folded at compile time into a Q31 ``m0`` and a shift
(:func:`sdk.kernels.requant.quantize_multiplier`); weights become per-channel symmetric int8,
biases int32 with scale ``s_in·s_w``. The only float nodes are ``QuantizeLinear`` at the graph
inputs and ``DequantizeLinear`` at the outputs; integer graph inputs (token ids) pass through.

Op map: Conv → QConv1d / QConv2d / QDepthwiseConv2d; a BatchNormalization that did not fold →
1×1 QDepthwiseConv2d; Gemm, MatMul with constant weights → QFullyConnected; MatMul of two
activations → QMatMul; Add/Sub → QAdd; Mul/Div → QMul; Relu/Clip → fused clamp or QClamp;
MaxPool/AveragePool/GlobalAveragePool → QMaxPool2d/QAvgPool2d/QGlobalAvgPool; Softmax →
Shiftmax; LayerNormalization → ILayerNorm; Gelu → ShiftGELU; Sigmoid, Tanh and other unary
functions → QLut; Resize → ResizeNearest; layout ops kept (Concat and Softmax/GELU/LUT inputs
get a Requantize where grids differ); Dropout → Identity. Anything else: UnsupportedOpError
naming every such op.

Fusions done while lowering: Relu/Clip into the producer's ``act_min``/``act_max`` (when the
producer requantizes and the activation is its only consumer), ``MatMul`` + constant ``Add``
into one ``QFullyConnected`` with bias, a Mul/Div by a scalar into the producer's multiplier
(attention's 1/√d). A QDQ plan (``fuse_quantized=False``) keeps every rounding its model asks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.graph import Graph, Node, QuantParams, Tensor, qrange
from sdk.kernels.requant import quantize_multiplier, quantize_multiplier_array
from sdk.quant.fuse import const_value
from sdk.quant.observers import params_for_range
from sdk.quant.plan import SHIFTMAX_OUT_BITS, QuantPlan, fixed_output_params

SHIFTMAX_N = 15
GELU_LAMBDA = 3.0
SHIFTGELU_SIG_BITS = 12
SHIFTGELU_NORM_BITS = 23
ILAYERNORM_ITERS = 10
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Quant = tuple[QuantParams, str]


def _ints(v, n: int | None = None) -> list[int]:
    out = [int(x) for x in np.ravel(v)]
    return out * n if n is not None and len(out) == 1 else out


def _same(a: Quant, b: Quant) -> bool:
    return a[1] == b[1] and a[0] == b[0]


def quantize_weight(w: np.ndarray, qp: QuantParams | None, per_channel: bool,
                    axis: int = 0) -> tuple[np.ndarray, QuantParams]:
    """Symmetric int8 weights in ``[-127, 127]``: ``s_c = max|W_c|/127`` per ``axis`` slice."""
    w = np.asarray(w, np.float32)
    if qp is None:
        if per_channel:
            m = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)
            scale = np.where(m > 0, m / 127.0, 1.0 / 127.0).astype(np.float32)
            qp = QuantParams(scale, np.zeros(scale.shape, np.int32), axis)
        else:
            m = float(np.abs(w).max()) if w.size else 0.0
            qp = QuantParams(np.float32(m / 127.0 if m > 0 else 1.0 / 127.0), np.int32(0))
    s = qp.scale
    if qp.per_axis:
        shape = [1] * w.ndim
        shape[qp.axis] = -1
        s = s.reshape(shape)
    q = np.clip(np.round(w / s), -127, 127).astype(np.int8)
    return q, qp


def clamp_range(qp: QuantParams, dtype: str, act: tuple | None) -> tuple[int, int]:
    """The output clamp of a requantizing op, tightened by a fused Relu/Clip."""
    qmin, qmax = qrange(dtype)
    if act is None:
        return qmin, qmax
    s, z = float(qp.scale), int(qp.zero_point)
    lo, hi = act
    amin = qmin if lo is None else max(qmin, int(np.round(lo / s)) + z)
    amax = qmax if hi is None else min(qmax, int(np.round(hi / s)) + z)
    return amin, amax


class Lowering:
    """State of one lowering run; :func:`lower` is the entry point."""

    def __init__(self, fg: Graph, plan: QuantPlan) -> None:
        self.fg = fg
        self.plan = plan
        self.g = Graph(fg.name)
        self.g.metadata = dict(fg.metadata)
        self.actual: dict[str, Quant] = {}
        self.int_name: dict[str, str] = {}
        self.producers = fg.producers()
        self.consumers = fg.consumers()
        self.done: set[int] = set()

    # -- tensors --------------------------------------------------------------------------
    def desired(self, name: str) -> Quant:
        got = self.plan.get(name)
        if got is None:
            raise GraphError(f"tensor {name!r} has no quantization parameters; calibrate the "
                             "model (or, for a QDQ model, quantize this tensor)")
        return got

    def out_name(self, fname: str) -> str:
        name = self.g.unique_name(fname + "_q") if fname in self.fg.outputs else fname
        self.int_name[fname] = name
        return name

    def shape(self, fname: str) -> tuple[int, ...] | None:
        t = self.fg.tensors.get(fname)
        return t.shape if t is not None else None

    def input(self, fname: str) -> tuple[str, QuantParams, str]:
        """Integer tensor name, params and dtype of an already-lowered activation."""
        if fname not in self.int_name:
            raise GraphError(f"tensor {fname!r} is used before it is computed")
        if fname not in self.actual:
            raise UnsupportedOpError([f"integer input {fname!r} feeding an arithmetic op"],
                                     "integer lowering", "integer inputs may only index a Gather")
        qp, dt = self.actual[fname]
        return self.int_name[fname], qp, dt

    def input_as(self, fname: str, want: Quant) -> str:
        """The activation with parameters ``want``, inserting a Requantize when they differ."""
        name, qp, dt = self.input(fname)
        if _same((qp, dt), want):
            return name
        key = f"{fname}__as_{want[1]}_{float(want[0].scale):.6g}_{int(want[0].zero_point)}"
        if key in self.int_name:
            return self.int_name[key]
        m0, shift = quantize_multiplier(float(qp.scale) / float(want[0].scale))
        qmin, qmax = qrange(want[1])
        new = self.g.unique_name(fname + "_rq")
        self.g.add_tensor(Tensor(new, want[1], self.shape(fname), want[0]))
        self.g.add_node("Requantize", [name], [new], name=f"requantize_{new}",
                        in_zp=int(qp.zero_point), m0=m0, shift=shift,
                        out_zp=int(want[0].zero_point), act_min=qmin, act_max=qmax, dtype=want[1])
        self.int_name[key] = new
        return new

    def const(self, fname: str, what: str) -> np.ndarray:
        v = const_value(self.fg, fname)
        if v is None:
            raise UnsupportedOpError([what], hint=f"{fname!r} must be a constant")
        return v

    def add_int_const(self, base: str, data: np.ndarray, qp: QuantParams | None = None) -> str:
        name = self.g.unique_name(base)
        self.g.add_constant(name, data, qp)
        return name

    def quantize_activation_const(self, fname: str, symmetric: bool) -> tuple[str, Quant]:
        """A constant operand of Add/Mul/Concat/Gather as an int8 per-tensor constant."""
        v = np.asarray(self.const(fname, "constant operand"), np.float32)
        qp = self.plan.weights.get(fname)  # a QDQ model's own grid for this constant
        if qp is None or qp.per_axis:
            qp = params_for_range(float(v.min()), float(v.max()), "int8", symmetric)
        qmin, qmax = qrange("int8")
        q = np.clip(np.round(v / float(qp.scale)) + int(qp.zero_point), qmin, qmax).astype(np.int8)
        return self.add_int_const(fname + "_q", q, qp), (qp, "int8")

    def operand(self, fname: str, symmetric_const: bool = False) -> tuple[str, QuantParams, str]:
        if fname in self.int_name:
            return self.input(fname)
        name, (qp, dt) = self.quantize_activation_const(fname, symmetric_const)
        return name, qp, dt

    def emit(self, op: str, inputs: list[str], fout: str, quant: Quant, **attrs) -> Node:
        name = self.out_name(fout)
        self.g.add_tensor(Tensor(name, quant[1], self.shape(fout), quant[0]))
        self.actual[fout] = quant
        return self.g.add_node(op, inputs, [name], name=f"{op}_{fout}", **attrs)

    def emit_same(self, node: Node, op: str | None = None, inputs: list[str] | None = None,
                  **attrs) -> None:
        """A layout or pooling op: every output keeps the first input's parameters."""
        name, qp, dt = self.input(node.inputs[0])
        ins = inputs if inputs is not None else [name] + [self.layout_arg(i) for i in node.inputs[1:]]
        outs = []
        for fo in node.outputs:
            if not fo:
                outs.append("")
                continue
            o = self.out_name(fo)
            self.g.add_tensor(Tensor(o, dt, self.shape(fo), qp))
            self.actual[fo] = (qp, dt)
            outs.append(o)
        self.g.add_node(op or node.op, ins, outs, name=f"{op or node.op}_{node.outputs[0]}",
                        **(attrs if attrs else dict(node.attrs)))

    def layout_arg(self, fname: str) -> str:
        """Shape/index/axes operands of layout ops are integer constants: copy them."""
        if not fname:
            return ""
        v = self.const(fname, "layout operand")
        if v.dtype.kind == "f":
            raise UnsupportedOpError(["float layout operand"], hint=f"{fname!r} is float")
        if fname not in self.g.tensors:
            self.g.add_constant(fname, v)
        return fname

    # -- fusion lookahead -----------------------------------------------------------------
    def sole_consumer(self, fname: str) -> Node | None:
        users = self.consumers.get(fname, [])
        if len(users) != 1 or fname in self.fg.outputs:
            return None
        return users[0]

    def take_activation(self, fout: str) -> tuple[tuple | None, str]:
        """Fuse a following Relu/Clip: returns ((lo, hi) in real units, final output name)."""
        nxt = self.sole_consumer(fout)
        if nxt is None:
            return None, fout
        if nxt.op == "Relu":
            self.done.add(id(nxt))
            return (0.0, None), nxt.outputs[0]
        if nxt.op == "Clip":
            lo, hi = self.clip_bounds(nxt)
            self.done.add(id(nxt))
            return (lo, hi), nxt.outputs[0]
        return None, fout

    def may_fuse_across(self, fname: str) -> bool:
        """Whether a fusion may skip the rounding of the intermediate tensor ``fname``."""
        return self.plan.fuse_quantized or fname not in self.plan.act

    def take_scale(self, fout: str) -> tuple[float, str]:
        """Fuse a following Mul/Div by a scalar constant (e.g. attention's 1/√d) into the
        producer's requantization multiplier: returns (factor, final output name)."""
        nxt = self.sole_consumer(fout)
        if nxt is None or nxt.op not in ("Mul", "Div") or not self.may_fuse_across(fout):
            return 1.0, fout
        other = nxt.inputs[1] if nxt.inputs[0] == fout else nxt.inputs[0]
        c = const_value(self.fg, other)
        if c is None or c.size != 1 or (nxt.op == "Div" and other == nxt.inputs[0]):
            return 1.0, fout
        c = float(np.ravel(c)[0])
        if c == 0.0:
            return 1.0, fout
        self.done.add(id(nxt))
        return (c if nxt.op == "Mul" else 1.0 / c), nxt.outputs[0]

    def clip_bounds(self, node: Node) -> tuple[float | None, float | None]:
        lo = node.attrs.get("min")
        hi = node.attrs.get("max")
        if len(node.inputs) > 1 and node.inputs[1]:
            lo = float(self.const(node.inputs[1], "Clip with run-time bounds").ravel()[0])
        if len(node.inputs) > 2 and node.inputs[2]:
            hi = float(self.const(node.inputs[2], "Clip with run-time bounds").ravel()[0])
        return lo, hi

    # -- driver ---------------------------------------------------------------------------
    def run(self) -> Graph:
        fg, g = self.fg, self.g
        check_lowerable(fg)
        for x in fg.inputs:
            t = fg.tensor(x)
            if t.dtype != "float32":  # integer inputs (token ids, indices) pass through
                g.add_tensor(Tensor(x, t.dtype, t.shape))
                self.int_name[x] = x
                continue
            qp, dt = self.desired(x)
            g.add_tensor(Tensor(x, "float32", t.shape))
            qn = g.unique_name(x + "_q")
            g.add_tensor(Tensor(qn, dt, t.shape, qp))
            g.add_node("QuantizeLinear", [x], [qn], name=f"quantize_{x}",
                       scale=float(qp.scale), zero_point=int(qp.zero_point), dtype=dt)
            self.int_name[x], self.actual[x] = qn, (qp, dt)
        g.inputs = list(fg.inputs)
        for node in fg.topological_order():
            if id(node) in self.done:
                continue
            self.done.add(id(node))
            LOWERINGS[node.op](self, node)
        qouts = {}
        for y in fg.outputs:
            name, qp, dt = self.input(y)
            g.add_tensor(Tensor(y, "float32", self.shape(y)))
            g.add_node("DequantizeLinear", [name], [y], name=f"dequantize_{y}",
                       scale=float(qp.scale), zero_point=int(qp.zero_point))
            qouts[y] = name
        g.outputs = list(fg.outputs)
        g.metadata["quantized_outputs"] = qouts
        g.validate()
        return g


# -- per-op lowerings -------------------------------------------------------------------------

def _conv_pads(L: Lowering, node: Node, k: list[int], strides: list[int], dil: list[int]) -> list[int]:
    nd = len(k)
    auto = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("NOTSET", ""):
        return _ints(node.attrs.get("pads", [0] * 2 * nd))
    if auto == "VALID":
        return [0] * 2 * nd
    shape = L.shape(node.inputs[0])
    if shape is None:
        raise GraphError(f"{node.name}: auto_pad={auto} needs the input shape")
    begin, end = [], []
    for i in range(nd):
        n_in = shape[2 + i]
        out = -(-n_in // strides[i])
        total = max(0, (out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - n_in)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _requant_attrs(s_in_w: np.ndarray, out: Quant, act) -> dict:
    """Per-channel (or scalar) ``M = s_in·s_w / s_out`` → m0/shift, plus the output clamp."""
    qp, dt = out
    m = np.asarray(s_in_w, np.float64) / float(qp.scale)
    m0, shift = quantize_multiplier_array(m)
    amin, amax = clamp_range(qp, dt, act)
    return {"m0": m0, "shift": shift, "out_zp": int(qp.zero_point), "act_min": amin, "act_max": amax,
                "dtype": dt}


def _weights_and_bias(L: Lowering, wname: str, bias: np.ndarray | None, s_x: float,
                      axis: int = 0) -> tuple[str, str, np.ndarray]:
    w = L.const(wname, "weights")
    wq, wqp = quantize_weight(w, L.plan.weights.get(wname), L.plan.per_channel, axis)
    n_out = w.shape[axis]
    s_w = np.broadcast_to(wqp.scale, (n_out,)).astype(np.float64)
    wi = L.add_int_const(wname + "_q", wq, wqp)
    s_b = s_x * s_w
    b = np.zeros(n_out) if bias is None else np.broadcast_to(np.asarray(bias, np.float64).ravel(), (n_out,))
    bq = np.clip(np.round(b / s_b), INT32_MIN, INT32_MAX).astype(np.int32)
    bqp = QuantParams(s_b.astype(np.float32), np.zeros(n_out, np.int32), 0)
    bi = L.add_int_const(wname + "_bias_q", bq, bqp)
    return wi, bi, s_b


def lower_conv(L: Lowering, node: Node) -> None:
    x, qx, _dx = L.input(node.inputs[0])
    w = L.const(node.inputs[1], "Conv with run-time weights")
    bias = L.const(node.inputs[2], "Conv bias") if len(node.inputs) > 2 and node.inputs[2] else None
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    wi, bi, s_b = _weights_and_bias(L, node.inputs[1], bias, float(qx.scale))
    nd = w.ndim - 2
    k = list(w.shape[2:])
    strides = _ints(node.attrs.get("strides", [1] * nd), nd)
    dil = _ints(node.attrs.get("dilations", [1] * nd), nd)
    pads = _conv_pads(L, node, k, strides, dil)
    group = int(node.attrs.get("group", 1))
    attrs = dict(group=group, x_zp=int(qx.zero_point), **_requant_attrs(s_b, out, act))
    if nd == 1:
        L.emit("QConv1d", [x, wi, bi], fout, out, stride=strides[0], pads=pads,
               dilation=dil[0], **attrs)
    elif nd == 2:
        c_in = w.shape[1] * group
        op = "QDepthwiseConv2d" if group > 1 and group == c_in and w.shape[1] == 1 else "QConv2d"
        L.emit(op, [x, wi, bi], fout, out, strides=strides, pads=pads, dilations=dil, **attrs)
    else:
        raise UnsupportedOpError([f"Conv{nd}d"], "integer lowering")


def lower_batchnorm(L: Lowering, node: Node) -> None:
    """A BatchNormalization that could not fold into a Conv is a per-channel affine
    ``y = k·x + (β − μ·k)``, ``k = γ/√(σ² + ε)``: a 1×1 depthwise convolution whose
    per-channel int8 weight is exactly ±127 steps of its own scale."""
    x, qx, _dx = L.input(node.inputs[0])
    gamma, beta, mean, var = (np.asarray(L.const(i, "BatchNormalization statistics"),
                                         np.float64).ravel() for i in node.inputs[1:5])
    shape = L.shape(node.inputs[0])
    if shape is None or len(shape) != 4:
        raise UnsupportedOpError(["BatchNormalization on a non-4-D tensor"], "integer lowering")
    k = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    c = k.size
    wname = L.g.unique_name(node.name + "_bn_scale")
    L.fg.add_constant(wname, k.reshape(c, 1, 1, 1).astype(np.float32))
    m = np.abs(k)
    L.plan.weights[wname] = QuantParams(np.where(m > 0, m / 127.0, 1.0).astype(np.float32),
                                        np.zeros(c, np.int32), 0)
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    wi, bi, s_b = _weights_and_bias(L, wname, beta - mean * k, float(qx.scale))
    L.emit("QDepthwiseConv2d", [x, wi, bi], fout, out, strides=[1, 1], pads=[0, 0, 0, 0],
           dilations=[1, 1], group=c, x_zp=int(qx.zero_point), **_requant_attrs(s_b, out, act))


def _fully_connected(L: Lowering, x_name: str, w_nk: np.ndarray, bias, wname: str,
                     fout_start: str) -> None:
    x, qx, _dx = L.input(x_name)
    factor, fout = L.take_scale(fout_start)
    act, fout = L.take_activation(fout)
    out = L.desired(fout)
    key = L.g.unique_name(wname + "_nk")
    L.fg.add_constant(key, np.ascontiguousarray(w_nk, np.float32))  # FC layout [N, K]
    if wname in L.plan.weights:
        L.plan.weights[key] = L.plan.weights[wname]
    wi, bi, s_b = _weights_and_bias(L, key, bias, float(qx.scale))
    L.emit("QFullyConnected", [x, wi, bi], fout, out, x_zp=int(qx.zero_point),
           **_requant_attrs(s_b * factor, out, act))


def lower_gemm(L: Lowering, node: Node) -> None:
    if int(node.attrs.get("transA", 0)):
        raise UnsupportedOpError(["Gemm(transA=1)"], "integer lowering")
    b = np.asarray(L.const(node.inputs[1], "Gemm with run-time weights"), np.float64)
    w = b if int(node.attrs.get("transB", 0)) else b.T  # [N, K]
    w = w * float(node.attrs.get("alpha", 1.0))
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c = np.asarray(L.const(node.inputs[2], "Gemm bias"), np.float64) * float(node.attrs.get("beta", 1.0))
        if c.size not in (1, w.shape[0]):
            raise UnsupportedOpError(["Gemm with a 2-D bias"], "integer lowering")
        bias = c
    if L.plan.weights.get(node.inputs[1]) is not None and not int(node.attrs.get("transB", 0)):
        wqp = L.plan.weights[node.inputs[1]]
        if wqp.per_axis:  # QDQ weights quantized along axis 1 of B[K, N] are per N
            L.plan.weights[node.inputs[1]] = QuantParams(wqp.scale, wqp.zero_point, 0)
    _fully_connected(L, node.inputs[0], w, bias, node.inputs[1], node.outputs[0])


def lower_matmul(L: Lowering, node: Node) -> None:
    a, b = node.inputs
    if const_value(L.fg, a) is not None:
        raise UnsupportedOpError(["MatMul with a constant first operand"], "integer lowering")
    bv = const_value(L.fg, b)
    if bv is not None:
        if bv.ndim != 2:
            raise UnsupportedOpError(["MatMul with batched constant weights"], "integer lowering")
        fout, bias = node.outputs[0], None
        nxt = L.sole_consumer(fout)
        if nxt is not None and nxt.op == "Add" and L.may_fuse_across(fout):
            other = nxt.inputs[1] if nxt.inputs[0] == fout else nxt.inputs[0]
            c = const_value(L.fg, other)
            if c is not None and c.size in (1, bv.shape[1]) and c.ndim <= 1 + (c.shape[0:1] == (1,)):
                bias, fout = c, nxt.outputs[0]
                L.done.add(id(nxt))
        if b in L.plan.weights and L.plan.weights[b].per_axis:
            wqp = L.plan.weights[b]
            L.plan.weights[b] = QuantParams(wqp.scale, wqp.zero_point, 0)
        _fully_connected(L, a, np.asarray(bv).T, bias, b, fout)
        return
    xa, qa, _da = L.input(a)
    xb, qb, _db = L.input(b)
    factor, fout = L.take_scale(node.outputs[0])
    act, fout = L.take_activation(fout)
    out = L.desired(fout)
    L.emit("QMatMul", [xa, xb], fout, out, a_zp=int(qa.zero_point), b_zp=int(qb.zero_point),
           **_scalar(_requant_attrs(float(qa.scale) * float(qb.scale) * factor, out, act)))


def _scalar(attrs: dict) -> dict:
    attrs["m0"], attrs["shift"] = int(np.ravel(attrs["m0"])[0]), int(np.ravel(attrs["shift"])[0])
    return attrs


def lower_add(L: Lowering, node: Node, sign: int = 1) -> None:
    xa, qa, da = L.operand(node.inputs[0])
    xb, qb, db = L.operand(node.inputs[1])
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    left_shift = 20 if da == db == "int8" else 15  # TFLite: 20 for int8, 15 for int16
    twice_max = 2.0 * max(float(qa.scale), float(qb.scale))
    a_m0, a_shift = quantize_multiplier(float(qa.scale) / twice_max)
    b_m0, b_shift = quantize_multiplier(sign * float(qb.scale) / twice_max)
    o_m0, o_shift = quantize_multiplier(twice_max / ((1 << left_shift) * float(out[0].scale)))
    amin, amax = clamp_range(out[0], out[1], act)
    L.emit("QAdd", [xa, xb], fout, out, a_zp=int(qa.zero_point), b_zp=int(qb.zero_point),
           left_shift=left_shift, a_m0=a_m0, a_shift=a_shift, b_m0=b_m0, b_shift=b_shift,
           out_m0=o_m0, out_shift=o_shift, out_zp=int(out[0].zero_point), act_min=amin,
           act_max=amax, dtype=out[1])


def lower_sub(L: Lowering, node: Node) -> None:
    lower_add(L, node, sign=-1)


def lower_mul(L: Lowering, node: Node, divide: bool = False) -> None:
    xa, qa, _da = L.operand(node.inputs[0], symmetric_const=True)
    if divide:
        c = np.asarray(L.const(node.inputs[1], "Div by a run-time tensor"), np.float64)
        recip = node.inputs[1] + "_reciprocal"
        L.fg.add_constant(recip, (1.0 / c).astype(np.float32))
        xb, qb, _db = L.operand(recip, symmetric_const=True)
    else:
        xb, qb, _db = L.operand(node.inputs[1], symmetric_const=True)
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    L.emit("QMul", [xa, xb], fout, out, a_zp=int(qa.zero_point), b_zp=int(qb.zero_point),
           **_scalar(_requant_attrs(float(qa.scale) * float(qb.scale), out, act)))


def lower_div(L: Lowering, node: Node) -> None:
    lower_mul(L, node, divide=True)


def lower_clamp(L: Lowering, node: Node) -> None:
    x, qx, dx = L.input(node.inputs[0])
    lo, hi = (0.0, None) if node.op == "Relu" else L.clip_bounds(node)
    amin, amax = clamp_range(qx, dx, (lo, hi))
    L.emit("QClamp", [x], node.outputs[0], (qx, dx), min=amin, max=amax)


def _pool_common(node: Node) -> tuple[list[int], list[int], list[int]]:
    k = _ints(node.attrs["kernel_shape"])
    nd = len(k)
    if int(node.attrs.get("ceil_mode", 0)):
        raise UnsupportedOpError([f"{node.op}(ceil_mode=1)"], "integer lowering")
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", b"NOTSET", "", "VALID", b"VALID"):
        raise UnsupportedOpError([f"{node.op}(auto_pad={auto})"], "integer lowering")
    return k, _ints(node.attrs.get("strides", [1] * nd), nd), _ints(node.attrs.get("pads", [0] * 2 * nd))


def lower_maxpool(L: Lowering, node: Node) -> None:
    k, s, p = _pool_common(node)
    if len(k) != 2:
        raise UnsupportedOpError([f"MaxPool{len(k)}d"], "integer lowering")
    d = _ints(node.attrs.get("dilations", [1, 1]), 2)
    x, _, _ = L.input(node.inputs[0])
    L.emit_same(Node(node.op, [node.inputs[0]], node.outputs[:1], {}, node.name), "QMaxPool2d",
                [x], kernel=k, strides=s, pads=p, dilations=d)


def lower_avgpool(L: Lowering, node: Node) -> None:
    k, s, p = _pool_common(node)
    if len(k) != 2:
        raise UnsupportedOpError([f"AveragePool{len(k)}d"], "integer lowering")
    x, _, _ = L.input(node.inputs[0])
    L.emit_same(node, "QAvgPool2d", [x], kernel=k, strides=s, pads=p,
                count_include_pad=int(node.attrs.get("count_include_pad", 0)))


def lower_global_avgpool(L: Lowering, node: Node) -> None:
    x, qx, _dx = L.input(node.inputs[0])
    shape = L.shape(node.inputs[0])
    if shape is None:
        raise GraphError(f"{node.name}: GlobalAveragePool needs the input shape")
    count = int(np.prod(shape[2:]))
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    L.emit("QGlobalAvgPool", [x], fout, out, x_zp=int(qx.zero_point),
           **_scalar(_requant_attrs(float(qx.scale) / count, out, act)))


def shiftmax_input_steps(row: int, n: int) -> int:
    """Best number of input steps per unit of log2 for Shiftmax over rows of length ``row``.

    Two errors trade off: the input grid (a step of ``1/a`` in log2 units, relative error
    ``≈ ln2/(2a)``) and the integer normaliser ``floor((2^31 − 1)/Σe)`` with ``Σe`` up to
    ``row·a·2^n`` (relative error ``≈ row·a·2^n/2^31``). Their sum is least at
    ``a = √(ln2/2 · 2^31/(row·2^n))``.
    """
    return max(2, round(math.sqrt(math.log(2) / 2 * 2.0**31 / (row * 2.0**n))))


def lower_softmax(L: Lowering, node: Node) -> None:
    """Softmax → Shiftmax. A fine input grid (e.g. int16 scores) is first requantized to the
    grid :func:`shiftmax_input_steps` picks, so the normaliser keeps its precision."""
    x, qx, dx = L.input(node.inputs[0])
    out = L.desired(node.outputs[0])
    axis = int(node.attrs.get("axis", -1))
    shape = L.shape(node.inputs[0])
    x0 = min(-1, math.floor(-1.0 / float(qx.scale)))
    if shape is not None and shape[axis] > 0:
        a = shiftmax_input_steps(int(shape[axis]), SHIFTMAX_N)
        if -x0 > 1.5 * a:
            want = (QuantParams(np.float32(1.0 / a), np.int32(0)), "int16" if dx == "int8" else dx)
            x = L.input_as(node.inputs[0], want)
            x0 = min(-1, math.floor(-1.0 / float(want[0].scale)))
    natural = fixed_output_params("Softmax")
    attrs = {"axis": axis, "x0": x0, "n": shift_exp_n(x0, SHIFTMAX_N), "out_bits": SHIFTMAX_OUT_BITS}
    if _same(out, natural):
        L.emit("Shiftmax", [x], node.outputs[0], out, **attrs)
        return
    # another grid was asked for (e.g. a QDQ model's): Shiftmax's own grid, then Requantize
    tmp = L.g.unique_name(node.outputs[0] + "_shiftmax")
    L.g.add_tensor(Tensor(tmp, natural[1], L.shape(node.outputs[0]), natural[0]))
    L.g.add_node("Shiftmax", [x], [tmp], name=f"Shiftmax_{tmp}", **attrs)
    m0, shift = quantize_multiplier(float(natural[0].scale) / float(out[0].scale))
    qmin, qmax = qrange(out[1])
    L.emit("Requantize", [tmp], node.outputs[0], out, in_zp=0, m0=m0, shift=shift,
           out_zp=int(out[0].zero_point), act_min=qmin, act_max=qmax, dtype=out[1])


def lower_layernorm(L: Lowering, node: Node) -> None:
    x, _qx, _dx = L.input(node.inputs[0])
    axis = int(node.attrs.get("axis", -1))
    shape = L.shape(node.inputs[0])
    if axis not in (-1, len(shape or ()) - 1):
        raise UnsupportedOpError(["LayerNormalization over several axes"], "integer lowering")
    gamma = np.asarray(L.const(node.inputs[1], "LayerNormalization scale"), np.float64).ravel()
    beta = (np.asarray(L.const(node.inputs[2], "LayerNormalization bias"), np.float64).ravel()
            if len(node.inputs) > 2 and node.inputs[2] else np.zeros_like(gamma))
    c = gamma.size
    out = L.desired(node.outputs[0])
    s_out = float(out[0].scale)
    # I-LayerNorm's yn has scale √C/2^30: γ folds into M_c = γ_c·√C/(2^30·S_out) and β is
    # added in yn's units, beta_q_c = round(β_c·2^30/(γ_c·√C)) (sdk.kernels.transformer).
    g = np.where(np.abs(gamma) < 1e-12, 1e-12, gamma)
    m0, shift = quantize_multiplier_array(g * math.sqrt(c) / 2.0**30 / s_out)
    beta_q = np.clip(np.round(beta * 2.0**30 / (g * math.sqrt(c))), INT32_MIN,
                     INT32_MAX).astype(np.int32)
    bi = L.add_int_const(node.inputs[0] + "_ln_beta_q", beta_q)
    qmin, qmax = qrange(out[1])
    L.emit("ILayerNorm", [x, bi], node.outputs[0], out, axis=-1, iters=ILAYERNORM_ITERS,
           m0=m0, shift=shift, out_zp=int(out[0].zero_point), act_min=qmin, act_max=qmax,
           dtype=out[1])


def shift_exp_n(x0: int, n_max: int) -> int:
    """Largest ``n ≤ n_max`` with ``−x0·2^n ≤ 2^30`` (the shift-exp kernels' overflow bound)."""
    return max(0, min(n_max, math.floor(math.log2(2.0**30 / -x0))))


def lower_gelu(L: Lowering, node: Node) -> None:
    """Gelu → ShiftGELU, ``x·σ(1.702·x)`` with σ as ``e^(x−m)/(e^(x−m) + e^(−m))``.

    * λ clip at ±3 on the sigmoid's argument (``x·σ(1.702·3)`` differs from GELU by < 0.02·|x|
      beyond it) bounds the row maximum ``m`` to λ, so both exponents stay above
      ``−2·λ·1.702·log2 e ≈ −14.7`` in log2 units: ``n = 15`` never clamps them.
    * The per-element normaliser ``floor((2^31 − 1)/(e + e_m))`` with ``e + e_m`` up to
      ``2·(−x0)·2^n`` keeps at least ``2^(31 − SHIFTGELU_NORM_BITS)`` levels when
      ``−x0 ≤ 2^SHIFTGELU_NORM_BITS/2^(n+1)``; a finer input grid (e.g. int16) is first
      requantized to that bound.
    * σ has ``SHIFTGELU_SIG_BITS`` bits (I-ViT uses 8; 12 matches the normaliser's precision).
    """
    name, qx, dx = L.input(node.inputs[0])
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    n = math.ceil(2 * GELU_LAMBDA * 1.702 * math.log2(math.e))
    max_steps = 2.0**SHIFTGELU_NORM_BITS / 2.0 ** (n + 1)
    s = float(qx.scale)
    if 1.0 / (1.702 * s) > max_steps:
        qmin, qmax = qrange(dx)
        reach = s * max(int(qx.zero_point) - qmin, qmax - int(qx.zero_point))
        want = (QuantParams(np.float32(max(1.0 / (1.702 * max_steps), reach / 32767)),
                            np.int32(0)), "int16")
        name, qx = L.input_as(node.inputs[0], want), want[0]
        s = float(qx.scale)
    x0 = min(-1, math.floor(-1.0 / (1.702 * s)))
    lam = max(1, round(GELU_LAMBDA / s))
    attrs = _scalar(_requant_attrs(s * 2.0 ** -(SHIFTGELU_SIG_BITS - 1), out, act))
    L.emit("ShiftGELU", [name], fout, out, axis=-1, x0=x0, n=n,
           sig_bits=SHIFTGELU_SIG_BITS, clip_min=-lam, clip_max=lam,
           x_zp=int(qx.zero_point), **attrs)


LUT_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Softplus",
           "Exp", "Erf", "Neg", "Abs")


def _real_range(qp: QuantParams, dtype: str) -> tuple[float, float]:
    qmin, qmax = qrange(dtype)
    s, z = float(qp.scale), int(qp.zero_point)
    return s * (qmin - z), s * (qmax - z)


def lower_lut(L: Lowering, node: Node) -> None:
    """A unary elementwise op → QLut: ``table[q + 128] = quantize_out(f(s_in·(q − z_in)))``,
    ``f`` evaluated by the op's own float reference kernel (with its attributes) at compile
    time. Input and output are int8 (a wider input is requantized first)."""
    from sdk.backends.reference.registry import load_all

    name, qx, dx = L.input(node.inputs[0])
    if dx != "int8":
        want = (params_for_range(*_real_range(qx, dx), "int8", False), "int8")
        name, qx = L.input_as(node.inputs[0], want), want[0]
    out = L.desired(node.outputs[0])
    if out[1] != "int8":
        out = (params_for_range(*_real_range(*out), "int8", False), "int8")
    q = np.arange(-128, 128, dtype=np.float64)
    real = (float(qx.scale) * (q - int(qx.zero_point))).astype(np.float32)
    y = np.asarray(load_all()[node.op]([real], node.attrs, False)[0], np.float64)
    y = np.nan_to_num(y, nan=0.0, posinf=1e30, neginf=-1e30)
    table = np.clip(np.round(y / float(out[0].scale)) + int(out[0].zero_point), -128, 127)
    ti = L.add_int_const(node.outputs[0] + "_lut", table.astype(np.int8))
    L.emit("QLut", [name, ti], node.outputs[0], out)


def lower_resize(L: Lowering, node: Node) -> None:
    x, _, _ = L.input(node.inputs[0])
    out_shape = L.shape(node.outputs[0])
    in_shape = L.shape(node.inputs[0])
    if out_shape is None or in_shape is None:
        raise GraphError(f"{node.name}: Resize needs known input and output shapes")
    L.emit_same(node, "ResizeNearest", [x], sizes=list(out_shape),
                scales=[o / i for o, i in zip(out_shape, in_shape)])


def lower_layout(L: Lowering, node: Node) -> None:
    L.emit_same(node)


def lower_dropout(L: Lowering, node: Node) -> None:
    """Inference-mode Dropout is the identity (its optional mask output is not supported)."""
    if len(node.outputs) > 1 and node.outputs[1] and L.consumers.get(node.outputs[1]):
        raise UnsupportedOpError(["Dropout mask output"], "integer lowering")
    x, _, _ = L.input(node.inputs[0])
    L.emit_same(Node("Identity", [node.inputs[0]], node.outputs[:1], {}, node.name),
                "Identity", [x])


def lower_gather(L: Lowering, node: Node) -> None:
    data, idx = node.inputs[:2]
    if const_value(L.fg, data) is None:
        L.emit_same(node)
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
        L.emit_same(node)
        return
    if len(node.inputs) > 2 and node.inputs[2]:
        v = L.const(node.inputs[2], "Pad value")
        if float(np.ravel(v)[0]) != 0.0:
            raise UnsupportedOpError(["Pad with a non-zero value"], "integer lowering")
    zp = L.add_int_const(node.outputs[0] + "_pad_zp", np.array(int(qx.zero_point), dx))
    ins = [x, L.layout_arg(node.inputs[1]), zp] + [L.layout_arg(i) for i in node.inputs[3:]]
    L.emit_same(node, "Pad", ins, **node.attrs)


LOWERINGS: dict[str, Callable[[Lowering, Node], None]] = {
    "Conv": lower_conv, "BatchNormalization": lower_batchnorm, "Gemm": lower_gemm, "MatMul": lower_matmul,
    "Add": lower_add, "Sub": lower_sub, "Mul": lower_mul, "Div": lower_div,
    "Relu": lower_clamp, "Clip": lower_clamp,
    "MaxPool": lower_maxpool, "AveragePool": lower_avgpool,
    "GlobalAveragePool": lower_global_avgpool,
    "Softmax": lower_softmax, "LayerNormalization": lower_layernorm, "Gelu": lower_gelu,
    "Resize": lower_resize, **{op: lower_lut for op in LUT_OPS},
    "Gather": lower_gather, "Concat": lower_concat, "Pad": lower_pad, "Dropout": lower_dropout,
    **{op: lower_layout for op in ("Reshape", "Flatten", "Transpose", "Slice", "Squeeze",
                                   "Unsqueeze", "Identity", "Split")},
}


def check_lowerable(float_graph: Graph) -> None:
    """Raise UnsupportedOpError naming every op the integer lowering lacks."""
    missing = [n.op for n in float_graph.nodes if n.op not in LOWERINGS]
    if missing:
        raise UnsupportedOpError(missing, "integer lowering",
                                 "the integer graph supports the ops listed in docs/ops.md")


def lower(float_graph: Graph, plan: QuantPlan) -> Graph:
    """Lower a prepared float graph (see :func:`sdk.quant.fuse.prepare_float_graph`)."""
    return Lowering(float_graph.copy(), plan).run()
