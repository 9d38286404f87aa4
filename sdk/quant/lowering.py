"""State and shared helpers of the integer lowering (see :mod:`sdk.quant.lower`).

A :class:`Lowering` walks the prepared float graph once; per-op functions
(``sdk/quant/lower_*.py``) read activations through it (:meth:`Lowering.input`,
:meth:`Lowering.input_as`), look ahead for fusions (:meth:`Lowering.take_activation`,
:meth:`Lowering.take_scale`) and write integer nodes (:meth:`Lowering.emit`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.graph import Graph, Node, QuantParams, Tensor, qrange
from sdk.kernels.requant import quantize_multiplier, quantize_multiplier_array
from sdk.ops.schema import opdef
from sdk.quant.fuse import const_value
from sdk.quant.observers import params_for_range
from sdk.quant.plan import QuantPlan

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Quant = tuple[QuantParams, str]


def ints_attr(v, n: int | None = None) -> list[int]:
    out = [int(x) for x in np.ravel(v)]
    return out * n if n is not None and len(out) == 1 else out


def same_grid(a: Quant, b: Quant) -> bool:
    return a[1] == b[1] and a[0] == b[0]


def quantize_weight(w: np.ndarray, qp: QuantParams | None, per_channel: bool,
                    axis: int = 0) -> tuple[np.ndarray, QuantParams]:
    """Symmetric int8 weights in ``[-127, 127]``: ``s_c = max|W_c|/127`` per ``axis`` slice,
    or on the given grid ``qp`` (a QDQ model's), which must be symmetric."""
    w = np.asarray(w, np.float32)
    if qp is not None and np.any(qp.zero_point != 0):
        raise UnsupportedOpError(["weights with a non-zero zero point"], "integer lowering",
                                 "the integer kernels take symmetric int8 weights: quantize with "
                                 "weight_type=QInt8 (symmetric)")
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
        if same_grid((qp, dt), want):
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
        d = opdef(op)
        if d is not None and d.strict:
            d.prepare(attrs)  # the schema checks what the lowering writes, as kernels will read it
        name = self.out_name(fout)
        self.g.add_tensor(Tensor(name, quant[1], self.shape(fout), quant[0]))
        self.actual[fout] = quant
        return self.g.add_node(op, inputs, [name], name=f"{op}_{fout}", **attrs)

    def emitsame_grid(self, node: Node, op: str | None = None, inputs: list[str] | None = None,
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
    def run(self, lowerings: dict[str, OpLowering]) -> Graph:
        """Lower every node with ``lowerings[node.op]``; boundary Q/DQ at inputs/outputs."""
        fg, g = self.fg, self.g
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
            lowerings[node.op](self, node)
        qouts = {}
        state_of = {o: i for i, o in self.plan.state_pairs.items()}
        for y in fg.outputs:
            if y in state_of:  # a state output lands on its input's grid: no hop Requantize
                self.int_name[y] = self.input_as(y, self.actual[state_of[y]])
                self.actual[y] = self.actual[state_of[y]]
            name, qp, dt = self.input(y)
            g.add_tensor(Tensor(y, "float32", self.shape(y)))
            g.add_node("DequantizeLinear", [name], [y], name=f"dequantize_{y}",
                       scale=float(qp.scale), zero_point=int(qp.zero_point))
            qouts[y] = name
        g.outputs = list(fg.outputs)
        g.metadata["quantized_outputs"] = qouts
        if self.plan.state_pairs:
            g.metadata["state_pairs"] = dict(self.plan.state_pairs)
        g.validate()
        return g


OpLowering = Callable[[Lowering, Node], None]


def requant_attrs(s_in_w: np.ndarray, out: Quant, act) -> dict:
    """Per-channel (or scalar) ``M = s_in·s_w / s_out`` → m0/shift, plus the output clamp."""
    qp, dt = out
    m = np.asarray(s_in_w, np.float64) / float(qp.scale)
    m0, shift = quantize_multiplier_array(m)
    amin, amax = clamp_range(qp, dt, act)
    return {"m0": m0, "shift": shift, "out_zp": int(qp.zero_point), "act_min": amin, "act_max": amax,
                "dtype": dt}


def per_tensor(attrs: dict) -> dict:
    attrs["m0"], attrs["shift"] = int(np.ravel(attrs["m0"])[0]), int(np.ravel(attrs["shift"])[0])
    return attrs
