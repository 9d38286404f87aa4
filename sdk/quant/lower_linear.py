"""Lowerings of the weighted ops: Conv (1-D, 2-D, depthwise), BatchNormalization,
Gemm and MatMul (constant weights → QFullyConnected, two activations → QMatMul)."""

from __future__ import annotations

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.graph import Node, QuantParams
from sdk.quant.fuse import const_value
from sdk.quant.lowering import (
    INT32_MAX,
    INT32_MIN,
    Lowering,
    OpLowering,
    ints_attr,
    per_tensor,
    qrange,
    quantize_weight,
    requant_attrs,
)


def _conv_pads(L: Lowering, node: Node, k: list[int], strides: list[int], dil: list[int]) -> list[int]:
    nd = len(k)
    auto = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("NOTSET", ""):
        return ints_attr(node.attrs.get("pads", [0] * 2 * nd))
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
    strides = ints_attr(node.attrs.get("strides", [1] * nd), nd)
    dil = ints_attr(node.attrs.get("dilations", [1] * nd), nd)
    pads = _conv_pads(L, node, k, strides, dil)
    group = int(node.attrs.get("group", 1))
    attrs = dict(group=group, x_zp=int(qx.zero_point), **requant_attrs(s_b, out, act))
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
           dilations=[1, 1], group=c, x_zp=int(qx.zero_point), **requant_attrs(s_b, out, act))


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
           **requant_attrs(s_b * factor, out, act))


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
    xa, qa, da = L.input(a)
    xb, qb, db = L.input(b)
    shape = L.shape(a)
    k = int(shape[-1]) if shape and shape[-1] is not None and int(shape[-1]) > 0 else None
    # two int16 activations (activation_bits=16: q·kᵀ): products reach 2^30, so the int32
    # sum wraps from K = 2 on. An operand whose span makes the worst-case sum pass int32 is
    # regridded to int8 over the same real range first (b, then a). Softmax probabilities
    # are exempt: a row sums to at most 2^15, so Σ p·v stays within 2^15 · 2^15.
    prob = getattr(L.producers.get(a), "op", None) == "Softmax"
    if not prob and da == db == "int16":
        for side in ("b", "a"):
            if not _may_wrap(k, qa, da, qb, db):
                break
            f, qp = (b, qb) if side == "b" else (a, qa)
            peak = max(abs(x) for x in qrange("int16"))
            want = (QuantParams(np.float32(float(qp.scale) * peak / qrange("int8")[1]),
                                np.int32(0)), "int8")
            if side == "b":
                xb, qb, db = L.input_as(f, want), want[0], "int8"
            else:
                xa, qa, da = L.input_as(f, want), want[0], "int8"
        if _may_wrap(k, qa, da, qb, db):
            raise UnsupportedOpError([f"MatMul {node.name!r}: {da} x {db} over K={k} can "
                                      "pass the int32 accumulator"], "integer lowering",
                                     "use activation_bits=8 for this model")
    factor, fout = L.take_scale(node.outputs[0])
    act, fout = L.take_activation(fout)
    out = L.desired(fout)
    L.emit("QMatMul", [xa, xb], fout, out, a_zp=int(qa.zero_point), b_zp=int(qb.zero_point),
           **per_tensor(requant_attrs(float(qa.scale) * float(qb.scale) * factor, out, act)))


def _may_wrap(k: int | None, qa: QuantParams, da: str, qb: QuantParams, db: str) -> bool:
    """Whether K products of the two operands' largest |x − zero point| can pass int32
    (K unknown: only two int16 operands count as a risk)."""
    def span(qp: QuantParams, dt: str) -> int:
        lo, hi = qrange(dt)
        z = int(qp.zero_point)
        return max(z - lo, hi - z)

    if k is None:
        return da == db == "int16"
    return k * span(qa, da) * span(qb, db) > 2**31 - 1


LOWERINGS: dict[str, OpLowering] = {
    "Conv": lower_conv, "BatchNormalization": lower_batchnorm, "Gemm": lower_gemm,
    "MatMul": lower_matmul,
}
