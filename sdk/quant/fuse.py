"""Float-graph rewrites that run before quantization; each keeps the surviving tensor names,
so ranges observed on the original graph still apply.

* ``Constant`` nodes become constant tensors.
* ``BatchNormalization`` after a ``Conv`` folds into the conv:
  ``W' = W·γ/√(σ²+ε)`` per output channel, ``b' = (b − μ)·γ/√(σ²+ε) + β``.
* The Erf form of GELU that torch exports, ``x·0.5·(1 + erf(x/√2))`` in its usual node
  orders, becomes one ``Gelu`` node.
* LayerNorm spelled out in primitives (ReduceMean, Sub, Pow, Sqrt, Div, Mul, Add) becomes
  one ``LayerNormalization``.
"""

from __future__ import annotations

import numpy as np

from sdk.graph import Graph, Node


def const_value(graph: Graph, name: str) -> np.ndarray | None:
    """The constant data behind ``name``, or None when it is computed at run time."""
    t = graph.tensors.get(name) if name else None
    return None if t is None or t.data is None else t.data


def constants_to_tensors(graph: Graph) -> None:
    """Replace ``Constant`` nodes by constant tensors."""
    keep = []
    for n in graph.nodes:
        if n.op == "Constant" and "value" in n.attrs:
            graph.add_constant(n.outputs[0], np.asarray(n.attrs["value"]))
        elif n.op == "Constant" and any(k in n.attrs for k in ("value_float", "value_floats")):
            v = n.attrs.get("value_float", n.attrs.get("value_floats"))
            graph.add_constant(n.outputs[0], np.asarray(v, np.float32))
        elif n.op == "Constant" and any(k in n.attrs for k in ("value_int", "value_ints")):
            v = n.attrs.get("value_int", n.attrs.get("value_ints"))
            graph.add_constant(n.outputs[0], np.asarray(v, np.int64))
        else:
            keep.append(n)
    graph.nodes = keep


def _sole_consumer(graph: Graph, name: str, consumers: dict[str, list[Node]]) -> Node | None:
    users = consumers.get(name, [])
    if len(users) != 1 or name in graph.outputs:
        return None
    return users[0]


def fold_batchnorm(graph: Graph, keep: frozenset[str] = frozenset()) -> None:
    """Fold every BatchNormalization whose input is a Conv's sole output into that Conv,
    except where that output is in ``keep`` (a QDQ model quantizes it: keep its rounding)."""
    producers, consumers = graph.producers(), graph.consumers()
    drop: set[int] = set()
    for bn in graph.nodes:
        if bn.op != "BatchNormalization" or bn.inputs[0] in keep:
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or _sole_consumer(graph, bn.inputs[0], consumers) is not bn:
            continue
        w = const_value(graph, conv.inputs[1])
        params = [const_value(graph, i) for i in bn.inputs[1:5]]
        if w is None or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (np.asarray(p, np.float64) for p in params)
        eps = float(bn.attrs.get("epsilon", 1e-5))
        k = gamma / np.sqrt(var + eps)
        b = const_value(graph, conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        b = np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64)
        w_new = (w.astype(np.float64) * k.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        b_new = ((b - mean) * k + beta).astype(np.float32)
        wn = graph.unique_name(conv.inputs[1] + "_bnfold")
        graph.add_constant(wn, w_new)
        bname = graph.unique_name(conv.name + "_bias_bnfold")
        graph.add_constant(bname, b_new)
        conv.inputs = [conv.inputs[0], wn, bname]
        conv.outputs = [bn.outputs[0]]
        drop.add(id(bn))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]


def _is_scalar(graph: Graph, name: str, value: float, tol: float = 1e-3) -> bool:
    v = const_value(graph, name)
    return v is not None and v.size == 1 and abs(float(v.ravel()[0]) - value) <= tol * abs(value)


def _other(node: Node, name: str) -> str:
    a, b = node.inputs[:2]
    return b if a == name else a


def fuse_erf_gelu(graph: Graph) -> None:
    """Rewrite ``x·0.5·(1 + erf(x/√2))`` (Div or Mul by 1/√2; 0.5 applied before or after
    the product) into ``Gelu(x)``."""
    producers, consumers = graph.producers(), graph.consumers()
    drop: set[int] = set()
    for erf in [n for n in graph.nodes if n.op == "Erf"]:
        scale = producers.get(erf.inputs[0])
        if scale is None:
            continue
        if scale.op == "Div" and _is_scalar(graph, scale.inputs[1], np.sqrt(2.0)):
            x = scale.inputs[0]
        elif scale.op == "Mul" and any(_is_scalar(graph, i, 1 / np.sqrt(2.0)) for i in scale.inputs):
            x = _other(scale, next(i for i in scale.inputs if _is_scalar(graph, i, 1 / np.sqrt(2.0))))
        else:
            continue
        add = _sole_consumer(graph, erf.outputs[0], consumers)
        if add is None or add.op != "Add" or not _is_scalar(graph, _other(add, erf.outputs[0]), 1.0):
            continue
        mul = _sole_consumer(graph, add.outputs[0], consumers)
        if mul is None or mul.op != "Mul":
            continue
        other = _other(mul, add.outputs[0])
        half = producers.get(other)
        if other == x:  # (x · (1 + erf)) · 0.5
            last = _sole_consumer(graph, mul.outputs[0], consumers)
            if last is None or last.op != "Mul" or not _is_scalar(
                    graph, _other(last, mul.outputs[0]), 0.5):
                continue
            chain = [scale, erf, add, mul, last]
        elif (half is not None and half.op == "Mul" and x in half.inputs
              and _is_scalar(graph, _other(half, x), 0.5)
              and _sole_consumer(graph, other, consumers) is mul):  # (0.5·x) · (1 + erf)
            chain = [scale, erf, add, half, mul]
        else:
            continue
        if _sole_consumer(graph, scale.outputs[0], consumers) is not erf:
            continue
        out = chain[-1].outputs[0]
        drop.update(id(n) for n in chain)
        graph.nodes.append(Node("Gelu", [x], [out], {}, erf.name + "_gelu"))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
    graph.sort()


def _reduce_axes(graph: Graph, node: Node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1]:
        v = const_value(graph, node.inputs[1])
        return None if v is None else [int(a) for a in np.ravel(v)]
    axes = node.attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _is_last_axis_mean(graph: Graph, node: Node | None, x: str) -> bool:
    if node is None or node.op != "ReduceMean" or node.inputs[0] != x:
        return False
    axes = _reduce_axes(graph, node)
    rank = len(graph.tensor(x).shape or ())
    return (axes is not None and len(axes) == 1 and axes[0] in (-1, rank - 1)
            and int(node.attrs.get("keepdims", 1)) == 1)


def fuse_decomposed_layernorm(graph: Graph) -> None:
    """Rewrite LayerNorm spelled out in primitives (as exporters emit below opset 17):
    ``d = x − mean(x)``; ``y = d / sqrt(mean(d²) + ε)`` [``· γ``] [``+ β``] over the last axis
    into one ``LayerNormalization``."""
    producers, consumers = graph.producers(), graph.consumers()
    drop: set[int] = set()
    for sub in [n for n in graph.nodes if n.op == "Sub"]:
        x, mu = sub.inputs[:2]
        if not _is_last_axis_mean(graph, producers.get(mu), x):
            continue
        d = sub.outputs[0]
        users = consumers.get(d, [])
        sq = next((u for u in users if (u.op == "Pow" and _is_scalar(graph, u.inputs[1], 2.0))
                   or (u.op == "Mul" and u.inputs[0] == u.inputs[1] == d)), None)
        div = next((u for u in users if u.op == "Div" and u.inputs[0] == d), None)
        if sq is None or div is None or len(users) != 2:
            continue
        var = _sole_consumer(graph, sq.outputs[0], consumers)
        if not _is_last_axis_mean(graph, var, sq.outputs[0]):
            continue
        add = _sole_consumer(graph, var.outputs[0], consumers)
        if add is None or add.op != "Add":
            continue
        eps = const_value(graph, _other(add, var.outputs[0]))
        sqrt = _sole_consumer(graph, add.outputs[0], consumers)
        if eps is None or eps.size != 1 or sqrt is None or sqrt.op != "Sqrt" \
                or div.inputs[1] != sqrt.outputs[0] or _sole_consumer(graph, mu, consumers) is not sub:
            continue
        c = (graph.tensor(x).shape or (0,))[-1]
        if c <= 0:
            continue
        chain = [producers[mu], sub, sq, var, add, sqrt, div]
        out, gamma, beta = div.outputs[0], np.ones(c, np.float32), np.zeros(c, np.float32)
        nxt = _sole_consumer(graph, out, consumers)
        if nxt is not None and nxt.op == "Mul":
            g = const_value(graph, _other(nxt, out))
            if g is not None and g.size in (1, c):
                gamma = np.broadcast_to(np.asarray(g, np.float32).ravel(), (c,)).copy()
                chain.append(nxt)
                out = nxt.outputs[0]
                nxt = _sole_consumer(graph, out, consumers)
        if nxt is not None and nxt.op == "Add":
            b = const_value(graph, _other(nxt, out))
            if b is not None and b.size in (1, c):
                beta = np.broadcast_to(np.asarray(b, np.float32).ravel(), (c,)).copy()
                chain.append(nxt)
                out = nxt.outputs[0]
        gname = graph.unique_name(sub.name + "_ln_gamma")
        graph.add_constant(gname, gamma)
        bname = graph.unique_name(sub.name + "_ln_beta")
        graph.add_constant(bname, beta)
        drop.update(id(n) for n in chain)
        graph.nodes.append(Node("LayerNormalization", [x, gname, bname], [out],
                                {"axis": -1, "epsilon": float(np.ravel(eps)[0])},
                                sub.name + "_layernorm"))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
    graph.sort()


def prepare_float_graph(graph: Graph, keep: frozenset[str] = frozenset()) -> Graph:
    """A copy of ``graph`` with all rewrites applied, topologically sorted. Tensors in
    ``keep`` are not folded away (their quantization is given)."""
    g = graph.copy()
    constants_to_tensors(g)
    fold_batchnorm(g, keep)
    fuse_erf_gelu(g)
    fuse_decomposed_layernorm(g)
    return g.sort()
