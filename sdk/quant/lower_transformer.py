"""Lowerings of the transformer ops to I-ViT's integer-only kernels: Softmax → Shiftmax
(with an integer additive attention mask when the fused Softmax carries one),
LayerNormalization → ILayerNorm, RMSNormalization → IRMSNorm, Gelu → ShiftGELU."""

from __future__ import annotations

import math

import numpy as np

from sdk.errors import UnsupportedOpError
from sdk.graph import Node, QuantParams, Tensor, qrange
from sdk.kernels.requant import quantize_multiplier, quantize_multiplier_array
from sdk.kernels.transformer import shift_gelu_n
from sdk.quant.lowering import (
    INT32_MAX,
    INT32_MIN,
    Lowering,
    OpLowering,
    per_tensor,
    requant_attrs,
    same_grid,
)
from sdk.quant.plan import SHIFTMAX_OUT_BITS, fixed_output_params

SHIFTMAX_N = 15
GELU_LAMBDA = 3.0
SHIFTGELU_SIG_BITS = 10
ILAYERNORM_ITERS = 10

def shift_exp_n(x0: int, n_max: int) -> int:
    """Largest ``n ≤ n_max`` with ``−x0·2^n ≤ 2^30`` (the shift-exp kernels' overflow bound)."""
    return max(0, min(n_max, math.floor(math.log2(2.0**30 / -x0))))


def shiftmax_input_steps(row: int, n: int) -> int:
    """Best number of input steps per unit of log2 for Shiftmax over rows of length ``row``.

    Two errors trade off: the input grid (a step of ``1/a`` in log2 units, relative error
    ``≈ ln2/(2a)``) and the integer normaliser ``floor((2^31 − 1)/Σe)`` with ``Σe`` up to
    ``row·a·2^n`` (relative error ``≈ row·a·2^n/2^31``). Their sum is least at
    ``a = √(ln2/2 · 2^31/(row·2^n))``.
    """
    return max(2, round(math.sqrt(math.log(2) / 2 * 2.0**31 / (row * 2.0**n))))


def _widen_exact(L: Lowering, fname: str, k: int) -> tuple[str, QuantParams, str]:
    """An int8 activation as int16 on its grid divided by the integer ``k``: ``(x − z)·k``,
    the same real values exactly (``|x − z|·k ≤ 255·k``, so ``k ≤ 128``)."""
    _, qx, _ = L.input(fname)
    want = (QuantParams(np.float32(float(qx.scale) / k), np.int32(0)), "int16")
    return L.input_as(fname, want), want[0], want[1]


def _fixed_int8_grid(L: Lowering, dx: str) -> bool:
    """A QDQ model's int8 tensor, whose grid the plan may not change (PTQ would choose int16
    for it instead): the integer kernels are given it widened exactly by
    :func:`_widen_exact`, so their own rounding steps are finer than the model's grid."""
    return dx == "int8" and not L.plan.fuse_quantized


MASK_BIAS = -(2**15)
"""The integer additive mask: a masked key gets ``−2^15`` on the int16 Shiftmax input grid
(the sum saturates at the int16 minimum), far below any kept score (docs/ops.md)."""


def _softmax_grid(L: Lowering, fname: str, axis: int, masked: bool) -> tuple[str, QuantParams, str]:
    """The Shiftmax input: the activation itself, or (fine grids, and every masked softmax,
    which needs int16 room below the scores) requantized to the grid
    :func:`shiftmax_input_steps` picks."""
    x, qx, dx = L.input(fname)
    shape = L.shape(fname)
    x0 = min(-1, math.floor(-1.0 / float(qx.scale)))
    want = None
    if shape is not None and shape[axis] > 0:
        a = shiftmax_input_steps(int(shape[axis]), SHIFTMAX_N)
        if -x0 > 1.5 * a:
            want = (QuantParams(np.float32(1.0 / a), np.int32(0)), "int16" if dx == "int8" else dx)
    if masked and want is None:
        want = (QuantParams(np.float32(qx.scale), np.int32(0)), "int16")
    if want is None:
        return x, qx, dx
    if not masked:
        return L.input_as(fname, want), want[0], want[1]
    return x, want[0], want[1]


def _masked_scores(L: Lowering, node: Node, x: str, grid: tuple[QuantParams, str]) -> str:
    """``scores + bias`` in integers: ``bias = Reshape(Gather([−2^15, 0], ids), mask_shape)``
    for the ids input and a constant ``where(keep, 0, −2^15)`` for constant keep flags, each
    added by a saturating QAdd onto ``grid`` (int16)."""
    qp, dt = grid
    fs = node.inputs[0]
    shape = L.shape(fs)
    _, qx, dx = L.input(fs)
    biases = []
    if len(node.inputs) > 1 and node.inputs[1]:
        ids = node.inputs[1]
        if ids not in L.int_name or ids in L.actual:
            raise UnsupportedOpError(["Softmax mask from a non-integer tensor"], "integer lowering",
                                     "feed the attention mask as an int64 graph input")
        table = L.add_int_const(fs + "_mask_table", np.array([MASK_BIAS, 0], np.int16), qp)
        gathered = L.g.unique_name(fs + "_mask_bias_ids")
        ids_shape = L.fg.tensor(ids).shape
        L.g.add_tensor(Tensor(gathered, "int16", ids_shape, qp))
        L.g.add_node("Gather", [table, L.int_name[ids]], [gathered], name=f"Gather_{gathered}",
                     axis=0)
        mshape = [int(d) for d in node.attrs["mask_shape"]]
        sname = L.add_int_const(fs + "_mask_shape", np.array(mshape, np.int64))
        bias = L.g.unique_name(fs + "_mask_bias")
        L.g.add_tensor(Tensor(bias, "int16", tuple(mshape), qp))
        L.g.add_node("Reshape", [gathered, sname], [bias], name=f"Reshape_{bias}")
        biases.append(bias)
    if len(node.inputs) > 2 and node.inputs[2]:
        keep = np.asarray(L.const(node.inputs[2], "Softmax keep flags")).astype(bool)
        biases.append(L.add_int_const(fs + "_mask_bias_const",
                                      np.where(keep, 0, MASK_BIAS).astype(np.int16), qp))
    cur, cq, cd = x, qx, dx
    for bias in biases:
        twice_max = 2.0 * max(float(cq.scale), float(qp.scale))
        a_m0, a_shift = quantize_multiplier(float(cq.scale) / twice_max)
        b_m0, b_shift = quantize_multiplier(float(qp.scale) / twice_max)
        o_m0, o_shift = quantize_multiplier(twice_max / ((1 << 15) * float(qp.scale)))
        qmin, qmax = qrange(dt)
        out = L.g.unique_name(fs + "_masked")
        L.g.add_tensor(Tensor(out, dt, shape, qp))
        L.g.add_node("QAdd", [cur, bias], [out], name=f"QAdd_{out}", a_zp=int(cq.zero_point),
                     b_zp=0, left_shift=15, a_m0=a_m0, a_shift=a_shift, b_m0=b_m0,
                     b_shift=b_shift, out_m0=o_m0, out_shift=o_shift, out_zp=0, act_min=qmin,
                     act_max=qmax, dtype=dt)
        cur, cq, cd = out, qp, dt
    return cur


def lower_softmax(L: Lowering, node: Node) -> None:
    """Softmax → Shiftmax. A fine input grid (e.g. int16 scores) is first requantized to the
    grid :func:`shiftmax_input_steps` picks, so the normaliser keeps its precision. A masked
    Softmax (extra inputs ids / keep, :func:`sdk.quant.fuse.fuse_attention_mask`) adds the
    integer mask bias on that grid first (:func:`_masked_scores`)."""
    axis = int(node.attrs.get("axis", -1))
    masked = len(node.inputs) > 1 and any(node.inputs[1:])
    x, qx, dx = _softmax_grid(L, node.inputs[0], axis, masked)
    shape = L.shape(node.inputs[0])
    if _fixed_int8_grid(L, dx) and shape is not None and shape[axis] > 0:
        # a coarse int8 grid (e.g. 0.23 per step): shift-exp's piecewise-linear 2^f sees
        # ~4 steps per unit; widened exactly to about shiftmax_input_steps steps per unit
        a = shiftmax_input_steps(int(shape[axis]), SHIFTMAX_N)
        k = max(1, min(128, math.floor(1.5 * a * float(qx.scale))))
        if k > 1:
            x, qx, dx = _widen_exact(L, node.inputs[0], k)
    if masked:
        x = _masked_scores(L, node, x, (qx, dx))
    out = L.desired(node.outputs[0])
    x0 = min(-1, math.floor(-1.0 / float(qx.scale)))
    natural = fixed_output_params("Softmax")
    attrs = {"axis": axis, "x0": x0, "n": shift_exp_n(x0, SHIFTMAX_N), "out_bits": SHIFTMAX_OUT_BITS}
    if same_grid(out, natural):
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


def _norm_params(L: Lowering, node: Node, what: str):
    axis = int(node.attrs.get("axis", -1))
    shape = L.shape(node.inputs[0])
    if axis not in (-1, len(shape or ()) - 1):
        raise UnsupportedOpError([f"{what} over several axes"], "integer lowering")
    gamma = np.asarray(L.const(node.inputs[1], f"{what} scale"), np.float64).ravel()
    if shape is not None and gamma.size == 1:
        gamma = np.full(int(shape[-1]), gamma[0])
    beta = (np.asarray(L.const(node.inputs[2], f"{what} bias"), np.float64).ravel()
            if len(node.inputs) > 2 and node.inputs[2] else np.zeros_like(gamma))
    return gamma, beta


def _emit_norm(L: Lowering, node: Node, op: str, x: str, gamma: np.ndarray,
               beta: np.ndarray | None) -> None:
    c = gamma.size
    out = L.desired(node.outputs[0])
    s_out = float(out[0].scale)
    # the integer norms' yn has scale √C/2^30: γ folds into M_c = γ_c·√C/(2^30·S_out) and β is
    # added in yn's units, beta_q_c = round(β_c·2^30/(γ_c·√C)) (sdk.kernels.transformer).
    g = np.where(np.abs(gamma) < 1e-12, 1e-12, gamma)
    m0, shift = quantize_multiplier_array(g * math.sqrt(c) / 2.0**30 / s_out)
    ins = [x]
    if beta is not None:
        beta_q = np.clip(np.round(beta * 2.0**30 / (g * math.sqrt(c))), INT32_MIN,
                         INT32_MAX).astype(np.int32)
        ins.append(L.add_int_const(node.inputs[0] + "_ln_beta_q", beta_q))
    qmin, qmax = qrange(out[1])
    L.emit(op, ins, node.outputs[0], out, axis=-1, iters=ILAYERNORM_ITERS,
           m0=m0, shift=shift, out_zp=int(out[0].zero_point), act_min=qmin, act_max=qmax,
           dtype=out[1])


def lower_layernorm(L: Lowering, node: Node) -> None:
    x, _qx, dx = L.input(node.inputs[0])
    if _fixed_int8_grid(L, dx):
        # ILayerNorm rounds the mean to an input step and takes an integer square root: on
        # an int8 grid both errors reach tens of output LSBs (half a step of a residual
        # stream with outlier channels); ×128 makes them negligible
        x, _qx, dx = _widen_exact(L, node.inputs[0], 128)
    gamma, beta = _norm_params(L, node, "LayerNormalization")
    _emit_norm(L, node, "ILayerNorm", x, gamma, beta)


def lower_rmsnorm(L: Lowering, node: Node) -> None:
    """RMSNormalization → IRMSNorm (ε dropped, as for ILayerNorm). IRMSNorm needs a symmetric
    input: an asymmetric grid is first requantized to int16 symmetric over the same range."""
    _x, qx, dx = L.input(node.inputs[0])
    if int(qx.zero_point) != 0:
        qmin, qmax = qrange(dx)
        reach = float(qx.scale) * max(int(qx.zero_point) - qmin, qmax - int(qx.zero_point))
        want = (QuantParams(np.float32(reach / 32767), np.int32(0)), "int16")
        x = L.input_as(node.inputs[0], want)
    else:
        x = _x
    gamma, _ = _norm_params(L, node, "RMSNormalization")
    _emit_norm(L, node, "IRMSNorm", x, gamma, None)


def lower_masked_mean(L: Lowering, node: Node) -> None:
    """MaskedMean(x [B, T, D], ids [B, T]) in integers (docs/ops.md):
    ``m = Reshape(Gather([0, 1] int8, ids), [B, 1, T])``;
    ``sum = QMatMul(m, x)`` and ``count = QFullyConnected(m, ones[1, T])``, both exact int32
    (``M = 1``); ``r = Gather(R, count)`` with ``R[c] = round(2^k/c)``, ``R[0] = 0``;
    ``out = QMul(sum, r)`` with ``M = S_x/(2^k·S_out)``; ``k`` keeps ``|sum·r| < 2^31``."""
    x, qx, dx = L.input(node.inputs[0])
    ids = node.inputs[1]
    if ids not in L.int_name or ids in L.actual:
        raise UnsupportedOpError(["MaskedMean mask from a non-integer tensor"], "integer lowering")
    b, t = (int(d) for d in L.fg.tensor(ids).shape)
    d = int(L.shape(node.inputs[0])[-1])
    one = QuantParams(np.float32(1.0), np.int32(0))
    base = node.outputs[0]
    table = L.add_int_const(base + "_mask01", np.array([0, 1], np.int8), one)
    flat = L.g.unique_name(base + "_mask")
    L.g.add_tensor(Tensor(flat, "int8", (b, t), one))
    L.g.add_node("Gather", [table, L.int_name[ids]], [flat], name=f"Gather_{flat}", axis=0)
    m3 = L.g.unique_name(base + "_mask3")
    L.g.add_tensor(Tensor(m3, "int8", (b, 1, t), one))
    L.g.add_node("Reshape", [flat, L.add_int_const(base + "_mask3_shape",
                                                   np.array([b, 1, t], np.int64))], [m3],
                 name=f"Reshape_{m3}")
    m0, shift = quantize_multiplier(1.0)
    lo, hi = qrange("int32")
    total = L.g.unique_name(base + "_sum")
    L.g.add_tensor(Tensor(total, "int32", (b, 1, d), qx))
    L.g.add_node("QMatMul", [m3, x], [total], name=f"QMatMul_{total}", a_zp=0,
                 b_zp=int(qx.zero_point), m0=m0, shift=shift, out_zp=0, act_min=lo, act_max=hi,
                 dtype="int32")
    ones = L.add_int_const(base + "_ones", np.ones((1, t), np.int8), one)
    count = L.g.unique_name(base + "_count")
    L.g.add_tensor(Tensor(count, "int32", (b, 1, 1), one))
    L.g.add_node("QFullyConnected", [m3, ones, ""], [count], name=f"QFullyConnected_{count}",
                 x_zp=0, m0=[m0], shift=[shift], out_zp=0, act_min=lo, act_max=hi, dtype="int32")
    qmin, qmax = qrange(dx)
    k = max(1, min(30, math.floor(math.log2((2**31 - 1) / (t * (qmax - qmin))))))
    recip = np.zeros(t + 1, np.int32)
    recip[1:] = np.round(2.0**k / np.arange(1, t + 1)).astype(np.int32)
    rq = QuantParams(np.float32(2.0**-k), np.int32(0))
    rt = L.add_int_const(base + "_recip_table", recip, rq)
    r = L.g.unique_name(base + "_recip")
    L.g.add_tensor(Tensor(r, "int32", (b, 1, 1), rq))
    L.g.add_node("Gather", [rt, count], [r], name=f"Gather_{r}", axis=0)
    out = L.desired(node.outputs[0])
    L.emit("QMul", [total, r], node.outputs[0], out, a_zp=0, b_zp=0,
           **per_tensor(requant_attrs(float(qx.scale) * 2.0**-k, out, None)))


def shift_gelu_exp_depth(reach: float) -> int:
    """Shift-exp depth ``n`` that never clamps ShiftGELU's exponents for inputs within
    ``±reach`` (λ-clipped): both exponents stay above ``−2·min(λ, reach)·1.702·log2 e`` in
    log2 units (the row maximum ``m`` is in ``[0, min(λ, reach)]``)."""
    return max(1, math.ceil(2 * min(GELU_LAMBDA, reach) * 1.702 * math.log2(math.e)))


def lower_gelu(L: Lowering, node: Node) -> None:
    """Gelu → ShiftGELU, ``x·σ(1.702·x)`` with σ as ``e^(x−m)/(e^(x−m) + e^(−m))``.

    * λ clip at ±3 on the sigmoid's argument (``x·σ(1.702·3)`` differs from GELU by < 0.02·|x|
      beyond it) bounds the row maximum ``m``; :func:`shift_gelu_exp_depth` gives the depth
      ``n_need`` (15 for a range reaching λ) at which no exponent is clamped.
    * ``n = shift_gelu_n(x0, b, n_max=n_need)`` (docs/ops.md): ``−x0·2^n ≤ 2^(31−b)`` keeps the
      per-element normaliser ``floor((2^31 − 1)/(e + e_m))`` within about one LSB of σ. An input
      grid so fine that this would force ``n < n_need`` (e.g. int16) is first requantized to
      ``−x0 ≤ 2^(31−b−n_need)``, so neither bound is given up.
    * σ has ``SHIFTGELU_SIG_BITS`` bits (I-ViT uses 8; 10 leaves room for ``−x0`` up to 64 at
      ``n = 15``, i.e. input steps down to ≈ 0.0092).
    """
    name, qx, dx = L.input(node.inputs[0])
    act, fout = L.take_activation(node.outputs[0])
    out = L.desired(fout)
    b = SHIFTGELU_SIG_BITS
    s = float(qx.scale)
    qmin, qmax = qrange(dx)
    reach = s * max(int(qx.zero_point) - qmin, qmax - int(qx.zero_point))
    n_need = shift_gelu_exp_depth(reach)
    max_steps = 2.0 ** (31 - b - n_need)
    if _fixed_int8_grid(L, dx):
        # ShiftGELU's σ on a coarse int8 grid has ~1/(1.702·s) steps per unit: widen exactly
        # up to the max_steps the normaliser allows
        k = max(1, min(128, math.floor(max_steps * 1.702 * s)))
        if k > 1:
            name, qx, dx = _widen_exact(L, node.inputs[0], k)
            s = float(qx.scale)
    if math.floor(1.0 / (1.702 * s)) > max_steps:
        want = (QuantParams(np.float32(max(1.0 / (1.702 * max_steps), reach / 32767)),
                            np.int32(0)), "int16")
        name, qx = L.input_as(node.inputs[0], want), want[0]
        s = float(qx.scale)
    x0 = min(-1, math.floor(-1.0 / (1.702 * s)))
    lam = max(1, round(GELU_LAMBDA / s))
    attrs = per_tensor(requant_attrs(s * 2.0 ** -(b - 1), out, act))
    L.emit("ShiftGELU", [name], fout, out, axis=-1, x0=x0, n=shift_gelu_n(x0, b, n_need),
           sig_bits=b, clip_min=-lam, clip_max=lam, x_zp=int(qx.zero_point), **attrs)


LOWERINGS: dict[str, OpLowering] = {
    "Softmax": lower_softmax, "LayerNormalization": lower_layernorm, "Gelu": lower_gelu,
    "RMSNormalization": lower_rmsnorm, "MaskedMean": lower_masked_mean,
}
