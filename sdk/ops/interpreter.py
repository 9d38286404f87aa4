"""The interpreter: runs a Graph node by node with the registry's kernels (the specification).

Nodes run in topological order; only the nodes the requested outputs depend on run, and an
intermediate tensor is dropped as soon as its last consumer has run, so peak memory stays
near the largest live set rather than the sum of all activations.

With ``fast=True`` a run goes through a :class:`~sdk.ops.program.Program`
prepared once per (outputs, fed names): kernels and attributes resolved per node, no per-call
lookups. The plain per-node loop below is the specification path: ``fast=False``, profiling,
and ``prepared=False`` use it. Both give the same bits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sdk.errors import EdgeError, GraphError, UnsupportedOpError
from sdk.graph.ir import Graph, Node
from sdk.ops.liveness import live_ranges, needed_nodes
from sdk.ops.program import Program
from sdk.ops.registry import OPS, load_all


@dataclass
class NodeTiming:
    """Wall time of one node in one profiled run."""

    name: str
    op: str
    seconds: float


class Interpreter:
    """A graph prepared for repeated runs on the reference kernels.

    ``fast=True`` runs the Numba twins of integer kernels where they exist; ``False`` runs the
    NumPy reference (the specification). Float kernels have a single implementation.
    ``prepared`` (default: ``fast``) runs through a cached
    :class:`~sdk.ops.program.Program` per (outputs, fed names) instead of the
    plain per-node loop; profiling always takes the plain loop. Same bits either way.
    """

    def __init__(self, graph: Graph, fast: bool = True, prepared: bool | None = None) -> None:
        ops = load_all()
        missing = sorted({n.op for n in graph.nodes if n.op not in ops})
        if missing:
            raise UnsupportedOpError(missing, "the interpreter",
                                     "see docs/ops.md for the operators it implements")
        self.graph = graph
        self.fast = fast
        self._order = graph.topological_order()
        self._plans: dict[tuple, tuple[list[Node], list[list[str]]]] = {}
        self.prepared = fast if prepared is None else prepared
        self._programs: dict[tuple, Program] = {}

    def _plan(self, outputs: tuple[str, ...], fed: frozenset[str]
              ) -> tuple[list[Node], list[list[str]]]:
        """Nodes needed for ``outputs`` and, per node, the tensors to free after it.

        A fed tensor is a source even when a node produces it (e.g. the integer tensor after
        an input's QuantizeLinear), so its producer does not run."""
        key = (outputs, fed)
        if key in self._plans:
            return self._plans[key]
        nodes, producers = needed_nodes(self.graph, fed, outputs, self._order)
        free = live_ranges(nodes).frees(keep=outputs, owned=producers)
        self._plans[key] = (nodes, free)
        return nodes, free

    def _program(self, wanted: tuple[str, ...], fed: frozenset[str]) -> Program:
        """Validate the request once and prepare (and cache) its Program."""
        graph = self.graph
        for o in wanted:
            if o not in graph.tensors:
                raise GraphError(f"graph {graph.name!r} has no tensor named {o!r} to output")
        program = Program(graph, sorted(fed), wanted, fast=self.fast, order=self._order)
        missing = [o for o in wanted if o in program.missing]
        if missing:
            raise GraphError(f"outputs {missing} were not computed: they are neither graph "
                             "inputs, constants nor produced by a node")
        self._programs[(wanted, fed)] = program
        return program

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
            timings: list[NodeTiming] | None = None) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (graph-input name -> array); return the named outputs
        (all graph outputs by default). Feeds are used as given: Session checks them."""
        graph = self.graph
        wanted = tuple(outputs) if outputs is not None else tuple(graph.outputs)
        if self.prepared and timings is None:
            key = (wanted, frozenset(feeds))
            program = self._programs.get(key)
            if program is None:
                program = self._program(wanted, key[1])
            return dict(zip(wanted, program.run(feeds)))
        for o in wanted:
            if o not in graph.tensors:
                raise GraphError(f"graph {graph.name!r} has no tensor named {o!r} to output")
        nodes, free = self._plan(wanted, frozenset(feeds))
        env: dict[str, np.ndarray] = {t.name: t.data for t in graph.tensors.values()
                                      if t.data is not None}
        env.update(feeds)
        for k, node in enumerate(nodes):
            args = [env[i] if i else None for i in node.inputs]
            t0 = time.perf_counter() if timings is not None else 0.0
            try:
                results = OPS[node.op](args, node.attrs, self.fast)
            except EdgeError:
                raise
            except Exception as exc:  # a kernel failure names the node that failed
                shapes = [None if a is None else tuple(a.shape) for a in args]
                raise GraphError(f"node {node.name!r} ({node.op}) failed on input shapes "
                                 f"{shapes}: {exc}") from exc
            if timings is not None:
                timings.append(NodeTiming(node.name, node.op, time.perf_counter() - t0))
            if len(results) < sum(1 for o in node.outputs if o):
                raise GraphError(f"node {node.name!r} ({node.op}) produced {len(results)} "
                                 f"outputs, the graph expects {len(node.outputs)}")
            for name, value in zip(node.outputs, results):
                if name:
                    env[name] = value
            for name in free[k]:
                env.pop(name, None)
        missing = [o for o in wanted if o not in env]
        if missing:
            raise GraphError(f"outputs {missing} were not computed: they are neither graph "
                             "inputs, constants nor produced by a node")
        return {o: env[o] for o in wanted}

    def profile(self, feeds: Mapping[str, np.ndarray]) -> list[NodeTiming]:
        """Run once and return each node's wall time, in execution order."""
        timings: list[NodeTiming] = []
        self.run(feeds, timings=timings)
        return timings


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray],
              outputs: Sequence[str] | None = None, fast: bool = True) -> dict[str, np.ndarray]:
    """One-shot convenience: compile and run."""
    return Interpreter(graph, fast=fast).run(feeds, outputs)
