"""Step graphs: the conventions and transforms of a graph that computes one hop of a stream.

A step graph makes all memory explicit: ``Graph.state`` declares each state input ``s`` and
its state output ``s'`` (:class:`~sdk.graph.ir.StateDecl`), and ``s`` at call ``t + 1`` is
``s'`` of call ``t``. A ``recurrent`` state keeps its shape; a ``kv_cache`` state is a
fixed-capacity cache written at a position the runtime advances.

The runtime reads only the declaration. Pairing by name (:func:`pair_states`) survives as an
*import-time* convenience: :func:`declare_states` writes the declaration for an old step graph
(e.g. an ONNX export whose outputs are named ``<input>_next``). This module also lines an
integer state output up with its input's quantization grid and unrolls the step ``T`` times
into one graph (the offline computation that streaming must equal bit for bit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sdk.errors import GraphError, InputError
from sdk.graph.ir import Graph, Node, QuantParams, StateDecl, Tensor

#: suffixes that mark a graph output as the next value of the input without the suffix
STATE_OUTPUT_SUFFIXES = ("_next", "_out", "_new")


def pair_states(input_names: Sequence[str], output_names: Sequence[str],
                state: Mapping[str, str] | None = None) -> dict[str, str]:
    """State input → state output, by explicit ``state`` mapping or by name convention.

    Convention: output ``S + suffix`` for a suffix in :data:`STATE_OUTPUT_SUFFIXES`, or input
    ``X_in`` with output ``X_out``. Raises GraphError when a given name is not in the graph.
    """
    if state is not None:
        for i, o in state.items():
            if i not in input_names:
                raise GraphError(f"state input {i!r} is not a graph input; the inputs are "
                                 f"{list(input_names)}")
            if o not in output_names:
                raise GraphError(f"state output {o!r} (paired with {i!r}) is not a graph "
                                 f"output; the outputs are {list(output_names)}")
        return dict(state)
    outs = set(output_names)
    pairs: dict[str, str] = {}
    for i in input_names:
        candidates = [i + s for s in STATE_OUTPUT_SUFFIXES]
        if i.endswith("_in"):
            candidates.append(i[:-3] + "_out")
        found = [c for c in candidates if c in outs]
        if found:
            pairs[i] = found[0]
    return pairs


def declare_states(graph: Graph, state: Mapping[str, str] | None = None,
                   by_name: bool = True) -> list[StateDecl]:
    """Write ``graph.state`` (in place) when it is empty, and return it.

    ``state`` (input -> output) declares recurrent states explicitly; otherwise, with
    ``by_name``, states are paired by the name convention of :func:`pair_states` (the
    import-time convenience for old step graphs). A graph that already declares its state
    keeps it (``state`` must then agree with it). The integer grid of each declared state is
    filled in from the graph (:func:`complete_state_decls`).
    """
    if graph.state:
        if state is not None and dict(state) != graph.state_pairs():
            pair_states(graph.inputs, graph.outputs, state)  # names must exist
            graph.state = []
        else:
            complete_state_decls(graph)
            return graph.state
    if state is None and not by_name:
        return graph.state
    for i, o in pair_states(graph.inputs, graph.outputs, state).items():
        graph.declare_state(StateDecl(i, o))
    complete_state_decls(graph)
    return graph.state


def complete_state_decls(graph: Graph) -> list[StateDecl]:
    """Fill each declaration's raw tensor names, dtype and quantization from ``graph`` (the
    tensors behind any QuantizeLinear / DequantizeLinear boundary)."""
    consumers, producers = graph.consumers(), graph.producers()
    for d in graph.state:
        if d.input not in graph.tensors:
            continue
        raw_in = inner_input(graph, d.input, consumers)
        raw_out = inner_output(graph, d.output, producers)
        qnode = consumers[d.input][0] if raw_in != d.input else None
        t = graph.tensor(raw_in)
        d.raw_input = raw_in if raw_in != d.input else ""
        d.raw_output = raw_out if raw_out != d.output else ""
        d.dtype = t.dtype
        d.quant = quant_of(graph, raw_in, qnode) if t.dtype != "float32" else None
    return graph.state


def state_pairs_of(graph: Graph, kind: str | None = "recurrent") -> dict[str, str]:
    """Declared state input -> state output (of ``kind``; all kinds when None). A graph that
    declares nothing is declared first by the name convention (:func:`declare_states`: the
    import step of an old step graph), so callers always read the declaration."""
    if not graph.state:
        declare_states(graph)
    return {d.input: d.output for d in graph.state if kind is None or d.kind == kind}


def inner_input(g: Graph, name: str, consumers: dict[str, list[Node]]) -> str:
    """The integer tensor behind a float graph input (its QuantizeLinear output), or itself."""
    users = consumers.get(name, [])
    if users and all(u.op == "QuantizeLinear" for u in users) and len(
            {u.outputs[0] for u in users}) == 1:
        return users[0].outputs[0]
    return name


def inner_output(g: Graph, name: str, producers: dict[str, Node]) -> str:
    p = producers.get(name)
    return p.inputs[0] if p is not None and p.op == "DequantizeLinear" else name


def quant_of(g: Graph, tensor: str, boundary: Node | None) -> QuantParams | None:
    t = g.tensor(tensor)
    if t.quant is not None:
        return t.quant
    if boundary is not None and "scale" in boundary.attrs:
        return QuantParams(np.asarray(boundary.attrs["scale"], np.float32),
                           np.asarray(boundary.attrs.get("zero_point", 0), np.int32),
                           boundary.attrs.get("axis"))
    return None


def align_state_quantization(graph: Graph, pairs: Mapping[str, str]) -> list[str]:
    """Make each integer state output use its state input's grid; returns the states changed.

    When the quantizer gave ``s'`` another scale, zero point or dtype than ``s``, an integer
    ``Requantize`` with ``M = scale_out / scale_in`` (dyadic ``m0``, ``shift``) is inserted
    before the output's ``DequantizeLinear``, whose parameters become the input's. Modifies
    ``graph`` in place. Per-axis state quantization must already match (GraphError if not).
    """
    from sdk.kernels.requant import quantize_multiplier

    changed: list[str] = []
    for s_in, s_out in pairs.items():
        consumers, producers = graph.consumers(), graph.producers()
        q_in = inner_input(graph, s_in, consumers)
        q_out = inner_output(graph, s_out, producers)
        if q_in == s_in and q_out == s_out:
            continue  # a float state, or an integer graph without boundary nodes: raw already
        qnode = consumers[s_in][0] if q_in != s_in else None
        dnode = producers[s_out] if q_out != s_out else None
        p_in, p_out = quant_of(graph, q_in, qnode), quant_of(graph, q_out, dnode)
        dt_in, dt_out = graph.tensor(q_in).dtype, graph.tensor(q_out).dtype
        if p_in is None or p_out is None or (p_in == p_out and dt_in == dt_out):
            continue
        if p_in.per_axis or p_out.per_axis:
            raise GraphError(f"state {s_in!r}: per-axis quantization differs between input and "
                             f"output {s_out!r}; quantize the state per tensor")
        m0, shift = quantize_multiplier(float(p_out.scale) / float(p_in.scale))
        aligned = graph.unique_name(f"{q_out}_as_{s_in}")
        graph.add_tensor(Tensor(aligned, dt_in, graph.tensor(q_out).shape, p_in))
        lo, hi = np.iinfo(dt_in).min, np.iinfo(dt_in).max
        node = Node("Requantize", [q_out], [aligned],
                    {"in_zp": int(p_out.zero_point), "m0": int(m0), "shift": int(shift),
                     "out_zp": int(p_in.zero_point), "act_min": int(lo), "act_max": int(hi),
                     "dtype": dt_in}, name=f"align_state_{s_in}")
        graph.nodes.insert(graph.nodes.index(dnode), node)
        dnode.inputs[0] = aligned
        dnode.attrs.update(scale=float(p_in.scale), zero_point=int(p_in.zero_point))
        changed.append(s_in)
    return changed


@dataclass(frozen=True)
class UnrolledNames:
    """Tensor names in an unrolled graph (see :func:`unroll_step_graph`)."""

    inner_state_in: dict[str, str]
    inner_state_out: dict[str, str]

    @staticmethod
    def step_input(name: str, t: int) -> str:
        return f"{name}@{t}"

    @staticmethod
    def step_output(name: str, t: int) -> str:
        return f"{name}@{t}"

    def initial_state(self, s_in: str) -> str:
        return f"{self.inner_state_in[s_in]}@0"

    def final_state(self, s_in: str) -> str:
        return f"{s_in}@final"


def unroll_step_graph(step: Graph, pairs: Mapping[str, str], steps: int
                      ) -> tuple[Graph, UnrolledNames]:
    """``steps`` copies of ``step`` in one graph, state output ``t`` feeding state input
    ``t + 1``, the state carried as the raw (integer) tensors behind any boundary nodes.

    Inputs: each stream input per step (``x@t``) and the initial raw state; outputs: each
    stream output per step (``y@t``) and the final raw state (``s@final``). Constants are
    shared between the copies.
    """
    if steps < 1:
        raise InputError("run_offline needs at least one hop")
    consumers, producers = step.consumers(), step.producers()
    inner_in = {s: inner_input(step, s, consumers) for s in pairs}
    inner_out = {s: inner_output(step, o, producers) for s, o in pairs.items()}
    dropped = {id(n) for s in pairs for n in consumers.get(s, [])
               if inner_in[s] != s}  # state QuantizeLinear: the raw state is fed directly
    dropped |= {id(producers[o]) for s, o in pairs.items() if inner_out[s] != o}
    g = Graph(f"{step.name}_x{steps}")
    g.metadata = dict(step.metadata)
    consts = {n for n, t in step.tensors.items() if t.is_constant}
    for n in consts:
        g.add_tensor(step.tensors[n])
    stream_in = [i for i in step.inputs if i not in pairs]
    state_out = set(pairs.values())
    stream_out = [o for o in step.outputs if o not in state_out]
    boundary_out = {o for s, o in pairs.items() if inner_out[s] != o}
    names = UnrolledNames(inner_in, inner_out)
    for t in range(steps):
        def rename(n: str, t: int = t) -> str:
            if not n or n in consts:
                return n
            for s, inner in inner_in.items():
                if n == inner and t > 0:
                    return f"{inner_out[s]}@{t - 1}"
            return f"{n}@{t}"

        for n, tensor in step.tensors.items():
            if n in consts or any(n == inner_in[s] and t > 0 for s in pairs):
                continue
            if (n in pairs and inner_in[n] != n) or (n in state_out and n in boundary_out):
                continue  # float state boundary tensors: the raw state is carried instead
            g.add_tensor(Tensor(rename(n), tensor.dtype, tensor.shape, tensor.quant))
        for node in step.nodes:
            if id(node) in dropped:
                continue
            g.add_node(node.op, [rename(i) for i in node.inputs],
                       [rename(o) for o in node.outputs], name=f"{node.name}@{t}",
                       **dict(node.attrs))
        g.inputs += [f"{i}@{t}" for i in stream_in]
        g.outputs += [f"{o}@{t}" for o in stream_out]
    g.inputs += [names.initial_state(s) for s in pairs]
    for s in pairs:
        last = f"{inner_out[s]}@{steps - 1}"
        g.add_node("Identity", [last], [names.final_state(s)], name=f"final_{s}")
        src = g.tensor(last)
        g.add_tensor(Tensor(names.final_state(s), src.dtype, src.shape, src.quant))
        g.outputs.append(names.final_state(s))
    return g, names


def _softmax_input(graph: Graph, name: str) -> str:
    """The tensor a softmax reads when ``name`` reaches it through Requantize / Identity
    (where a causal mask must sit, so its fill is the softmax input's minimum); else
    ``name``."""
    consumers = graph.consumers()
    cur = name
    while True:
        users = consumers.get(cur, [])
        if len(users) != 1:
            return name
        u = users[0]
        if u.op in ("Shiftmax", "Softmax"):
            return cur
        if u.op not in ("Requantize", "Identity"):
            return name
        cur = u.outputs[0]


def add_kv_cache(graph: Graph, rows: Mapping[str, str], scores: Sequence[str],
                 capacity: int, position: str = "pos", suffix: str = "_next",
                 axis: int = 2) -> Graph:
    """Turn an attention graph over its own ``T`` tokens into one over a fixed-capacity
    cache (in place; returns ``graph``).

    ``rows``: tensor of new key/value rows ``[B, H, T, D]`` -> name of its cache. Each cache
    becomes a graph input ``[B, H, capacity, D]`` on the rows' integer grid, written by
    ``KVCacheWrite(cache, rows, position)``; the written cache is the state output
    ``<cache><suffix>`` and replaces the rows for every consumer. ``scores``: attention score
    tensors ``[B, H, T, capacity]``; a ``CausalMask`` at ``position`` is put in front of the
    softmax each one feeds. ``position`` becomes an int32 scalar input. Each cache is declared
    as a ``kv_cache`` state (``Graph.state``).
    """
    if capacity < 1:
        raise GraphError(f"KV cache capacity must be >= 1, got {capacity}")
    if position not in graph.tensors:
        graph.add_tensor(Tensor(position, "int32", ()))
        graph.inputs.append(position)
    for src, cache in rows.items():
        t = graph.tensor(src)
        if t.shape is None:
            raise GraphError(f"rows tensor {src!r} has no shape; infer shapes first")
        shape = list(t.shape)
        shape[axis] = capacity
        out = f"{cache}{suffix}"
        for n in (cache, out):
            if n in graph.tensors:
                raise GraphError(f"graph {graph.name!r} already has a tensor {n!r}")
        graph.add_tensor(Tensor(cache, t.dtype, tuple(shape), t.quant))
        graph.add_tensor(Tensor(out, t.dtype, tuple(shape), t.quant))
        for node in graph.nodes:
            node.inputs = [out if i == src else i for i in node.inputs]
        writer = Node("KVCacheWrite", [cache, src, position], [out], {"axis": axis},
                      name=f"cache_write_{cache}")
        producer = graph.producers().get(src)
        at = graph.nodes.index(producer) + 1 if producer is not None else 0
        graph.nodes.insert(at, writer)
        graph.inputs.append(cache)
        graph.outputs.append(out)
    for s in scores:
        target = _softmax_input(graph, s)
        t = graph.tensor(target)
        masked = graph.unique_name(f"{target}_causal")
        graph.add_tensor(Tensor(masked, t.dtype, t.shape, t.quant))
        for node in graph.nodes:
            node.inputs = [masked if i == target else i for i in node.inputs]
        producer = graph.producers()[target]
        graph.nodes.insert(graph.nodes.index(producer) + 1,
                           Node("CausalMask", [target, position], [masked], {},
                                name=f"causal_mask_{target}"))
    for src, cache in rows.items():
        graph.declare_state(StateDecl(cache, f"{cache}{suffix}", "kv_cache", int(capacity),
                                      position))
    complete_state_decls(graph)
    graph.validate()
    return graph
