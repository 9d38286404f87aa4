"""Operation and memory-traffic counts per node, from tensor shapes alone.

The arithmetic comes from the one cost model (:mod:`sdk.ops.cost`, each op's formula in the
op schema); this module adds memory traffic and spike-driven accumulates.

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
from sdk.ops.cost import node_cost
from sdk.ops.schema import load_schema
from sdk.profile.spikes import VIEW_OPS, spike_tensors


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
    d = load_schema().get(node.op)
    float_op = (d is not None and d.family == "float") or (
        outs and graph.tensor(outs[0]).dtype == "float32" and node.op not in ("DequantizeLinear",))
    c = OpCount(node.name, node.op, "fp32" if float_op else "int")

    if node.op in VIEW_OPS:
        return c
    c.weight_bytes = sum(shape.nbytes(i) for i in consts)
    c.activation_read_bytes = sum(shape.nbytes(i) for i in data_in)
    c.activation_write_bytes = sum(shape.nbytes(o) for o in outs)
    cost = node_cost(graph, node, shape)
    c.macs, c.adds, c.muls, c.other = cost.macs, cost.adds, cost.muls, cost.other
    c.requants = 0 if float_op else cost.requants

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
