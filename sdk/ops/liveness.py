"""Liveness, computed once: which nodes a request needs, and when each tensor is born and dies.

The interpreter and its prepared :class:`~sdk.ops.program.Program` free an intermediate right
after its last reader; the memory planner gives a tensor arena bytes from the step that
writes it to the step that last reads it. Both read the same :class:`LiveRanges`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sdk.graph.ir import Graph, Node


def needed_nodes(graph: Graph, fed: Iterable[str], reads: Sequence[str],
                 order: list[Node] | None = None) -> tuple[list[Node], dict[str, Node]]:
    """The nodes ``reads`` depend on, in topological order, and the producers of the tensors
    that are not fed (a fed tensor is a source even when a node produces it)."""
    fed_set = set(fed)
    producers = {k: v for k, v in graph.producers().items() if k not in fed_set}
    needed: set[int] = set()
    stack = [producers[r] for r in reads if r in producers]
    while stack:
        node = stack.pop()
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(producers[i] for i in node.inputs if i in producers)
    order = graph.topological_order() if order is None else order
    return [n for n in order if id(n) in needed], producers


@dataclass
class LiveRanges:
    """``first[t]``/``last[t]``: the steps (indices into ``nodes``) that write and last read
    tensor ``t``; sources are live from step 0 and kept tensors to the last step."""

    nodes: list[Node]
    first: dict[str, int]
    last: dict[str, int]

    def frees(self, keep: Iterable[str], owned: Iterable[str]) -> list[list[str]]:
        """Per step, the ``owned`` tensors (not ``keep``) whose last reader it is, in the
        order they appear in the node (inputs, then outputs)."""
        keep_set, owned_set = set(keep), set(owned)
        out: list[list[str]] = []
        for k, node in enumerate(self.nodes):
            names = dict.fromkeys([i for i in node.inputs if i] + [o for o in node.outputs if o])
            out.append([n for n in names if n in owned_set and n not in keep_set
                        and self.last.get(n) == k])
        return out


def live_ranges(nodes: list[Node], sources: Iterable[str] = (), keep: Iterable[str] = (),
                skip: Iterable[str] = ()) -> LiveRanges:
    """Live ranges over ``nodes`` (in execution order): ``sources`` (graph inputs) are live
    from step 0, each tensor a node writes from that step, every tensor to its last reader
    (an output nobody reads dies at its own step); tensors in ``keep`` (the results) live to
    the last step; tensors in ``skip`` (constants) are not tracked."""
    skip_set = set(skip)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for name in sources:
        if name not in skip_set:
            first[name] = last[name] = 0
    for step, node in enumerate(nodes):
        for i in node.inputs:
            if i and i not in skip_set:
                first.setdefault(i, 0)
                last[i] = step
        for o in node.outputs:
            if o:
                first[o] = step
                last[o] = max(last.get(o, step), step)
    end = max(len(nodes), 1) - 1
    for name in keep:
        if name in first:
            last[name] = end
    return LiveRanges(nodes, first, last)
