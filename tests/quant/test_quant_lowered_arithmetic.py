"""The lowering's integer parameters (multipliers, shifts, left shift, zero points) reproduce
the real-valued op: for random grids, the integer result is within 1 LSB of
``round(f(s_a·(a − z_a), s_b·(b − z_b)) / s_out) + z_out`` (clamped)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.graph import Graph, QuantParams, Tensor, qrange
from sdk.ops.registry import load_all
from sdk.quant.lower import lower
from sdk.quant.plan import QuantPlan

scales = st.floats(1e-3, 1.0)
zps = st.integers(-20, 20)


def _binary_graph(op: str) -> Graph:
    g = Graph(op)
    for n in ("a", "b", "y"):
        g.add_tensor(Tensor(n, "float32", (3, 16)))
    g.add_node(op, ["a", "b"], ["y"])
    g.inputs, g.outputs = ["a", "b"], ["y"]
    return g


def _lowered(g: Graph, params: dict[str, tuple[float, int, str]]):
    plan = QuantPlan(act={k: QuantParams(np.float32(s), np.int32(z))
                          for k, (s, z, _) in params.items()},
                     dtype={k: d for k, (_, _, d) in params.items()})
    ig = lower(g, plan)
    return ig, next(n for n in ig.nodes if n.op not in ("QuantizeLinear", "DequantizeLinear"))


def _check(op, fn, sa, za, sb, zb, so, zo, dtype, seed):
    params = {"a": (sa, za, "int8"), "b": (sb, zb, "int8"), "y": (so, zo, dtype)}
    _, node = _lowered(_binary_graph(op), params)
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (3, 16)).astype(np.int8)
    b = rng.integers(-128, 128, (3, 16)).astype(np.int8)
    got = load_all()[node.op]([a, b], node.attrs, False)[0].astype(np.int64)
    ra = np.float32(sa) * (a.astype(np.float64) - za)
    rb = np.float32(sb) * (b.astype(np.float64) - zb)
    qmin, qmax = qrange(dtype)
    want = np.clip(np.round(fn(ra, rb) / np.float32(so)) + zo, qmin, qmax)
    assert np.abs(got - want).max() <= 1, node.attrs


@settings(max_examples=40, deadline=None)
@given(sa=scales, za=zps, sb=scales, zb=zps, so=scales, zo=zps,
       dtype=st.sampled_from(["int8", "int16"]), seed=st.integers(0, 1000))
def test_qadd_parameters(sa, za, sb, zb, so, zo, dtype, seed):
    _check("Add", np.add, sa, za, sb, zb, so, zo, dtype, seed)


@settings(max_examples=30, deadline=None)
@given(sa=scales, za=zps, sb=scales, zb=zps, so=scales, zo=zps, seed=st.integers(0, 1000))
def test_sub_as_qadd_with_a_negative_multiplier(sa, za, sb, zb, so, zo, seed):
    _check("Sub", np.subtract, sa, za, sb, zb, so, zo, "int8", seed)


@settings(max_examples=40, deadline=None)
@given(sa=scales, za=zps, sb=scales, zb=zps, so=st.floats(1e-2, 10.0), zo=zps,
       dtype=st.sampled_from(["int8", "int16"]), seed=st.integers(0, 1000))
def test_qmul_parameters(sa, za, sb, zb, so, zo, dtype, seed):
    _check("Mul", np.multiply, sa, za, sb, zb, so, zo, dtype, seed)


@settings(max_examples=30, deadline=None)
@given(sx=scales, zx=zps, so=st.floats(1e-2, 2.0), zo=zps, seed=st.integers(0, 1000))
def test_fully_connected_parameters(sx, zx, so, zo, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    g = Graph("fc")
    g.add_tensor(Tensor("x", "float32", (3, 16)))
    g.add_tensor(Tensor("y", "float32", (3, 8)))
    g.add_constant("w", w)
    g.add_constant("bias", bias)
    g.add_node("Gemm", ["x", "w", "bias"], ["y"], transB=1)
    g.inputs, g.outputs = ["x"], ["y"]
    ig, node = _lowered(g, {"x": (sx, zx, "int8"), "y": (so, zo, "int8")})
    wt, bt = ig.tensor(node.inputs[1]), ig.tensor(node.inputs[2])
    x = rng.integers(-128, 128, (3, 16)).astype(np.int8)
    got = load_all()["QFullyConnected"]([x, wt.data, bt.data], node.attrs, False)[0]
    # the ideal result of the integer weights and bias on their own grids
    w_real = wt.data.astype(np.float64) * wt.quant.scale.astype(np.float64)[:, None]
    real = (np.float32(sx) * (x.astype(np.float64) - zx)) @ w_real.T
    real += bt.data * (np.float64(np.float32(sx)) * wt.quant.scale.astype(np.float64))
    want = np.clip(np.round(real / np.float32(so)) + zo, -128, 127)
    assert np.abs(got.astype(np.int64) - want).max() <= 1
    assert np.abs(w_real - w).max() <= np.abs(w).max(axis=1).max() / 127 / 2 + 1e-6
