"""Graph IR: tensors with quantization, nodes, graphs."""
from sdk.graph.ir import DTYPES, Graph, Node, QuantParams, StateDecl, Tensor, qrange

__all__ = ["DTYPES", "Graph", "Node", "QuantParams", "StateDecl", "Tensor", "qrange"]
