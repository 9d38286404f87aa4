"""The graph intermediate representation: Tensor, QuantParams, Node, Graph.

A graph is a list of nodes over named tensors. Constants (weights, biases, lookup tables)
are tensors with ``data``; graph inputs and outputs are tensors named in ``Graph.inputs`` /
``Graph.outputs``. Float graphs use ONNX operator names and ONNX attribute semantics;
integer graphs use the SDK's own operator names (see ``docs/ops.md``), all prefixed ``q``
or named after the paper (``Shiftmax``, ``ILayerNorm`` ...).
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.errors import GraphError

DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "bool")

_QRANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
           "int32": (-(2**31), 2**31 - 1)}


def _numbers(v: Any, types: tuple[type, ...]) -> bool:
    """A JSON scalar or flat list of ``types`` (bool excluded), every float finite."""
    items = v if isinstance(v, list) else [v]
    return all(isinstance(e, types) and not isinstance(e, bool)
               and (np.isfinite(e) if isinstance(e, float) else abs(e) < 2**53)
               for e in items)


def qrange(dtype: str) -> tuple[int, int]:
    """Inclusive integer range of an integer dtype name."""
    try:
        return _QRANGE[dtype]
    except KeyError:
        raise GraphError(f"dtype {dtype!r} is not a quantized integer type; "
                         f"expected one of {sorted(_QRANGE)}") from None


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    ``scale`` and ``zero_point`` are 0-d for per-tensor quantization, or 1-d of length
    ``shape[axis]`` for per-axis (per-channel) quantization.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    def __post_init__(self) -> None:
        self.scale = np.asarray(self.scale, dtype=np.float32)
        self.zero_point = np.asarray(self.zero_point, dtype=np.int32)
        if self.scale.shape != self.zero_point.shape:
            raise GraphError(f"quantization scale shape {self.scale.shape} differs from "
                             f"zero-point shape {self.zero_point.shape}")
        if self.scale.ndim > 1:
            raise GraphError("quantization scale must be a scalar or a 1-d per-axis vector")
        if self.scale.ndim == 1 and self.axis is None:
            raise GraphError("per-axis quantization needs an axis")
        if self.scale.ndim == 0:
            self.axis = None
        if not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise GraphError(f"quantization scale must be finite and > 0, got {self.scale}")

    @property
    def per_axis(self) -> bool:
        return self.scale.ndim == 1

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale.tolist(), "zero_point": self.zero_point.tolist(),
                "axis": self.axis}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QuantParams:
        """From :meth:`to_json`; a wrong type or an out-of-range value is a GraphError naming
        the field."""
        if not isinstance(d, dict):
            raise GraphError(f"quantization is {type(d).__name__}, not an object")
        for key in ("scale", "zero_point"):
            if key not in d:
                raise GraphError(f"quantization field {key!r} is missing")
        scale, zp, axis = d["scale"], d["zero_point"], d.get("axis")
        if not _numbers(scale, (int, float)):
            raise GraphError("quantization field 'scale' is not a number or a list of numbers")
        if not _numbers(zp, (int,)) or any(
                not -(2**31) <= z < 2**31 for z in (zp if isinstance(zp, list) else [zp])):
            raise GraphError("quantization field 'zero_point' is not an int32 or a list of "
                             "int32")
        if axis is not None and (not isinstance(axis, int) or isinstance(axis, bool)
                                 or not -64 <= axis < 64):
            raise GraphError(f"quantization field 'axis' is {axis!r}, not a small integer")
        with np.errstate(over="ignore"):
            return cls(np.asarray(scale, np.float32), np.asarray(zp, np.int32), axis)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantParams):
            return NotImplemented
        return (self.axis == other.axis and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))


@dataclass
class Tensor:
    """A named value: dtype, shape, optional quantization, optional constant data."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None = None
    quant: QuantParams | None = None
    data: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise GraphError(f"tensor {self.name!r}: unknown dtype {self.dtype!r}; "
                             f"expected one of {DTYPES}")
        if self.data is not None:
            self.data = np.asarray(self.data)
            if str(self.data.dtype) != self.dtype:
                self.data = self.data.astype(self.dtype)
            self.shape = tuple(int(d) for d in self.data.shape)
        elif self.shape is not None:
            self.shape = tuple(int(d) for d in self.shape)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        if self.shape is None:
            raise GraphError(f"tensor {self.name!r} has no known shape")
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


STATE_KINDS = ("recurrent", "kv_cache")


@dataclass
class StateDecl:
    """One piece of memory a graph carries between calls: ``input`` at call ``t + 1`` is
    ``output`` of call ``t``.

    ``kind``: ``recurrent`` (output has the input's shape and replaces it) or ``kv_cache``
    (a fixed-capacity cache ``[B, H, capacity, D]`` written by ``KVCacheWrite`` at the
    position fed through ``position``, an int32 scalar graph input that the runtime
    advances by the number of rows written, ``rows_per_call`` taken from the written
    tensor's shape each call). ``dtype`` / ``quant``: the integer grid the state is carried
    on (the raw tensor behind any QuantizeLinear/DequantizeLinear boundary), None for float
    state. ``raw_input`` / ``raw_output``: those raw tensors' names ('' = the boundary names
    themselves).
    """

    input: str
    output: str
    kind: str = "recurrent"
    capacity: int | None = None
    position: str = ""
    dtype: str = "float32"
    quant: QuantParams | None = None
    raw_input: str = ""
    raw_output: str = ""

    def __post_init__(self) -> None:
        if self.kind not in STATE_KINDS:
            raise GraphError(f"state {self.input!r}: kind {self.kind!r} is not one of "
                             f"{STATE_KINDS}")
        if self.kind == "kv_cache" and (self.capacity is None or self.capacity < 1
                                        or not self.position):
            raise GraphError(f"kv_cache state {self.input!r} needs a capacity >= 1 and the "
                             "name of its position input")

    def to_json(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "kind": self.kind,
                "capacity": self.capacity, "position": self.position, "dtype": self.dtype,
                "quant": self.quant.to_json() if self.quant is not None else None,
                "raw_input": self.raw_input, "raw_output": self.raw_output}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StateDecl:
        """From :meth:`to_json`; a wrong type is a GraphError naming the field."""
        if not isinstance(d, dict):
            raise GraphError(f"state declaration is {type(d).__name__}, not an object")
        for key in ("input", "output"):
            if not isinstance(d.get(key), str):
                raise GraphError(f"state field {key!r} is missing or not a name")
        for key in ("kind", "position", "dtype", "raw_input", "raw_output"):
            if key in d and not isinstance(d[key], str):
                raise GraphError(f"state {d['input']!r}: field {key!r} is not a string")
        cap = d.get("capacity")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool)
                                or not 0 < cap < 2**31):
            raise GraphError(f"state {d['input']!r}: capacity {cap!r} is not an integer in "
                             "[1, 2**31)")
        if d.get("dtype", "float32") not in DTYPES:
            raise GraphError(f"state {d['input']!r}: dtype {d.get('dtype')!r} is not one of "
                             f"{DTYPES}")
        q = d.get("quant")
        return cls(d["input"], d["output"], d.get("kind", "recurrent"), d.get("capacity"),
                   d.get("position", ""), d.get("dtype", "float32"),
                   QuantParams.from_json(q) if q else None, d.get("raw_input", ""),
                   d.get("raw_output", ""))


@dataclass
class Node:
    """One operator application. ``inputs`` may hold '' for an omitted optional input."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


class Graph:
    """A directed acyclic graph of nodes over named tensors."""

    def __init__(self, name: str = "model") -> None:
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.metadata: dict[str, Any] = {}
        #: the memory carried between calls, declared (see StateDecl); empty = stateless
        self.state: list[StateDecl] = []

    # -- construction -------------------------------------------------------------------
    def add_tensor(self, tensor: Tensor) -> Tensor:
        self.tensors[tensor.name] = tensor
        return tensor

    def add_constant(self, name: str, data: np.ndarray, quant: QuantParams | None = None) -> Tensor:
        data = np.asarray(data)
        return self.add_tensor(Tensor(name, str(data.dtype), data.shape, quant, data))

    def add_node(self, op: str, inputs: Iterable[str], outputs: Iterable[str],
                 name: str = "", **attrs: Any) -> Node:
        node = Node(op, list(inputs), list(outputs), dict(attrs), name or f"{op}_{len(self.nodes)}")
        self.nodes.append(node)
        return node

    def unique_name(self, base: str) -> str:
        if base not in self.tensors:
            return base
        i = 1
        while f"{base}_{i}" in self.tensors:
            i += 1
        return f"{base}_{i}"

    def copy(self) -> Graph:
        return copy.deepcopy(self)

    def declare_state(self, decl: StateDecl) -> StateDecl:
        """Add (or replace, by input name) one state declaration; checks that its input is a
        graph input and its output a graph output."""
        if decl.input not in self.inputs:
            raise GraphError(f"state input {decl.input!r} is not a graph input; the inputs "
                             f"are {self.inputs}")
        if decl.output not in self.outputs:
            raise GraphError(f"state output {decl.output!r} (of {decl.input!r}) is not a "
                             f"graph output; the outputs are {self.outputs}")
        if decl.position and decl.position not in self.inputs:
            raise GraphError(f"cache {decl.input!r}: position input {decl.position!r} is not "
                             "a graph input")
        self.state = [d for d in self.state if d.input != decl.input] + [decl]
        return decl

    def state_pairs(self) -> dict[str, str]:
        """Declared state input -> state output."""
        return {d.input: d.output for d in self.state}

    # -- queries ------------------------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"graph {self.name!r} has no tensor named {name!r}") from None

    def producers(self) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for n in self.nodes:
            for o in n.outputs:
                if o:
                    out[o] = n
        return out

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def initializers(self) -> list[Tensor]:
        return [t for t in self.tensors.values() if t.is_constant]

    def op_types(self) -> list[str]:
        seen: dict[str, None] = {}
        for n in self.nodes:
            seen.setdefault(n.op, None)
        return list(seen)

    # -- ordering and checks ------------------------------------------------------------
    def topological_order(self) -> list[Node]:
        """Nodes ordered so that each runs after the producers of its inputs (Kahn).

        Ties keep the original node order, so an already sorted graph is unchanged.
        Raises GraphError naming the nodes on a cycle.
        """
        producers = self.producers()
        index = {id(n): k for k, n in enumerate(self.nodes)}
        deps: dict[int, set[int]] = {}
        users: dict[int, list[Node]] = {}
        for n in self.nodes:
            d = set()
            for i in n.inputs:
                p = producers.get(i)
                if p is not None and p is not n:
                    d.add(id(p))
                    users.setdefault(id(p), []).append(n)
                elif p is n:
                    raise GraphError(f"node {n.name!r} ({n.op}) consumes its own output {i!r}")
            deps[id(n)] = d
        ready = [(index[id(n)], n) for n in self.nodes if not deps[id(n)]]
        heapq.heapify(ready)
        order: list[Node] = []
        done: set[int] = set()
        while ready:
            _, n = heapq.heappop(ready)
            if id(n) in done:
                continue
            done.add(id(n))
            order.append(n)
            for u in users.get(id(n), []):
                deps[id(u)].discard(id(n))
                if not deps[id(u)] and id(u) not in done:
                    heapq.heappush(ready, (index[id(u)], u))
        if len(order) != len(self.nodes):
            stuck = [n.name for n in self.nodes if id(n) not in done]
            raise GraphError(f"graph {self.name!r} has a cycle through nodes {stuck[:10]}")
        return order

    def sort(self) -> Graph:
        self.nodes = self.topological_order()
        return self

    def validate(self) -> None:
        """Check structure: names resolve, single producers, inputs/outputs exist, acyclic.

        Raises GraphError with one message listing every problem found.
        """
        problems: list[str] = []
        produced: dict[str, str] = {}
        for n in self.nodes:
            for o in n.outputs:
                if not o:
                    continue
                if o in produced:
                    problems.append(f"tensor {o!r} is produced by both {produced[o]!r} and {n.name!r}")
                produced[o] = n.name
                if o not in self.tensors:
                    problems.append(f"node {n.name!r} ({n.op}) output {o!r} has no tensor entry")
        for name in self.inputs:
            if name not in self.tensors:
                problems.append(f"graph input {name!r} has no tensor entry")
            elif name in produced:
                problems.append(f"graph input {name!r} is also produced by node {produced[name]!r}")
        available = set(self.inputs) | {t.name for t in self.initializers()} | set(produced)
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in available:
                    problems.append(f"node {n.name!r} ({n.op}) reads {i!r}, which is neither a "
                                    "graph input, a constant nor produced by any node")
        for name in self.outputs:
            if name not in available:
                problems.append(f"graph output {name!r} is never produced")
        if problems:
            raise GraphError(f"graph {self.name!r} is invalid: " + "; ".join(problems))
        self.topological_order()

    def __repr__(self) -> str:
        return (f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs={self.inputs}, "
                f"outputs={self.outputs})")
