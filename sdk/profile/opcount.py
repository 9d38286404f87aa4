"""Operation and memory-traffic counts per node, from tensor shapes alone.

Counting rules (one inference, batch as given by the shapes):

* **MACs** (multiply-accumulates): conv ``N·O·Ho·Wo·(C/g)·kh·kw`` (1-D: ``N·O·L·(C/g)·k``),
  fully-connected ``rows·K·N``, matmul ``Π(out)·K``. A *spike-driven* layer (its activation
  input is a 0/1 spike tensor, see :mod:`sdk.profile.spikes`) multiplies nothing: each of
  its MACs becomes an **accumulate** (add a weight when the input spiked), scaled by the measured firing rate
  when one is given, else counted in full (an upper bound).
* **adds**: bias adds (one per output), element-wise additions, pooling sums.
* **muls**: element-wise multiplications (``QMul``, ``Mul``).
* **requants**: dyadic requantizations, one per output element of an integer op that ends
  in ``requantize`` (``QAdd`` does three: two input rescales and the output).
* **other**: remaining per-element work (compare, clamp, lookup, shift, exp approximation),
  ``OTHER_PER_ELEMENT[op]`` per output element.
* **bytes**: weights read (constant inputs, once), activations read (non-constant inputs)
  and written (outputs). View ops (``Reshape`` ...) move no bytes. This is the compulsory
  traffic; re-reads caused by small caches or tiling are not modelled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.graph.ir import Graph, Node
from sdk.profile.spikes import VIEW_OPS, spike_tensors

CONV_OPS = frozenset({"QConv1d", "QConv2d", "QDepthwiseConv2d", "Conv"})
FC_OPS = frozenset({"QFullyConnected"})
MATMUL_OPS = frozenset({"QMatMul", "MatMul"})
REQUANT_OUT_OPS = frozenset({"QConv1d", "QConv2d", "QDepthwiseConv2d", "QFullyConnected",
                             "QMatMul", "QMul", "QGlobalAvgPool", "Requantize", "ShiftGELU",
                             "ILayerNorm", "IRMSNorm"})
ADD_OPS = frozenset({"QAdd", "Add", "Sub", "Sum"})
MUL_OPS = frozenset({"QMul", "Mul"})
# per-output-element work that is neither a MAC, an add nor a requantization
OTHER_PER_ELEMENT = {
    "QClamp": 2, "Relu": 1, "Clip": 2, "QLut": 1, "QMaxPool2d": 0, "MaxPool": 0,
    "Shiftmax": 8, "Softmax": 4, "ShiftGELU": 8, "Gelu": 8, "ILayerNorm": 4, "IRMSNorm": 3,
    "LayerNormalization": 4, "Sigmoid": 4, "Tanh": 4, "QuantizeLinear": 2,
    "DequantizeLinear": 2, "Transpose": 0, "Concat": 0, "Slice": 0, "Gather": 0, "Pad": 0,
    "ResizeNearest": 0, "Div": 1, "LIF": 3, "QLIF": 3,
}
FLOAT_OPS_PREFIXLESS = frozenset({"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Relu",
                                  "Softmax", "LayerNormalization", "Gelu", "Sigmoid", "Tanh",
                                  "Sum", "Div", "Clip", "MaxPool", "AveragePool",
                                  "GlobalAveragePool"})


@dataclass
class OpCount:
    """Work and compulsory memory traffic of one node for one inference."""

    node: str
    op: str
    arithmetic: str                 # "int" or "fp32": which energy column applies
    macs: int = 0
    accumulates: float = 0          # spike-driven additions (may be a rate-scaled mean)
    adds: int = 0
    muls: int = 0
    requants: int = 0
    other: int = 0
    weight_bytes: int = 0
    activation_read_bytes: int = 0
    activation_write_bytes: int = 0
    spike_driven: bool = False
    accumulates_if_all_spike: int = 0   # the MACs a spike-driven layer would do densely

    @property
    def ops(self) -> float:
        """Arithmetic operations, vendor convention: a MAC is two ops."""
        return (2 * self.macs + self.accumulates + self.adds + self.muls + self.requants
                + self.other)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Shapes:
    def __init__(self, graph: Graph, shapes: dict[str, tuple[int, ...]] | None) -> None:
        self.graph, self.shapes = graph, shapes or {}

    def __call__(self, name: str) -> tuple[int, ...]:
        shape = self.shapes.get(name, self.graph.tensor(name).shape)
        if shape is None:
            raise GraphError(f"tensor {name!r} has no known shape, so its node cannot be "
                             "counted; profile with inputs (a traced run) or set the shapes")
        return tuple(int(d) for d in shape)

    def nbytes(self, name: str) -> int:
        return int(np.prod(self(name), dtype=np.int64)) * np.dtype(
            self.graph.tensor(name).dtype).itemsize

    def size(self, name: str) -> int:
        return int(np.prod(self(name), dtype=np.int64))


def count_node(graph: Graph, node: Node, shapes: dict[str, tuple[int, ...]] | None = None,
               spikes: set[str] | None = None,
               firing_rates: dict[str, float] | None = None) -> OpCount:
    """Count one node (see the module docstring for the rules)."""
    shape = _Shapes(graph, shapes)
    consts = {i for i in node.inputs if i and graph.tensor(i).is_constant}
    data_in = [i for i in node.inputs if i and i not in consts]
    outs = [o for o in node.outputs if o]
    float_op = node.op in FLOAT_OPS_PREFIXLESS or (
        outs and graph.tensor(outs[0]).dtype == "float32" and node.op not in ("DequantizeLinear",))
    c = OpCount(node.name, node.op, "fp32" if float_op else "int")
    out_elems = sum(shape.size(o) for o in outs)

    if node.op in VIEW_OPS:
        return c
    c.weight_bytes = sum(shape.nbytes(i) for i in consts)
    c.activation_read_bytes = sum(shape.nbytes(i) for i in data_in)
    c.activation_write_bytes = sum(shape.nbytes(o) for o in outs)
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])

    if node.op in CONV_OPS:
        w = shape(node.inputs[1])
        per_output = int(np.prod(w[1:]))           # (C/g)·kh·kw
        c.macs = out_elems * per_output
        c.adds = out_elems if has_bias else 0
    elif node.op in FC_OPS:
        x, w = shape(node.inputs[0]), shape(node.inputs[1])
        rows = int(np.prod(x[:-1], dtype=np.int64))
        c.macs = rows * w[0] * w[1]
        c.adds = rows * w[0] if has_bias else 0
    elif node.op == "Gemm":
        a = shape(node.inputs[0])
        k = a[0] if node.attrs.get("transA", 0) else a[1]
        c.macs = out_elems * k
        c.adds = out_elems if has_bias else 0
    elif node.op in MATMUL_OPS:
        c.macs = out_elems * shape(node.inputs[0])[-1]
    elif node.op in ("QAvgPool2d", "AveragePool"):
        kh, kw = node.attrs.get("kernel", node.attrs.get("kernel_shape", (1, 1)))
        c.adds = out_elems * kh * kw
        c.other = out_elems                         # the division by the count
    elif node.op in ("QMaxPool2d", "MaxPool"):
        kh, kw = node.attrs.get("kernel", node.attrs.get("kernel_shape", (1, 1)))
        c.other = out_elems * kh * kw               # compares
    elif node.op in ("QGlobalAvgPool", "GlobalAveragePool"):
        c.adds = shape.size(data_in[0])
    elif node.op in ADD_OPS:
        c.adds = out_elems * max(len(data_in) + len(consts) - 1, 1)
    elif node.op in MUL_OPS:
        c.muls = out_elems

    if not float_op:
        if node.op == "QAdd":
            c.requants = 3 * out_elems
        elif node.op in REQUANT_OUT_OPS:
            c.requants = out_elems
    c.other += OTHER_PER_ELEMENT.get(node.op, 0) * out_elems

    spikes = spike_tensors(graph) if spikes is None else spikes
    if c.macs and data_in and data_in[0] in spikes:
        rate = (firing_rates or {}).get(data_in[0], 1.0)
        c.accumulates = c.macs * rate
        c.accumulates_if_all_spike = c.macs
        c.macs = 0
        c.spike_driven = True
    return c


def count_graph(graph: Graph, shapes: dict[str, tuple[int, ...]] | None = None,
                firing_rates: dict[str, float] | None = None) -> list[OpCount]:
    """Counts for every node, in execution order."""
    spikes = spike_tensors(graph)
    return [count_node(graph, n, shapes, spikes, firing_rates)
            for n in graph.topological_order()]
