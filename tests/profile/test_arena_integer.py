"""Integer graphs executed inside one arena laid out by the plan, with the reference kernels
(in-place nodes run slice by slice through their scratch buffer), compared bit for bit with
the reference executor's unplanned run."""

from __future__ import annotations

import numpy as np
import pytest
from arena_executor import run_in_arena

from sdk.compile.memory_plan import plan_memory
from sdk.graph.ir import Graph, Tensor
from sdk.ops.interpreter import Interpreter


def _requant(rng: np.random.Generator, n: int | None = None) -> dict:
    size = () if n is None else (n,)
    return {"m0": rng.integers(1 << 30, (1 << 31) - 1, size).astype(np.int32),
                "shift": rng.integers(-9, -5, size).astype(np.int32),
                "out_zp": int(rng.integers(-5, 5)), "act_min": -128, "act_max": 127}


def random_int_graph(rng: np.random.Generator, n_nodes: int) -> Graph:
    """A random DAG of the ops the planner treats specially: 1×1 and 3×3 convs, depthwise
    convs, residual adds, clamps, and a flatten + fully-connected tail."""
    g = Graph("random_int")
    c, h, w = int(rng.choice([4, 8])), int(rng.integers(3, 6)), int(rng.integers(3, 6))
    g.add_tensor(Tensor("x", "int8", (1, c, h, w)))
    g.inputs = ["x"]
    live = ["x"]
    for k in range(n_nodes):
        a = live[-1] if rng.random() < 0.7 else live[int(rng.integers(len(live)))]
        _, ca, ha, wa = g.tensor(a).shape
        kind = str(rng.choice(["pw", "pw_wide", "dw", "conv3", "add", "clamp"]))
        out = f"t{k}"
        if kind in ("pw", "pw_wide", "conv3"):
            co = ca if kind == "pw" else int(rng.choice([4, 8, 12]))
            kk = 3 if kind == "conv3" else 1
            wt = g.add_constant(f"w{k}", rng.integers(-127, 128, (co, ca, kk, kk)).astype(np.int8))
            b = g.add_constant(f"b{k}", rng.integers(-300, 300, co).astype(np.int32))
            p = kk // 2
            g.add_tensor(Tensor(out, "int8", (1, co, ha, wa)))
            g.add_node("QConv2d", [a, wt.name, b.name], [out], strides=[1, 1],
                       pads=[p, p, p, p], dilations=[1, 1], group=1, x_zp=0,
                       **_requant(rng, co))
        elif kind == "dw":
            wt = g.add_constant(f"w{k}", rng.integers(-127, 128, (ca, 1, 3, 3)).astype(np.int8))
            g.add_tensor(Tensor(out, "int8", (1, ca, ha, wa)))
            g.add_node("QDepthwiseConv2d", [a, wt.name, ""], [out], strides=[1, 1],
                       pads=[1, 1, 1, 1], dilations=[1, 1], group=ca, x_zp=0,
                       **_requant(rng, ca))
        elif kind == "add":
            same = [t for t in live if g.tensor(t).shape == (1, ca, ha, wa) and t != a]
            if not same:
                continue
            b = same[int(rng.integers(len(same)))]
            r = _requant(rng)
            g.add_tensor(Tensor(out, "int8", (1, ca, ha, wa)))
            g.add_node("QAdd", [a, b], [out], a_zp=0, b_zp=0, left_shift=20,
                       a_m0=int(r["m0"]), a_shift=-1, b_m0=int(r["m0"]), b_shift=-1,
                       out_m0=1 << 30, out_shift=-19, out_zp=0, act_min=-128, act_max=127)
        else:
            g.add_tensor(Tensor(out, "int8", (1, ca, ha, wa)))
            g.add_node("QClamp", [a], [out], min=-20, max=100)
        live.append(out)
    last = live[-1]
    _, cl, hl, wl = g.tensor(last).shape
    g.add_constant("flat_shape", np.array([1, cl * hl * wl], np.int64))
    g.add_tensor(Tensor("flat", "int8", (1, cl * hl * wl)))
    g.add_node("Reshape", [last, "flat_shape"], ["flat"])
    n_in = cl * hl * wl
    wf = g.add_constant("wf", rng.integers(-127, 128, (n_in, n_in)).astype(np.int8))
    g.add_tensor(Tensor("y", "int8", (1, n_in)))
    g.add_node("QFullyConnected", ["flat", wf.name, ""], ["y"], x_zp=0, **_requant(rng, n_in))
    g.outputs = [t for t in live[1:-1] if rng.random() < 0.1] + ["y"]
    return g


@pytest.mark.parametrize("seed", range(30))
def test_integer_graph_in_one_arena_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    g = random_int_graph(rng, int(rng.integers(3, 12)))
    g.validate()
    x = rng.integers(-128, 128, g.tensor("x").shape).astype(np.int8)
    want = Interpreter(g, fast=False).run({"x": x})
    for in_place in (True, "elementwise", False):
        plan = plan_memory(g, in_place=in_place)
        got = run_in_arena(g, plan, {"x": x}, seed)
        for name in g.outputs:
            np.testing.assert_array_equal(got[name], want[name],
                                          err_msg=f"seed {seed} in_place={in_place} {name}")
    assert plan_memory(g, in_place=True).arena_bytes <= plan.arena_bytes


def test_in_place_nodes_are_exercised() -> None:
    """The random graphs do contain in-place convs, FCs and element-wise ops."""
    kinds = set()
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        g = random_int_graph(rng, int(rng.integers(3, 12)))
        plan = plan_memory(g, in_place=True)
        ops = {n.name: n.op for n in g.nodes}
        kinds |= {(ops[k], bool(v["scratch"])) for k, v in plan.in_place.items()}
    assert {("QConv2d", True), ("QDepthwiseConv2d", True), ("QFullyConnected", True)} <= kinds
    assert any(op in ("QAdd", "QClamp") and not s for op, s in kinds)


def test_elementwise_only_in_place_uses_no_scratch() -> None:
    rng = np.random.default_rng(103)
    g = random_int_graph(rng, 10)
    full, elementwise = plan_memory(g, in_place=True), plan_memory(g)
    assert not any(e["scratch"] for e in elementwise.in_place.values())
    assert not any(s.kind == "scratch" for s in elementwise.slots.values())
    assert full.arena_bytes <= elementwise.arena_bytes <= plan_memory(g, in_place=False).arena_bytes
