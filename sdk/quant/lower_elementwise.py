"""Lowerings of element-wise ops: Add/Sub (QAdd), Mul/Div (QMul), Relu/Clip (QClamp) and
unary functions as 256-entry lookup tables (QLut)."""

from __future__ import annotations

import numpy as np

from sdk.graph import Node, QuantParams, qrange
from sdk.kernels.elementwise import add_left_shift, add_params
from sdk.quant.lowering import (
    Lowering,
    OpLowering,
    clamp_range,
    per_tensor,
    requant_attrs,
)
from sdk.quant.observers import params_for_range


def lower_add(L: Lowering, node: Node, sign: int = 1) -> None:
    xa, qa, da = L.operand(node.inputs[0])
    xb, qb, db = L.operand(node.inputs[1])
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    params = add_params(float(qa.scale), float(qb.scale), float(out[0].scale),
                        add_left_shift(da, db), sign)
    amin, amax = clamp_range(out[0], out[1], act)
    L.emit("QAdd", [xa, xb], fout, out, a_zp=int(qa.zero_point), b_zp=int(qb.zero_point),
           **params, out_zp=int(out[0].zero_point), act_min=amin, act_max=amax, dtype=out[1])


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
           **per_tensor(requant_attrs(float(qa.scale) * float(qb.scale), out, act)))


def lower_div(L: Lowering, node: Node) -> None:
    lower_mul(L, node, divide=True)


def lower_clamp(L: Lowering, node: Node) -> None:
    x, qx, dx = L.input(node.inputs[0])
    lo, hi = (0.0, None) if node.op == "Relu" else L.clip_bounds(node)
    amin, amax = clamp_range(qx, dx, (lo, hi))
    L.emit("QClamp", [x], node.outputs[0], (qx, dx), min=amin, max=amax)


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
    from sdk.ops.registry import load_all

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


LOWERINGS: dict[str, OpLowering] = {
    "Add": lower_add, "Sub": lower_sub, "Mul": lower_mul, "Div": lower_div,
    "Relu": lower_clamp, "Clip": lower_clamp, **{op: lower_lut for op in LUT_OPS},
}
