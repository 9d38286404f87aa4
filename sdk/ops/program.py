"""Program: a graph prepared once to compute some tensors from fed ones, for many cheap runs.

The plain executor does, per call and per node, a plan lookup, a dict lookup per operand, the
registry's attribute parsing and the kernel's argument checks. For small models that overhead
outweighs the arithmetic. A Program does all of it once:

* it fixes the nodes the ``reads`` depend on (a fed tensor is a source even when a node
  produces it) in topological order, and gives every tensor an integer slot;
* it binds each node to a prepared kernel (:mod:`sdk.ops.bind`: attributes
  as int64 scalars and per-channel vectors, constants pre-broadcast, convolution geometry and
  packed weights) or, where none fits, to the registry kernel with its attributes bound;
* it lists, per node, the slots to free after it (an intermediate is dropped once its last
  reader has run, as in the plain executor).

A run is then one Python call per node over a list of slots. ``fast=False`` binds only the
registry's NumPy kernels (the specification). Tests hold the bits equal to the plain
executor's NumPy reference path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sdk.errors import EdgeError, GraphError
from sdk.graph.ir import Graph, Node
from sdk.ops.bind import Binder
from sdk.ops.liveness import live_ranges, needed_nodes


class Program:
    """``graph`` prepared to compute ``reads`` from the ``fed`` tensors (plus its constants).

    ``run(feeds)`` takes a mapping holding every fed name and returns the values of
    ``reads`` in order. Feeds are used as given (Session checks them)."""

    def __init__(self, graph: Graph, fed: Sequence[str], reads: Sequence[str],
                 fast: bool = True, order: list[Node] | None = None) -> None:
        self.graph = graph
        self.fed = list(fed)
        self.reads = list(reads)
        self.fast = fast
        const = {n: t.data for n, t in graph.tensors.items() if t.data is not None}
        self.nodes, producers = needed_nodes(graph, self.fed, self.reads, order)
        slot: dict[str, int] = {"": 0}  # slot 0 stays None: an omitted optional input

        def slot_of(name: str) -> int:
            if name not in slot:
                slot[name] = len(slot)
            return slot[name]

        self._fed_slots = [slot_of(f) for f in self.fed]
        binder = Binder(graph, const, fast)
        self.fast_nodes = 0
        steps = []
        for node in self.nodes:
            kernel = binder.bind(node)
            if kernel is None:
                kernel = binder.generic(node)
            else:
                self.fast_nodes += 1
            ins = [slot_of(i) if i else 0 for i in node.inputs]
            outs = [slot_of(o) if o else 0 for o in node.outputs]
            if len(outs) == 1 and outs[0] == 0:  # an unnamed sole output: a slot of its own
                outs = [slot_of(f"\0{node.name}#{len(steps)}")]
            steps.append([kernel, ins, outs[0] if len(outs) == 1 else outs, [], node])
        self._read_slots = [slot_of(r) for r in self.reads]
        # slots fed by no one: constants are preset, the rest must be fed
        self._template: list[Any] = [None] * len(slot)
        fed_set = set(self.fed)
        self.missing = []
        for name, k in slot.items():
            if name in const and name not in fed_set:
                self._template[k] = const[name]
            elif name and name not in fed_set and name not in producers:
                self.missing.append(name)
        self._free_after(steps, producers)
        self._steps = [tuple(s) for s in steps]

    def _free_after(self, steps: list[list[Any]], producers: Mapping[str, Node]) -> None:
        """Per node, the slots of intermediates whose last reader it is (never a read)."""
        frees = live_ranges(self.nodes).frees(keep=self.reads, owned=producers)
        for k, node in enumerate(self.nodes):
            steps[k][3] = [self._slot_index(steps[k], node, n) for n in frees[k]]

    @staticmethod
    def _slot_index(step: list[Any], node: Node, name: str) -> int:
        ins, outs = step[1], step[2]
        for n, s in zip(node.inputs, ins):
            if n == name:
                return s
        outs = [outs] if isinstance(outs, int) else outs
        return next(s for n, s in zip(node.outputs, outs) if n == name)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Values of ``reads`` for the fed tensors."""
        if self.missing:
            raise GraphError(f"tensor(s) {self.missing} are needed but neither fed, constant "
                             f"nor produced; feed them (the graph's inputs are "
                             f"{self.graph.inputs})")
        env = self._template.copy()
        for name, k in zip(self.fed, self._fed_slots):
            env[k] = feeds[name]
        node = None
        try:
            for kernel, ins, out, free, node in self._steps:
                res = kernel([env[i] for i in ins])
                if out.__class__ is int:
                    env[out] = res
                else:
                    _scatter(env, node, out, res)
                for k in free:
                    env[k] = None
        except EdgeError:
            raise
        except Exception as exc:  # a kernel failure names the node that failed
            if node is None:
                raise
            shapes = [None if a is None else tuple(np.shape(a))
                      for a in (env[s] for s in _step_inputs(self._steps, node))]
            raise GraphError(f"node {node.name!r} ({node.op}) failed on input shapes "
                             f"{shapes}: {exc}") from exc
        return [env[k] for k in self._read_slots]


def _step_inputs(steps: Sequence[tuple], node: Node) -> list[int]:
    return next(s[1] for s in steps if s[4] is node)


def _scatter(env: list[Any], node: Node, outs: list[int], results: Sequence[Any]) -> None:
    """Store a multi-output node's results (the graph must get one per named output)."""
    if len(results) < sum(1 for o in node.outputs if o):
        raise GraphError(f"node {node.name!r} ({node.op}) produced {len(results)} outputs, "
                         f"the graph expects {len(node.outputs)}")
    for k, value in zip(outs, results):
        if k:
            env[k] = value
