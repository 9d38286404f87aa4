"""Which operators may appear in a compiled integer graph (docs/ops.md), and the check."""

from __future__ import annotations

from sdk.errors import GraphError
from sdk.graph import Graph
from sdk.ops.schema import ops_of

INTEGER_OPS = ops_of("integer")
LAYOUT_OPS = ops_of("layout")
BOUNDARY_OPS = ops_of("boundary")


def assert_integer_only(graph: Graph) -> None:
    """Raise GraphError unless ``graph`` is integer-only apart from its float boundary.

    Allowed: integer ops and layout ops; ``QuantizeLinear`` only reading graph inputs;
    ``DequantizeLinear`` only writing graph outputs; no float tensor anywhere else.
    """
    problems = []
    for n in graph.nodes:
        if n.op == "QuantizeLinear":
            if n.inputs[0] not in graph.inputs:
                problems.append(f"QuantizeLinear {n.name!r} reads {n.inputs[0]!r}, not a graph input")
        elif n.op == "DequantizeLinear":
            if n.outputs[0] not in graph.outputs:
                problems.append(f"DequantizeLinear {n.name!r} writes {n.outputs[0]!r}, "
                                "not a graph output")
        elif n.op not in INTEGER_OPS and n.op not in LAYOUT_OPS:
            problems.append(f"node {n.name!r} is the non-integer op {n.op}")
    boundary = set(graph.inputs) | set(graph.outputs)
    for t in graph.tensors.values():
        if t.dtype == "float32" and t.name not in boundary:
            problems.append(f"tensor {t.name!r} is float32")
    if problems:
        raise GraphError("graph is not integer-only: " + "; ".join(problems))
