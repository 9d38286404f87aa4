"""Static cost of an integer graph: multiply-accumulates per node and parameter bytes."""

from __future__ import annotations

import numpy as np

from sdk.graph import Graph, Node


def _numel(shape: tuple[int, ...] | None) -> int:
    if shape is None:
        return 0
    return int(np.prod([max(int(d), 1) for d in shape], dtype=np.int64))


def node_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one node (0 for ops without products).

    Conv: ``|out|·(C/group)·k``; FullyConnected / MatMul: ``|out|·K``; Mul: ``|out|``.
    """
    out = graph.tensors.get(node.outputs[0]) if node.outputs else None
    n_out = _numel(out.shape if out else None)
    if node.op in ("QConv1d", "QConv2d", "QDepthwiseConv2d", "Conv"):
        w = graph.tensor(node.inputs[1]).shape
        return n_out * int(np.prod(w[1:]))
    if node.op in ("QFullyConnected",):
        return n_out * graph.tensor(node.inputs[1]).shape[1]
    if node.op in ("QMatMul", "MatMul", "Gemm"):
        a = graph.tensor(node.inputs[0]).shape
        return n_out * int(a[-1]) if a else 0
    if node.op in ("QMul",):
        return n_out
    return 0


def graph_macs(graph: Graph) -> int:
    return sum(node_macs(graph, n) for n in graph.nodes)


def parameter_bytes(graph: Graph) -> int:
    """Bytes of every constant tensor (weights, biases, tables)."""
    return sum(t.nbytes for t in graph.initializers())
