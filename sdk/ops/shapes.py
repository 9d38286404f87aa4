"""Shape and dtype inference over a Graph.

Shapes are tuples of ints; ``-1`` marks a dimension only known at run time (an ONNX
``dim_param`` such as a batch size). Inference walks the nodes in topological order with
three sources of truth, tried in this order:

1. *Value propagation*: when every input of a node has a known value (constants, ``Shape`` of
   a fully static tensor, and small results computed from them), the node is evaluated with
   its kernel; its outputs get values as well as shapes. This is what resolves
   ``Shape → Gather → Concat → Reshape`` chains.
2. *Rules* for the common ops (element-wise, Conv, pools, Gemm, MatMul, Concat, Reshape ...),
   cheap and exact with dynamic dims.
3. *Abstract evaluation* for everything else: the kernel runs on zero-filled inputs of the
   inferred shapes (dynamic dims set to 2 and then 3; a dim that differs between the two runs
   is dynamic in the output).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sdk.errors import EdgeError, GraphError
from sdk.graph.ir import DTYPES, Graph, Node
from sdk.graph.state import inner_input

Shape = tuple[int, ...]
DYN = -1
_VALUE_LIMIT = 1 << 16  # elements: larger values are not kept for propagation


def broadcast(*shapes: Shape) -> Shape:
    """ONNX multidirectional broadcasting with dynamic dims (-1)."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d not in (1, DYN)}
        if len(known) > 1:
            raise GraphError(f"shapes {list(shapes)} do not broadcast")
        if known:
            out.append(known.pop())
        elif DYN in dims:
            out.append(DYN)
        else:
            out.append(1)
    return tuple(out)


def _window_out(in_dim: int, k: int, s: int, d: int, pb: int, pe: int, ceil: bool) -> int:
    if in_dim == DYN:
        return DYN
    span = in_dim + pb + pe - ((k - 1) * d + 1)
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= in_dim + pb:
        out -= 1
    return out


def _spatial_out(x: Shape, kernel: list[int], attrs: dict[str, Any], ceil: bool) -> list[int]:
    k = len(kernel)
    strides = list(attrs.get("strides") or [1] * k)
    dil = list(attrs.get("dilations") or [1] * k)
    auto = attrs.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return [DYN if x[2 + i] == DYN else -(-x[2 + i] // strides[i]) for i in range(k)]
    pads = [0] * (2 * k) if auto == "VALID" else list(attrs.get("pads") or [0] * (2 * k))
    return [_window_out(x[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[i + k], ceil)
            for i in range(k)]


# -- rules: (input shapes, input dtypes, input values, attrs) -> output (shape, dtype) list --
Rule = Callable[[list, list, list, dict], "list[tuple[Shape, str]] | None"]
RULES: dict[str, Rule] = {}


def rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            RULES[op] = fn
        return fn

    return deco


@rule("Relu", "LeakyRelu", "PRelu", "Elu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
      "Softplus", "Softmax", "LogSoftmax", "Gelu", "Erf", "Sqrt", "Exp", "Log", "Neg", "Abs",
      "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Identity",
      "BatchNormalization", "InstanceNormalization", "LRN", "Not", "RMSNormalization")
def _same(shapes, dtypes, values, attrs):
    return [(shapes[0], dtypes[0])]


@rule("Dropout")
def _dropout(shapes, dtypes, values, attrs):
    return [(shapes[0], dtypes[0]), (shapes[0], "bool")]


@rule("LayerNormalization")
def _layernorm(shapes, dtypes, values, attrs):
    x = shapes[0]
    axis = int(attrs.get("axis", -1)) % len(x)
    stat = tuple(x[:axis]) + (1,) * (len(x) - axis)
    return [(x, dtypes[0]), (stat, dtypes[0]), (stat, dtypes[0])]


@rule("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Sum", "Max", "Min", "Mean")
def _arith(shapes, dtypes, values, attrs):
    return [(broadcast(*[s for s in shapes if s is not None]), dtypes[0])]


@rule("Greater", "Less", "Equal", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor")
def _compare(shapes, dtypes, values, attrs):
    return [(broadcast(shapes[0], shapes[1]), "bool")]


@rule("MaskedMean")
def _masked_mean(shapes, dtypes, values, attrs):
    x = shapes[0]
    return [((x[0], 1, x[2]), dtypes[0])]


@rule("IsNaN", "IsInf")
def _is_class(shapes, dtypes, values, attrs):
    return [(shapes[0], "bool")]


@rule("Where")
def _where(shapes, dtypes, values, attrs):
    return [(broadcast(*shapes[:3]), dtypes[1])]


@rule("Conv")
def _conv(shapes, dtypes, values, attrs):
    x, w = shapes[0], shapes[1]
    return [((x[0], w[0], *_spatial_out(x, list(w[2:]), attrs, False)), dtypes[0])]


@rule("MaxPool", "AveragePool")
def _pool(shapes, dtypes, values, attrs):
    x = shapes[0]
    out = (x[0], x[1], *_spatial_out(x, list(attrs["kernel_shape"]), attrs,
                                     bool(int(attrs.get("ceil_mode", 0)))))
    return [(out, dtypes[0])]


@rule("GlobalAveragePool", "GlobalMaxPool")
def _gpool(shapes, dtypes, values, attrs):
    x = shapes[0]
    return [((x[0], x[1]) + (1,) * (len(x) - 2), dtypes[0])]


@rule("Gemm")
def _gemm(shapes, dtypes, values, attrs):
    a, b = shapes[0], shapes[1]
    m = a[1] if int(attrs.get("transA", 0)) else a[0]
    n = b[0] if int(attrs.get("transB", 0)) else b[1]
    return [((m, n), dtypes[0])]


@rule("MatMul")
def _matmul(shapes, dtypes, values, attrs):
    a, b = shapes[0], shapes[1]
    if len(a) == 1 and len(b) == 1:
        return [((), dtypes[0])]
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    batch = broadcast(a2[:-2], b2[:-2]) if (a2[:-2] or b2[:-2]) else ()
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [(out, dtypes[0])]


@rule("Concat")
def _concat(shapes, dtypes, values, attrs):
    present = [s for s in shapes if s is not None]
    axis = int(attrs["axis"]) % len(present[0])
    total = 0
    for s in present:
        if s[axis] == DYN:
            total = DYN
            break
        total += s[axis]
    out = list(present[0])
    out[axis] = total
    return [(tuple(out), dtypes[0])]


@rule("Transpose")
def _transpose(shapes, dtypes, values, attrs):
    x = shapes[0]
    perm = attrs.get("perm") or list(reversed(range(len(x))))
    return [(tuple(x[p] for p in perm), dtypes[0])]


@rule("Flatten")
def _flatten(shapes, dtypes, values, attrs):
    x = shapes[0]
    a = int(attrs.get("axis", 1))
    a = a + len(x) if a < 0 else a

    def prod(ds):
        return DYN if DYN in ds else int(np.prod(ds, dtype=np.int64))
    return [((prod(x[:a]), prod(x[a:])), dtypes[0])]


@rule("Reshape")
def _reshape(shapes, dtypes, values, attrs):
    target = values[1] if len(values) > 1 and values[1] is not None else attrs.get("shape")
    if target is None:
        return None
    x = shapes[0]
    dims = [int(d) for d in np.asarray(target).ravel()]
    if not int(attrs.get("allowzero", 0)):
        dims = [x[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
        if DYN in x or dims.count(-1) > 1:
            return None
        dims[dims.index(-1)] = int(np.prod(x, dtype=np.int64)) // max(known, 1)
    return [(tuple(dims), dtypes[0])]


@rule("Shape")
def _shape(shapes, dtypes, values, attrs):
    n = len(shapes[0][int(attrs.get("start", 0)):attrs.get("end")])
    return [((n,), "int64")]


@rule("Cast")
def _cast(shapes, dtypes, values, attrs):
    from sdk.ops.float_ops import ONNX_DTYPE

    to = attrs["to"]
    return [(shapes[0], ONNX_DTYPE.get(to, to) if isinstance(to, int) else to)]


@rule("Gather")
def _gather(shapes, dtypes, values, attrs):
    x, idx = shapes[0], shapes[1]
    axis = int(attrs.get("axis", 0)) % len(x)
    return [(tuple(x[:axis]) + tuple(idx) + tuple(x[axis + 1:]), dtypes[0])]


# Operands whose *values* decide the output shape: unknown values leave the shape unknown.
_SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Slice": (1, 2, 3, 4), "Expand": (1,), "Tile": (1,), "Pad": (1, 3),
    "Split": (1,), "Squeeze": (1,), "Unsqueeze": (1,), "Resize": (2, 3),
    "ConstantOfShape": (0,), "Range": (0, 1, 2),
}


# -- driver ----------------------------------------------------------------------------------
def _schema_rule(op: str) -> Rule | None:
    """The shape rule the op schema declares for ``op`` (integer ops), if any."""
    from sdk.ops.schema import opdef

    d = opdef(op)
    return None if d is None else d.shape


def _is_static(shape: Shape | None) -> bool:
    return shape is not None and DYN not in shape


def _evaluate(node: Node, args: list, fast: bool) -> list[np.ndarray]:
    from sdk.ops.registry import OPS, load_all

    load_all()
    if node.op not in OPS:
        raise GraphError(f"cannot infer shapes through node {node.name!r}: no kernel for op "
                         f"{node.op!r}")
    try:
        return OPS[node.op](args, node.attrs, fast)
    except EdgeError:
        raise
    except Exception as exc:  # a kernel that rejects its operands names the node
        shapes = [None if a is None else tuple(np.shape(a)) for a in args]
        raise GraphError(f"node {node.name!r} ({node.op}) cannot run on input shapes "
                         f"{shapes}: {exc}") from exc


def _abstract(node: Node, shapes: list, dtypes: list, values: list, fast: bool):
    """Shapes/dtypes of ``node``'s outputs by running its kernel on zeros."""
    def run(fill: int) -> list[np.ndarray]:
        args = []
        for s, d, v in zip(shapes, dtypes, values):
            if s is None:
                args.append(None)
            elif v is not None:
                args.append(v)
            else:
                args.append(np.zeros(tuple(fill if e == DYN else e for e in s), dtype=d))
        return _evaluate(node, args, fast)

    first = run(2)
    if all(_is_static(s) for s in shapes if s is not None):
        return [(tuple(r.shape), str(r.dtype)) for r in first]
    second = run(3)
    out = []
    for a, b in zip(first, second):
        dims = tuple(x if x == y else DYN for x, y in zip(a.shape, b.shape))
        out.append((dims, str(a.dtype)))
    return out


def infer_shapes(graph: Graph, fast: bool = True) -> Graph:
    """Fill ``shape`` and ``dtype`` of every tensor a node produces (in place; returns graph).

    Graph inputs must already carry shapes. A tensor whose shape depends on a value known
    only at run time (``Reshape`` to a computed shape, ``ConstantOfShape`` of an input) keeps
    ``shape = None``, and so does everything computed from it.
    """
    values: dict[str, np.ndarray] = {t.name: t.data for t in graph.tensors.values()
                                     if t.data is not None and t.data.size <= _VALUE_LIMIT}
    for name in graph.inputs:
        t = graph.tensor(name)
        if t.shape is None and t.data is None:
            raise GraphError(f"graph input {name!r} has no shape; give it one "
                             "(use -1 for a dimension known only at run time)")
    for node in graph.topological_order():
        shapes, dtypes, vals = [], [], []
        unknown = False
        for i in node.inputs:
            if not i:
                shapes.append(None), dtypes.append(None), vals.append(None)
                continue
            t = graph.tensor(i)
            unknown |= t.shape is None
            shapes.append(None if t.shape is None else tuple(t.shape))
            dtypes.append(t.dtype), vals.append(values.get(i))
        results: list[tuple[Shape, str]] | None = None
        present = [k for k, i in enumerate(node.inputs) if i]
        shape_operands = _SHAPE_OPERANDS.get(node.op, ())
        if node.op.startswith("Reduce"):
            shape_operands = (1,)
        if unknown or any(k < len(vals) and node.inputs[k] and vals[k] is None
                          for k in shape_operands):
            # the output shape depends on a value known only at run time
            for name in node.outputs:
                if name and name in graph.tensors and graph.tensors[name].data is None:
                    graph.tensors[name].shape = None
                elif name and name not in graph.tensors:
                    from sdk.graph.ir import Tensor

                    graph.add_tensor(Tensor(name, "float32"))
            continue
        if node.op == "Shape" and _is_static(shapes[0]):
            out = _evaluate(node, [np.zeros(shapes[0], np.uint8)], fast)
            values[node.outputs[0]] = out[0]
            results = [(tuple(out[0].shape), "int64")]
        elif all(vals[k] is not None for k in present):
            out = _evaluate(node, list(vals), fast)
            for name, v in zip(node.outputs, out):
                if name and v.size <= _VALUE_LIMIT:
                    values[name] = v
            results = [(tuple(v.shape), str(v.dtype)) for v in out]
        elif node.op in RULES:
            results = RULES[node.op](shapes, dtypes, vals, node.attrs)
        elif (rule_of := _schema_rule(node.op)) is not None:
            results = rule_of(shapes, dtypes, vals, node.attrs)
        if results is None:
            results = _abstract(node, shapes, dtypes, vals, fast)
        for name, (shape, dtype) in zip(node.outputs, results):
            if not name:
                continue
            if dtype not in DTYPES:
                raise GraphError(f"node {node.name!r} ({node.op}) produces dtype {dtype}, "
                                 f"which the IR does not hold; expected one of {DTYPES}")
            t = graph.tensors.get(name)
            if t is None:
                from sdk.graph.ir import Tensor

                graph.add_tensor(Tensor(name, dtype, shape))
            elif t.data is None:
                t.shape, t.dtype = tuple(int(d) for d in shape), dtype
    return graph


def with_input_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> Graph:
    """A copy of ``graph`` with the given input shapes and every activation's shape inferred
    again (e.g. the same integer graph for ``T`` = 1 token instead of a whole prefill)."""
    g = graph.copy()
    for name, shape in shapes.items():
        if name not in g.inputs:
            raise GraphError(f"{name!r} is not an input of graph {g.name!r}: {g.inputs}")
        g.tensor(name).shape = tuple(int(d) for d in shape)
    infer_shapes(g)
    consumers = g.consumers()
    for name, shape in shapes.items():  # the integer tensor behind a QuantizeLinear too
        inner = inner_input(g, name, consumers)
        if inner != name:
            g.tensor(inner).shape = tuple(int(d) for d in shape)
    return g
