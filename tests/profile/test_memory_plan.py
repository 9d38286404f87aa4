"""The arena plan: lifetimes, greedy placement, in-place sharing, and a randomized execution
check that runs graphs inside one buffer laid out by the plan."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdk.compile.memory_plan import (
    PLACEMENTS,
    MemoryPlan,
    live_bytes_bound,
    place_buffers,
    place_greedy,
    plan_memory,
)
from sdk.errors import GraphError
from sdk.graph.ir import Graph, Tensor

# -- a tiny NumPy executor for the test graphs (int32 arithmetic wraps like C) -----------------


def _run_op(op: str, args: list[np.ndarray], attrs: dict) -> np.ndarray:
    if op == "Add":
        return args[0] + args[1]
    if op == "Mul":
        return args[0] * args[1]
    if op == "Relu":
        return np.maximum(args[0], 0)
    if op == "MatMul":
        return args[0] @ args[1]
    if op == "Concat":
        return np.concatenate(args, axis=attrs["axis"])
    if op == "Reshape":
        return args[0].reshape(attrs["shape"])
    if op == "Transpose":
        return args[0].T.copy()
    raise AssertionError(op)


def run_unplanned(g: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    env = {t.name: t.data for t in g.initializers()}
    env.update(feeds)
    for n in g.topological_order():
        env[n.outputs[0]] = _run_op(n.op, [env[i] for i in n.inputs], n.attrs)
    return {o: env[o].copy() for o in g.outputs}


def run_planned(g: Graph, plan: MemoryPlan, feeds: dict[str, np.ndarray],
                seed: int = 0) -> dict[str, np.ndarray]:
    """Every activation is a view into one arena at the plan's offset; constants stay apart.
    The arena starts as random bytes so a read of an unwritten or clobbered tensor shows."""
    arena = np.random.default_rng(seed).integers(0, 256, plan.arena_bytes, dtype=np.uint8)

    def view(name: str) -> np.ndarray:
        t = g.tensor(name)
        s = plan.slots[name]
        return arena[s.offset:s.offset + s.size].view(t.dtype).reshape(t.shape)

    for name, value in feeds.items():
        view(name)[...] = value
    consts = {t.name: t.data for t in g.initializers()}
    for n in g.topological_order():
        args = [consts[i] if i in consts else view(i) for i in n.inputs]
        result = _run_op(n.op, args, n.attrs)  # computed fully before the output is written
        view(n.outputs[0])[...] = result
    return {o: view(o).copy() for o in g.outputs}


def random_graph(rng: np.random.Generator, n_nodes: int) -> Graph:
    g = Graph("random")
    rows = 4
    x = g.add_tensor(Tensor("x", "int32", (rows, int(rng.choice([4, 8, 12])))))
    g.inputs = ["x"]
    live = [x.name]
    for k in range(n_nodes):
        # mostly recent tensors, sometimes an old one: long lifetimes force real packing
        a = live[-1] if rng.random() < 0.6 else live[int(rng.integers(len(live)))]
        sa = g.tensor(a).shape
        op = str(rng.choice(["Add", "Mul", "Relu", "MatMul", "Concat", "Reshape", "Transpose"]))
        out = f"t{k}"
        attrs: dict = {}
        if op in ("Add", "Mul"):
            same = [t for t in live if g.tensor(t).shape == sa and t != a]
            if same and rng.random() < 0.7:
                b = same[int(rng.integers(len(same)))]
            else:
                b = g.add_constant(f"c{k}", rng.integers(-3, 4, sa).astype(np.int32)).name
            ins, shape = [a, b], sa
        elif op == "Relu":
            ins, shape = [a], sa
        elif op == "MatMul":
            width = int(rng.choice([4, 8, 16, 24]))
            w = g.add_constant(f"w{k}", rng.integers(-2, 3, (sa[1], width)).astype(np.int32))
            ins, shape = [a, w.name], (sa[0], width)
        elif op == "Concat":
            same_rows = [t for t in live if g.tensor(t).shape[0] == sa[0]]
            b = same_rows[int(rng.integers(len(same_rows)))]
            ins, shape = [a, b], (sa[0], sa[1] + g.tensor(b).shape[1])
            attrs = {"axis": 1}
        elif op == "Reshape":
            if sa[1] % 2:
                ins, shape = [a], sa
                op = "Relu"
            else:
                shape = (sa[0] * 2, sa[1] // 2)
                ins, attrs = [a], {"shape": shape}
        else:
            ins, shape = [a], (sa[1], sa[0])
        g.add_tensor(Tensor(out, "int32", shape))
        g.add_node(op, ins, [out], **attrs)
        live.append(out)
    extra = [t for t in live[1:-1] if rng.random() < 0.15]
    g.outputs = extra + [live[-1]]
    return g


@pytest.mark.parametrize("seed", range(40))
def test_planned_run_equals_unplanned_run(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = random_graph(rng, int(rng.integers(3, 25)))
    g.validate()
    plan = plan_memory(g)
    feeds = {"x": rng.integers(-5, 6, g.tensor("x").shape).astype(np.int32)}
    want = run_unplanned(g, feeds)
    got = run_planned(g, plan, feeds, seed)
    for name in g.outputs:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"seed {seed} {name}")
    assert plan.arena_bytes <= plan.unplanned_bytes
    # the best greedy order is never worse than TFLite Micro's, never below the live floor
    tflm_order = plan_memory(g, placement="size-first-fit")
    assert live_bytes_bound(plan) <= plan.arena_bytes <= tflm_order.arena_bytes
    tflm_order.check()


def test_best_fit_placement_beats_tflite_micros_order_where_it_can() -> None:
    """Buffers (id, bytes, first, last): size-first-fit stacks C on top of A and B (144 B);
    another order reaches the live floor, max over steps of the live bytes (112 B)."""
    bufs = [(0, 64, 3, 4), (1, 48, 1, 2), (2, 32, 2, 3), (3, 64, 1, 1)]
    key, best_fit = PLACEMENTS["size-first-fit"]
    _, tflm = place_greedy(sorted(bufs, key=key), 16, best_fit)
    offsets, best, _ = place_buffers(bufs, 16)
    assert (tflm, best) == (144, 112)
    for a in bufs:                      # no two live buffers share bytes
        for b in bufs:
            if a[0] < b[0] and a[2] <= b[3] and b[2] <= a[3]:
                oa, ob = offsets[a[0]], offsets[b[0]]
                assert oa + a[1] <= ob or ob + b[1] <= oa


def _chain() -> Graph:
    """x[1,64] -> MatMul -> a[1,64] -> Relu -> b -> MatMul -> c[1,16] (int32: 256 B each)."""
    g = Graph("chain")
    g.add_tensor(Tensor("x", "int32", (1, 64)))
    g.add_constant("w1", np.ones((64, 64), np.int32))
    g.add_constant("w2", np.ones((64, 16), np.int32))
    for name, shape in (("a", (1, 64)), ("b", (1, 64)), ("c", (1, 16))):
        g.add_tensor(Tensor(name, "int32", shape))
    g.add_node("MatMul", ["x", "w1"], ["a"])
    g.add_node("Relu", ["a"], ["b"])
    g.add_node("MatMul", ["b", "w2"], ["c"])
    g.inputs, g.outputs = ["x"], ["c"]
    return g


def test_chain_peak_is_two_buffers_with_in_place_relu() -> None:
    plan = plan_memory(_chain())
    # x and a are live together (256 + 256); b shares a's bytes (in place); b and c: 256 + 64
    assert plan.arena_bytes == 512
    assert plan.slots["b"].offset == plan.slots["a"].offset
    assert plan.weight_bytes == (64 * 64 + 64 * 16) * 4
    assert plan.unplanned_bytes == 3 * 256 + 64


def test_without_in_place_relu_needs_a_third_slot_only_when_lifetimes_meet() -> None:
    plan = plan_memory(_chain(), in_place=False)
    assert plan.slots["b"].offset != plan.slots["a"].offset
    # x dies at step 0, so b reuses x's bytes: still 512
    assert plan.arena_bytes == 512
    assert plan.slots["b"].offset == plan.slots["x"].offset


def test_relu_is_not_in_place_when_its_input_is_read_later() -> None:
    g = _chain()
    g.add_tensor(Tensor("d", "int32", (1, 64)))
    g.add_node("Add", ["a", "b"], ["d"])          # a still needed after the Relu
    g.outputs = ["c", "d"]
    plan = plan_memory(g)
    assert plan.slots["b"].offset != plan.slots["a"].offset


def test_graph_output_is_never_overwritten_in_place() -> None:
    g = _chain()
    g.outputs = ["a", "c"]
    plan = plan_memory(g)
    assert plan.slots["b"].offset != plan.slots["a"].offset


def test_plan_round_trips_through_json() -> None:
    plan = plan_memory(_chain())
    again = MemoryPlan.from_json(json.loads(plan.dumps()))
    assert again == plan
    assert json.loads(plan.dumps())["flash_bytes"] == plan.flash_bytes


def test_check_rejects_overlapping_live_tensors() -> None:
    plan = plan_memory(_chain(), in_place=False)
    plan.slots["a"].offset = plan.slots["x"].offset   # x and a are both live at step 0
    with pytest.raises(GraphError, match="overlap"):
        plan.check()


def test_missing_shape_is_a_clear_error() -> None:
    g = _chain()
    g.tensors["a"].shape = None
    with pytest.raises(GraphError, match="no known shape"):
        plan_memory(g)

