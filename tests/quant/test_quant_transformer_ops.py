"""Softmax → Shiftmax and Gelu → ShiftGELU lowerings keep their precision on int8 and on
fine int16 input grids (the lowering requantizes a too-fine grid first)."""

import numpy as np
import pytest

from sdk.graph import Graph, Tensor
from sdk.quant import quantize
from sdk.quant.trace import trace


def _single_op_graph(op: str, shape, **attrs) -> Graph:
    g = Graph(op.lower())
    g.add_tensor(Tensor("x", "float32", shape))
    g.add_tensor(Tensor("y", "float32", shape))
    g.add_node(op, ["x"], ["y"], **attrs)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


@pytest.mark.parametrize("bits, mixed, bound", [(8, False, 0.06), (8, True, 0.03), (16, True, 0.03)])
@pytest.mark.parametrize("row", [8, 64])
def test_shiftmax_probabilities_are_close_to_softmax(bits, mixed, bound, row):
    # int16 scores (mixed precision): Shiftmax's own error (2^r ≈ 1 + r/2) stays near 0.02; the
    # int16 grid fed unchanged would lose the normaliser's precision (errors ≈ 0.05-0.06).
    # int8 scores (std 3, step ≈ 0.09): the input grid itself costs up to ≈ 0.05.
    rng = np.random.default_rng(row + bits)
    g = _single_op_graph("Softmax", (4, row), axis=-1)
    x = (rng.standard_normal((40, 4, row)) * 3).astype(np.float32)
    ig = quantize(g, {"x": x[:32]}, activation_bits=bits, mixed_precision=mixed)
    assert "Shiftmax" in ig.op_types()
    for xi in x[32:]:
        p = trace(ig, {"x": xi})["y"]
        ref = np.exp(xi - xi.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        assert np.abs(p - ref).max() < bound
        assert np.all(np.abs(p.sum(-1) - 1) < 0.03)


@pytest.mark.parametrize("bits", [8, 16])
def test_shift_gelu_is_close_to_gelu(bits):
    from math import erf

    rng = np.random.default_rng(bits)
    g = _single_op_graph("Gelu", (2, 64))
    x = (rng.standard_normal((20, 2, 64)) * 2).astype(np.float32)
    ig = quantize(g, {"x": x[:16]}, activation_bits=bits)
    assert "ShiftGELU" in ig.op_types()
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))
    for xi in np.clip(x[16:], x[:16].min(), x[:16].max()):  # inside the calibrated range
        y = trace(ig, {"x": xi})["y"]
        assert np.abs(y - gelu(xi)).max() < 0.02 * np.abs(xi).max()


# max |f'| of each op on x ≤ hi (the Lipschitz constant the input rounding is scaled by)
LIPSCHITZ = {"HardSwish": lambda hi: 1.5, "LeakyRelu": lambda hi: 1.0, "Exp": np.exp,
             "Elu": lambda hi: 1.0, "Tanh": lambda hi: 1.0}


@pytest.mark.parametrize("op, attrs", [("HardSwish", {}), ("LeakyRelu", {"alpha": 0.1}),
                                       ("Exp", {}), ("Elu", {"alpha": 1.0}), ("Tanh", {})])
def test_unary_ops_become_a_lookup_table(op, attrs):
    rng = np.random.default_rng(0)
    g = _single_op_graph(op, (4, 16), **attrs)
    x = (rng.standard_normal((24, 4, 16)) * 1.5).astype(np.float32)
    ig = quantize(g, {"x": x[:16]})
    assert [n.op for n in ig.nodes] == ["QuantizeLinear", "QLut", "DequantizeLinear"]
    (lut_node,) = [n for n in ig.nodes if n.op == "QLut"]
    s_in = float(ig.tensor(lut_node.inputs[0]).quant.scale)
    s_out = float(ig.tensor(lut_node.outputs[0]).quant.scale)
    hi = float(x[:16].max())
    # input rounding (≤ s_in/2, through f's slope) + the table's rounding (≤ s_out/2); tanh's
    # fixed output grid stops at 127/128, so its clipped top costs up to one step instead
    bound = LIPSCHITZ[op](hi) * s_in / 2 + (s_out if op == "Tanh" else s_out / 2)
    for xi in np.clip(x[16:], x[:16].min(), hi):
        y = trace(ig, {"x": xi})["y"]
        ref = trace(g, {"x": xi})["y"]
        assert np.abs(y - ref).max() <= bound * (1 + 1e-5), op


@pytest.mark.parametrize("bits, amp, bound", [(8, 2.54, 0.05), (8, 0.25, 0.006), (16, 8.0, 0.09)])
def test_shift_gelu_node_keeps_sigma_precision(bits, amp, bound):
    # input scale ≈ 0.02 for int8 ±2.54: an n chosen only against overflow (n = 23) floors σ's
    # normaliser to a few levels (max error ≈ 0.22 there); shift_gelu_n's n keeps it ≈ 0.036.
    # Every row holds the calibrated maximum, so the row max m is as large as it gets.
    from math import erf

    from sdk.kernels.transformer import shift_gelu_n

    rng = np.random.default_rng(7)
    g = _single_op_graph("Gelu", (4, 64))
    x = rng.uniform(-amp, amp, (24, 4, 64)).astype(np.float32)
    x[:, :, 0] = amp
    ig = quantize(g, {"x": x[:16]}, activation_bits=bits)
    (node,) = [n for n in ig.nodes if n.op == "ShiftGELU"]
    b, x0, n = node.attrs["sig_bits"], node.attrs["x0"], node.attrs["n"]
    assert -x0 * 2**n <= 2 ** (31 - b) and n == shift_gelu_n(x0, b, n)
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))
    err = max(float(np.abs(trace(ig, {"x": xi})["y"] - gelu(xi)).max()) for xi in x[16:])
    assert err < bound
