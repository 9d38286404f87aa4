"""Recurrent state in the quantization plan: one shared grid per state input/output pair.

A step graph carries memory from hop to hop: state input ``s`` at hop ``t + 1`` is state output
``s'`` of hop ``t`` (pairs named by :func:`sdk.graph.state.pair_states`). Giving ``s``
and ``s'`` the same integer grid (dtype, scale, zero point) lets a stream hand the raw integers
of ``s'`` straight back as ``s`` with no ``Requantize`` between hops.

A *state group* is the set of tensors that must share that grid: ``s``, ``s'``, and, walking
back from ``s'`` through ops that keep their input's grid (reshape, slice, ReLU, ...), the
tensor whose producer actually sets it (the *root*, e.g. the ``Add`` of ``m = Ā·m + B̄·u`` or
the ``Concat`` of a causal frame buffer). Two pairs that reach one root form one group.

The group's grid covers the union of its members' calibrated ranges:
``s = max(|lo|, |hi|)/32767``, ``z = 0`` (int16 symmetric) under mixed precision, else the
plan's base activation type. A root whose op fixes its output grid (a ``Tanh``/``Sigmoid``
lookup table) imposes that grid on the whole group: the state then round-trips exactly.
Under mixed precision the non-constant operands of an ``Add``/``Sub`` root are int16 as well,
so the recurrence's sum is not squeezed through int8 before it is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sdk.graph import Graph, Node, QuantParams
from sdk.ops.schema import KEEPS_GRID, ops_with
from sdk.quant.fuse import const_value
from sdk.quant.observers import Observer, params_for_range

#: ops whose (first) output keeps the grid of their first input in the integer lowering
GRID_KEEPING_OPS = ops_with(KEEPS_GRID)


def find_state_pairs(graph: Graph, state_pairs: Mapping[str, str] | None = None
                     ) -> dict[str, str]:
    """Recurrent state input → state output of a step graph: ``state_pairs`` checked against
    the graph (GraphError naming a missing tensor), else the graph's declared recurrent states
    (``Graph.state``), else, for a graph that declares none, paired by the name convention of
    :func:`sdk.graph.state.pair_states` (the import-time convenience). Only float32 pairs
    are kept (integer inputs such as token ids are not quantized). An empty mapping turns
    pairing off."""
    from sdk.graph.state import pair_states

    if state_pairs is None and graph.state:
        pairs = {d.input: d.output for d in graph.state if d.kind == "recurrent"}
    else:
        pairs = pair_states(graph.inputs, graph.outputs, state_pairs)
    return {i: o for i, o in pairs.items()
            if graph.tensor(i).dtype == "float32" and graph.tensor(o).dtype == "float32"}


def carry_state_decls(src: Graph, dst: Graph, pairs: Mapping[str, str]) -> None:
    """Declare on the integer graph ``dst`` the state of the float graph ``src``: its declared
    states (recurrent and kv_cache), or the recurrent ``pairs`` quantization used, with the
    integer grid each is carried on (:func:`sdk.graph.state.complete_state_decls`)."""
    from dataclasses import replace

    from sdk.graph import StateDecl
    from sdk.graph.state import complete_state_decls

    declared = [d for d in src.state if d.kind != "recurrent" or d.input in pairs
                or src.tensor(d.input).dtype != "float32"]
    decls = declared or [StateDecl(i, o) for i, o in pairs.items()]
    for d in decls:
        if d.input in dst.inputs and d.output in dst.outputs and (
                not d.position or d.position in dst.inputs):
            dst.declare_state(replace(d))
    complete_state_decls(dst)


@dataclass
class StateGroup:
    """Tensors sharing one grid; ``root`` is the tensor whose producer sets it."""

    members: list[str] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)


def grid_root(graph: Graph, name: str, producers: dict[str, Node]) -> list[str]:
    """``name`` and the tensors behind it through grid-keeping ops, ending at the root."""
    chain = [name]
    p = producers.get(name)
    while p is not None and p.op in GRID_KEEPING_OPS and p.inputs and p.inputs[0] \
            and const_value(graph, p.inputs[0]) is None:
        chain.append(p.inputs[0])
        p = producers.get(p.inputs[0])
    return chain


def state_groups(graph: Graph, pairs: Mapping[str, str]) -> list[StateGroup]:
    """Union the tensors of every pair (input, output and the output's chain to its root)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    producers = graph.producers()
    roots = set()
    for s_in, s_out in pairs.items():
        chain = grid_root(graph, s_out, producers)
        roots.add(chain[-1])
        for t in [s_in, *chain]:
            parent[find(t)] = find(s_in)
    groups: dict[str, StateGroup] = {}
    for t in parent:
        g = groups.setdefault(find(t), StateGroup())
        g.members.append(t)
        if t in roots:
            g.roots.append(t)
    return list(groups.values())


def group_params(group: StateGroup, observers: Mapping[str, Observer], dtype: str,
                 fixed: tuple[QuantParams, str] | None) -> tuple[QuantParams, str] | None:
    """The shared grid: ``fixed`` when a root's op imposes one, else symmetric for int16
    (asymmetric int8) over the union of the members' observed ranges (None: none observed)."""
    if fixed is not None:
        return fixed
    symmetric = dtype == "int16"
    ranges = [observers[t].range(dtype, symmetric) for t in group.members
              if t in observers and observers[t].seen]
    if not ranges:
        return None
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return params_for_range(lo, hi, dtype, symmetric), dtype


def widened_operands(graph: Graph, group: StateGroup) -> set[str]:
    """Non-constant operands of the ``Add``/``Sub`` roots of ``group``."""
    producers = graph.producers()
    out: set[str] = set()
    for r in group.roots:
        p = producers.get(r)
        if p is not None and p.op in ("Add", "Sub"):
            out |= {i for i in p.inputs if i and const_value(graph, i) is None}
    return out


def forward_from_states(graph: Graph, state_inputs: Iterable[str]) -> set[str]:
    """Tensors reached from the state inputs through grid-keeping ops (the state's views)."""
    reached = set(state_inputs)
    for n in graph.topological_order():
        if n.op in GRID_KEEPING_OPS and n.inputs and n.inputs[0] in reached:
            reached |= {o for o in n.outputs if o}
    return reached
