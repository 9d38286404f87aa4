"""The one cost model: arithmetic of a node from its op's schema cost formula and the shapes.

Counting rules (one inference, batch as given by the shapes):

* **MACs** (multiply-accumulates): conv ``N·O·Ho·Wo·(C/g)·kh·kw`` (1-D: ``N·O·L·(C/g)·k``),
  fully-connected ``rows·K·N``, matmul ``Π(out)·K``.
* **adds**: bias adds (one per output), element-wise additions, pooling sums.
* **muls**: element-wise multiplications (``QMul``, ``Mul``).
* **requants**: dyadic requantizations, one per output element of an integer op that ends in
  ``requantize`` (``QAdd`` does three: two input rescales and the output). Float ops do none.
* **other**: remaining per-element work (compare, clamp, lookup, shift, exp approximation).

The memory planner, the compiler's size report, the profiler (which adds memory traffic and
spike-driven accumulates on top) and the firmware image all count with :func:`node_cost`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdk.errors import GraphError
from sdk.graph.ir import Graph, Node
from sdk.ops.schema import Cost, CostInputs, load_schema


def static_shape(graph: Graph) -> Callable[[str], tuple[int, ...]]:
    """A shape lookup over ``graph``'s tensors (dynamic ``-1`` dims count as 1)."""
    def shape(name: str) -> tuple[int, ...]:
        s = graph.tensor(name).shape
        if s is None:
            raise GraphError(f"tensor {name!r} has no known shape, so its node cannot be "
                             "counted; profile with inputs (a traced run) or set the shapes")
        return tuple(max(int(d), 1) for d in s)
    return shape


def node_cost(graph: Graph, node: Node,
              shape: Callable[[str], tuple[int, ...]] | None = None) -> Cost:
    """The arithmetic of ``node`` (zero for an op without a cost formula or undeclared)."""
    d = load_schema().get(node.op)
    if d is None:
        return Cost()
    consts = {i for i in node.inputs if i and graph.tensor(i).is_constant}
    cost = d.cost(CostInputs(node, shape or static_shape(graph), consts))
    if d.family == "float":
        cost.requants = 0
    return cost


def node_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one node (0 for ops without products, and for a node whose
    tensor shapes are not known: a graph saved before shape inference)."""
    try:
        return node_cost(graph, node).macs
    except GraphError:
        return 0


def graph_macs(graph: Graph) -> int:
    return sum(node_macs(graph, n) for n in graph.nodes)


def parameter_bytes(graph: Graph) -> int:
    """Bytes of every constant tensor (weights, biases, tables)."""
    return sum(t.nbytes for t in graph.initializers())


def numel(shape: tuple[int, ...] | None) -> int:
    return 0 if shape is None else int(np.prod([max(int(d), 1) for d in shape], dtype=np.int64))
