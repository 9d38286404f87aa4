"""Zero-size activations (a tensor with a 0 dimension) take no arena bytes: the planner places
them without trampling a live tensor's range and its own overlap check accepts the plan,
while still rejecting a real overlap next to them."""

from __future__ import annotations

import numpy as np
import pytest
from arena_executor import run_in_arena
from test_memory_plan import random_graph, run_planned, run_unplanned

from sdk.compile.memory_plan import PLACEMENTS, MemoryPlan, TensorSlot, plan_memory
from sdk.errors import GraphError
from sdk.graph.ir import Graph, Tensor
from sdk.ops.interpreter import run_graph

MODES = [False, "elementwise", True]


def _with_empty_branch() -> Graph:
    """x -> r0 -> h -> r1 -> y, and an empty input e (0 rows) -> rz -> z, live beside x."""
    g = Graph("empty-branch")
    for name, shape in [("x", (4, 8)), ("e", (0, 8)), ("h", (4, 8)), ("z", (0, 8)),
                        ("y", (4, 8))]:
        g.add_tensor(Tensor(name, "int32", shape))
    g.add_node("Relu", ["x"], ["h"], name="r0")
    g.add_node("Relu", ["e"], ["z"], name="rz")
    g.add_node("Relu", ["h"], ["y"], name="r1")
    g.inputs, g.outputs = ["x", "e"], ["y", "z"]
    return g


@pytest.mark.parametrize("in_place", MODES)
@pytest.mark.parametrize("placement", ["best", *PLACEMENTS])
def test_zero_size_tensor_is_planned_without_overlap(in_place, placement) -> None:
    g = _with_empty_branch()
    plan = plan_memory(g, in_place=in_place, placement=placement)   # runs plan.check()
    assert plan.slots["e"].size == plan.slots["z"].size == 0
    # the empty branch adds no bytes: same arena as the graph without it
    g2 = _with_empty_branch()
    g2.nodes = [n for n in g2.nodes if n.name != "rz"]
    for t in ("e", "z"):
        del g2.tensors[t]
    g2.inputs, g2.outputs = ["x"], ["y"]
    assert plan.arena_bytes == plan_memory(g2, in_place=in_place,
                                           placement=placement).arena_bytes
    rng = np.random.default_rng(3)
    feeds = {"x": rng.integers(-9, 10, (4, 8)).astype(np.int32),
             "e": np.zeros((0, 8), np.int32)}
    got = run_planned(g, plan, feeds)
    want = run_unplanned(g, feeds)
    np.testing.assert_array_equal(got["y"], want["y"])
    assert got["z"].shape == (0, 8)


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_with_empty_side_branches_run_in_the_arena(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    g = random_graph(rng, int(rng.integers(3, 15)))
    order = [n.name for n in g.topological_order()]
    # empty tensors produced in the middle of the graph, while real tensors are live
    for k in range(3):
        e, z = f"empty{k}", f"zero{k}"
        g.add_tensor(Tensor(e, "int32", (0, int(rng.integers(1, 9)))))
        g.add_tensor(Tensor(z, "int32", g.tensor(e).shape))
        g.add_node("Relu", [e], [z], name=f"zrelu{k}")
        g.inputs.append(e)
        g.outputs.append(z)
    # put the empty nodes between the real ones so their lifetimes meet live tensors
    nodes = {n.name: n for n in g.nodes}
    mixed = order[:]
    for k in range(3):
        mixed.insert(int(rng.integers(0, len(mixed) + 1)), f"zrelu{k}")
    g.nodes = [nodes[n] for n in mixed]
    g.validate()
    feeds = {"x": rng.integers(-5, 6, g.tensor("x").shape).astype(np.int32)}
    for k in range(3):
        feeds[f"empty{k}"] = np.zeros(g.tensor(f"empty{k}").shape, np.int32)
    want = run_unplanned(g, feeds)
    for placement in ["best", *PLACEMENTS]:
        plan = plan_memory(g, placement=placement)
        got = run_planned(g, plan, feeds, seed)
        for name in g.outputs:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{placement} {name}")


def test_integer_graph_with_empty_tensor_runs_in_the_arena() -> None:
    """Integer kernels of the reference backend, every activation a view into the arena."""
    g = Graph("int-empty")
    g.add_tensor(Tensor("x", "int8", (1, 32)))
    g.add_tensor(Tensor("e", "int8", (0, 32)))
    g.add_tensor(Tensor("a", "int8", (1, 32)))
    g.add_tensor(Tensor("ez", "int8", (0, 32)))
    g.add_tensor(Tensor("y", "int8", (1, 32)))
    g.add_node("QClamp", ["x"], ["a"], name="c0", min=-20, max=20)
    g.add_node("QClamp", ["e"], ["ez"], name="ce", min=-5, max=5)
    g.add_node("QClamp", ["a"], ["y"], name="c1", min=-10, max=30)
    g.inputs, g.outputs = ["x", "e"], ["y", "ez"]
    rng = np.random.default_rng(7)
    feeds = {"x": rng.integers(-128, 128, (1, 32)).astype(np.int8),
             "e": np.zeros((0, 32), np.int8)}
    want = run_graph(g, feeds, fast=False)
    for mode in MODES:
        plan = plan_memory(g, in_place=mode)
        got = run_in_arena(g, plan, feeds)
        np.testing.assert_array_equal(got["y"], want["y"])
        assert got["ez"].shape == (0, 32)


def _plan(slots: list[TensorSlot], arena: int) -> MemoryPlan:
    return MemoryPlan("hand", 16, arena, 0, 0, arena, [], {s.name: s for s in slots})


def test_check_ignores_empty_ranges_but_still_finds_real_overlaps() -> None:
    empty = TensorSlot("e", 0, 0, 0, 2, buffer=9)
    a = TensorSlot("a", 0, 64, 0, 1, buffer=0)
    b = TensorSlot("b", 64, 64, 0, 2, buffer=1)
    _plan([a, empty, b], 128).check()                 # e at a's offset: no bytes, no clash
    _plan([TensorSlot("e", 128, 0, 0, 2, 9), a, b], 128).check()   # empty at the arena's end
    clash = TensorSlot("c", 48, 32, 1, 1, buffer=2)   # meets a and b at step 1
    with pytest.raises(GraphError, match="overlap"):
        _plan([a, empty, b, clash], 128).check()
    with pytest.raises(GraphError, match="misaligned or outside"):
        _plan([a, TensorSlot("e", 8, 0, 0, 2, 9)], 128).check()
    with pytest.raises(GraphError, match="misaligned or outside"):
        _plan([a, TensorSlot("e", 144, 0, 0, 2, 9)], 128).check()
