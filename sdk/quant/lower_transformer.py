"""Lowerings of the transformer ops to I-ViT's integer-only kernels: Softmax → Shiftmax,
LayerNormalization → ILayerNorm, Gelu → ShiftGELU."""

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
}
