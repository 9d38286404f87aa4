"""Float-graph rewrites that run before quantization; each keeps the surviving tensor names,
so ranges observed on the original graph still apply.

* ``Constant`` nodes become constant tensors.
* ``BatchNormalization`` after a ``Conv`` folds into the conv:
  ``W' = W·γ/√(σ²+ε)`` per output channel, ``b' = (b − μ)·γ/√(σ²+ε) + β``.
* The Erf form of GELU that torch exports, ``x·0.5·(1 + erf(x/√2))`` in its usual node
  orders, becomes one ``Gelu`` node; so does the spelled-out tanh form
  ``½x(1 + tanh(√(2/π)(x + 0.044715x³)))`` (``approximate="tanh"``).
* LayerNorm spelled out in primitives (ReduceMean, Sub, Pow, Sqrt, Div, Mul, Add) becomes
  one ``LayerNormalization``; the reciprocal forms torch writes for ``rsqrt``
  (``d · (1/√v)``, ``d · Reciprocal(√v)``) are matched too.
* RMSNorm spelled out (``x · (1/√(mean(x²) + ε)) [· γ]``, or ``x / √(…)``; ``x²`` as Pow or
  Mul) becomes one ``RMSNormalization`` (ONNX opset 23 semantics).
* ``Cast`` to the dtype its input already has (HF's ``.to(float32)`` in norms) is dropped.
* An attention mask, ``Softmax(scores + bias)`` where ``bias`` is 0 on kept positions and
  ≤ −1e4 elsewhere, or ``Softmax(Where(c, scores, NEG))`` (``masked_fill``), chains of them,
  with the mask computed only from an integer graph input (e.g. ``(1 − mask)·min`` through
  Unsqueeze/Expand/Cast/Sub/Mul or Where/Equal) and/or constants (a causal mask),
  becomes ``Softmax(scores, ids, keep)`` with attribute ``mask_shape``
  (:func:`sdk.kernels.float_ref.masked_softmax`). The mask arithmetic leaves the graph, so
  calibration never sees the ``−3.4e38`` and the integer lowering masks with integers.
* torch's SDPA guard ``Where(IsNaN(p), 0, p)`` on a Softmax output is dropped (finite masks
  never make a NaN row).
* Masked mean pooling, ``MatMul(mask / Σ mask, x)`` with the weights computed from an
  integer mask input, becomes ``MaskedMean(x, ids)`` (an SDK-internal float op).
* Nodes whose outputs nothing reads any more are removed.
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


def _absorb_channel_const(graph: Graph, out: str, consumers: dict, chain: list, op: str,
                          c: int) -> tuple[np.ndarray | None, str]:
    """When ``out``'s sole consumer is ``op`` (Mul: γ, Add: β) with a constant of 1 or ``c``
    values, fold it into the chain being fused: the per-channel vector and the new output."""
    nxt = _sole_consumer(graph, out, consumers)
    if nxt is None or nxt.op != op:
        return None, out
    v = const_value(graph, _other(nxt, out))
    if v is None or v.size not in (1, c):
        return None, out
    chain.append(nxt)
    return np.broadcast_to(np.asarray(v, np.float32).ravel(), (c,)).copy(), nxt.outputs[0]


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


def _cube_of(graph: Graph, name: str, producers: dict) -> str | None:
    """``x`` when ``name`` is ``x³`` (``Pow(x, 3)``, ``x·(x·x)`` or ``(x·x)·x``), else None."""
    p = producers.get(name)
    if p is None:
        return None
    if p.op == "Pow" and _is_scalar(graph, p.inputs[1], 3.0):
        return p.inputs[0]
    if p.op != "Mul":
        return None
    for k in (0, 1):
        sq = producers.get(p.inputs[1 - k])
        if sq is not None and sq.op == "Mul" and sq.inputs[0] == sq.inputs[1] == p.inputs[k]:
            return p.inputs[k]
    return None


def fuse_tanh_gelu(graph: Graph) -> None:
    """Rewrite ``½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`` (torch's ``approximate="tanh"``
    below opset 20, GPT-2's gelu_new) into ``Gelu(x, approximate="tanh")``."""
    producers, consumers = graph.producers(), graph.consumers()
    drop: set[int] = set()
    for th in [n for n in graph.nodes if n.op == "Tanh"]:
        sc = producers.get(th.inputs[0])
        if sc is None or sc.op != "Mul":
            continue
        k = next((i for i in sc.inputs if _is_scalar(graph, i, np.sqrt(2 / np.pi))), None)
        inner = producers.get(_other(sc, k)) if k is not None else None
        if inner is None or inner.op != "Add":
            continue
        x = m = None
        for a, b in ((0, 1), (1, 0)):
            mm = producers.get(inner.inputs[b])
            if mm is None or mm.op != "Mul":
                continue
            c = next((i for i in mm.inputs if _is_scalar(graph, i, 0.044715)), None)
            if c is not None and _cube_of(graph, _other(mm, c), producers) == inner.inputs[a]:
                x, m = inner.inputs[a], mm
        if x is None:
            continue
        cube = producers[_other(m, next(i for i in m.inputs if _is_scalar(graph, i, 0.044715)))]
        add1 = _sole_consumer(graph, th.outputs[0], consumers)
        if add1 is None or add1.op != "Add" or not _is_scalar(graph, _other(add1, th.outputs[0]), 1.0):
            continue
        mul = _sole_consumer(graph, add1.outputs[0], consumers)
        if mul is None or mul.op != "Mul":
            continue
        other = _other(mul, add1.outputs[0])
        half = producers.get(other)
        if other == x:
            last = _sole_consumer(graph, mul.outputs[0], consumers)
            if last is None or last.op != "Mul" or not _is_scalar(
                    graph, _other(last, mul.outputs[0]), 0.5):
                continue
            tail = [add1, mul, last]
        elif (half is not None and half.op == "Mul" and x in half.inputs
              and _is_scalar(graph, _other(half, x), 0.5)
              and _sole_consumer(graph, other, consumers) is mul):
            tail = [add1, half, mul]
        else:
            continue
        body = [cube] + ([producers[_other(cube, x)]] if cube.op == "Mul" else []) + [m, inner, sc, th]
        if any(_sole_consumer(graph, n.outputs[0], consumers) is None for n in body):
            continue
        drop.update(id(n) for n in body + tail)
        graph.nodes.append(Node("Gelu", [x], [tail[-1].outputs[0]], {"approximate": "tanh"},
                                th.name + "_gelu"))
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
        rs = None
        if div is None:  # d · (1/√v): torch's rsqrt
            div = next((u for u in users if u.op == "Mul" and d in u.inputs and u is not sq), None)
            rs = None if div is None else producers.get(_other(div, d))
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
                or _sole_consumer(graph, mu, consumers) is not sub:
            continue
        if rs is None and div.inputs[1] != sqrt.outputs[0]:
            continue
        if rs is not None and (_rsqrt_input(graph, rs, producers, consumers) is not sqrt
                               or _sole_consumer(graph, rs.outputs[0], consumers) is not div):
            continue
        c = (graph.tensor(x).shape or (0,))[-1]
        if c <= 0:
            continue
        chain = [producers[mu], sub, sq, var, add, sqrt, div] + ([rs] if rs is not None else [])
        gamma, out = _absorb_channel_const(graph, div.outputs[0], consumers, chain, "Mul", c)
        beta, out = _absorb_channel_const(graph, out, consumers, chain, "Add", c)
        gamma = np.ones(c, np.float32) if gamma is None else gamma
        beta = np.zeros(c, np.float32) if beta is None else beta
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


def _rsqrt_input(graph: Graph, node: Node | None, producers: dict, consumers: dict) -> Node | None:
    """The Sqrt behind ``1/√v`` (``Div(1, Sqrt)`` or ``Reciprocal(Sqrt)``), else None."""
    if node is None:
        return None
    if node.op == "Reciprocal":
        src = node.inputs[0]
    elif node.op == "Div" and _is_scalar(graph, node.inputs[0], 1.0):
        src = node.inputs[1]
    else:
        return None
    sqrt = producers.get(src)
    if sqrt is None or sqrt.op != "Sqrt" or _sole_consumer(graph, src, consumers) is not node:
        return None
    return sqrt


def drop_identity_casts(graph: Graph) -> None:
    """Remove ``Cast`` nodes whose input already has the target dtype."""
    from sdk.ops.float_ops import ONNX_DTYPE

    rename: dict[str, str] = {}
    keep = []
    for n in graph.topological_order():
        n.inputs = [rename.get(i, i) for i in n.inputs]
        to = n.attrs.get("to") if n.op == "Cast" else None
        to = ONNX_DTYPE.get(to, to) if isinstance(to, int) else to
        t = graph.tensors.get(n.inputs[0]) if n.op == "Cast" else None
        if t is not None and t.dtype == to and n.outputs[0] not in graph.outputs:
            rename[n.outputs[0]] = n.inputs[0]
            continue
        keep.append(n)
    graph.nodes = keep


def fuse_decomposed_rmsnorm(graph: Graph) -> None:
    """Rewrite ``x · (1/√(mean(x²) + ε))`` [``· γ``] (also ``x / √(…)``, ``Reciprocal``,
    ``x·x`` for the square, γ on either side) over the last axis into ``RMSNormalization``."""
    producers, consumers = graph.producers(), graph.consumers()
    drop: set[int] = set()
    for mean in [n for n in graph.nodes if n.op == "ReduceMean"]:
        sq = producers.get(mean.inputs[0])
        if sq is None or _sole_consumer(graph, mean.inputs[0], consumers) is not mean:
            continue
        if sq.op == "Pow" and _is_scalar(graph, sq.inputs[1], 2.0):
            x = sq.inputs[0]
        elif sq.op == "Mul" and sq.inputs[0] == sq.inputs[1]:
            x = sq.inputs[0]
        else:
            continue
        if not _is_last_axis_mean(graph, mean, sq.outputs[0]):
            continue
        add = _sole_consumer(graph, mean.outputs[0], consumers)
        if add is None or add.op != "Add":
            continue
        eps = const_value(graph, _other(add, mean.outputs[0]))
        sqrt = _sole_consumer(graph, add.outputs[0], consumers)
        if eps is None or eps.size != 1 or sqrt is None or sqrt.op != "Sqrt":
            continue
        user = _sole_consumer(graph, sqrt.outputs[0], consumers)
        if user is None:
            continue
        if user.op == "Div" and user.inputs == [x, sqrt.outputs[0]]:
            chain, norm = [sq, mean, add, sqrt, user], user
        elif _rsqrt_input(graph, user, producers, consumers) is sqrt:
            mul = _sole_consumer(graph, user.outputs[0], consumers)
            if mul is None or mul.op != "Mul" or _other(mul, user.outputs[0]) != x:
                continue
            chain, norm = [sq, mean, add, sqrt, user, mul], mul
        else:
            continue
        c = (graph.tensor(x).shape or (0,))[-1]
        if c <= 0:
            continue
        gamma, out = _absorb_channel_const(graph, norm.outputs[0], consumers, chain, "Mul", c)
        gamma = np.ones(c, np.float32) if gamma is None else gamma
        gname = graph.unique_name(mean.name + "_rms_gamma")
        graph.add_constant(gname, gamma)
        drop.update(id(n) for n in chain)
        graph.nodes.append(Node("RMSNormalization", [x, gname], [out],
                                {"axis": -1, "epsilon": float(np.ravel(eps)[0])},
                                mean.name + "_rmsnorm"))
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
    graph.sort()


MASK_NEG = -1e4
"""A bias at or below this is "masked" (softmax weight below e^-9000 next to any real score)."""


def _probe(graph: Graph, name: str, rank: int):
    """``(ids, run)`` when tensor ``name`` is computed only from constants and at most one
    static integer graph input ``ids`` of shape [batch, keys] (``''`` when none): ``run(m)``
    evaluates ``name`` with ``ids = m``. None otherwise."""
    from sdk.ops.registry import OPS, load_all

    t = graph.tensors.get(name)
    if t is None or t.shape is None or _dynamic(t.shape) or len(t.shape) > rank:
        return None
    if t.data is None and len(t.shape) != rank:
        return None
    if t.data is not None:
        data = np.asarray(t.data)
        return "", lambda m: data
    producers = graph.producers()
    chain, seen, leaves, stack = [], set(), set(), [name]
    while stack:
        cur = stack.pop()
        if not cur or cur in seen:
            continue
        seen.add(cur)
        tt = graph.tensors.get(cur)
        if tt is not None and tt.data is not None:
            continue
        p = producers.get(cur)
        if p is None:
            leaves.add(cur)
            continue
        if p.op not in OPS or p.op in ("MatMul", "Gemm", "Conv") or len(chain) > 64:
            return None
        if p not in chain:
            chain.append(p)
        stack.extend(p.inputs)
    if len(leaves) != 1:
        return None
    ids = leaves.pop()
    it = graph.tensors.get(ids)
    if ids not in graph.inputs or it is None or it.dtype == "float32" or it.shape is None \
            or len(it.shape) != 2 or _dynamic(it.shape):
        return None
    order = [n for n in graph.topological_order() if n in chain]
    load_all()

    def run(m: np.ndarray) -> np.ndarray:
        vals = {ids: m.astype(it.dtype)}
        for n in order:
            args = [None if not i else vals[i] if i in vals else graph.tensors[i].data
                    for i in n.inputs]
            for o, r in zip(n.outputs, OPS[n.op](args, n.attrs, False)):
                vals[o] = np.asarray(r)
        return vals[name]

    return ids, run


def _keep_flags(graph: Graph, name: str, rank: int, classify):
    """``(ids, mask_shape, keep)`` when ``classify(value)`` (→ kept flags, or None when a
    value is neither kept nor masked) of tensor ``name`` is a key mask: kept flags that are
    ``ids != 0`` (reshaped [batch, 1, …, keys]) AND constant flags ``keep``; ids ``''`` and
    ``mask_shape`` None when ``name`` is constant. Checked on probe masks. None otherwise."""
    got = _probe(graph, name, rank)
    if got is None:
        return None
    ids, run = got
    try:
        keep = classify(run(np.ones(graph.tensor(ids).shape, np.int64)) if ids else run(None))
        if keep is None:
            return None
        if not ids:
            return "", None, keep
        shape = graph.tensor(ids).shape
        mask_shape = [int(shape[0])] + [1] * (rank - 2) + [int(shape[1])]
        rng = np.random.default_rng(0)
        for m in [np.zeros(shape, np.int64)] + [rng.integers(0, 2, shape) for _ in range(4)]:
            got_keep = classify(run(m))
            want = np.broadcast_to(m.reshape(mask_shape) != 0, keep.shape) & keep
            if got_keep is None or got_keep.shape != keep.shape or not np.array_equal(got_keep, want):
                return None
    except Exception:  # the chain cannot run on probe values: not a mask
        return None
    return ids, mask_shape, keep


def _bias_keep(v: np.ndarray) -> np.ndarray | None:
    """Kept flags of an additive mask: 0 kept, ≤ MASK_NEG masked, anything else: not a mask."""
    v = np.asarray(v)
    if v.dtype.kind != "f":
        return None
    keep = v == 0
    return keep if np.all(keep | (v <= MASK_NEG)) else None


def _mask_step(graph: Graph, node: Node, rank: int):
    """One masking node on the way to a Softmax: ``(scores operand, (ids, mask_shape, keep))``
    for ``Add(scores, bias)`` with an additive mask ``bias``, or ``Where(c, scores, NEG)`` /
    ``Where(c, NEG, scores)`` with a constant ``NEG ≤ MASK_NEG`` and ``c`` a key mask."""
    if node.op == "Add":
        for k in (1, 0):
            got = _keep_flags(graph, node.inputs[k], rank, _bias_keep)
            if got is not None:
                return node.inputs[1 - k], got
        return None
    if node.op != "Where":
        return None
    for k, keep_if in ((2, True), (1, False)):  # the constant branch, and when c keeps
        v = const_value(graph, node.inputs[k])
        if v is None or v.dtype.kind != "f" or not np.all(np.asarray(v) <= MASK_NEG):
            continue
        got = _keep_flags(graph, node.inputs[0], rank, lambda c, t=keep_if: (
            None if np.asarray(c).dtype != bool else (np.asarray(c) if t else ~np.asarray(c))))
        if got is not None:
            return node.inputs[3 - k], got
    return None


def _dynamic(shape) -> bool:
    return any(int(d) < 0 for d in shape)


def fuse_attention_mask(graph: Graph) -> None:
    """``Softmax`` over masked scores → ``Softmax(scores, ids, keep)`` (``mask_shape``
    attribute; keep flags a bool constant). The masking is any chain of ``Add(scores, bias)``
    with an additive mask (0 kept, ≤ −1e4 masked) and ``Where(c, scores, NEG)`` /
    ``Where(c, NEG, scores)`` (``masked_fill``), each mask computed from constants and at most
    one integer graph input [batch, keys] (the same one throughout)."""
    producers, consumers = graph.producers(), graph.consumers()
    drop: set[int] = set()
    for sm in [n for n in graph.nodes if n.op == "Softmax" and len(n.inputs) == 1]:
        xt = graph.tensor(sm.inputs[0])
        axis = int(sm.attrs.get("axis", -1))
        if xt.shape is None or axis % len(xt.shape) != len(xt.shape) - 1:
            continue
        rank = len(xt.shape)
        cur, steps = sm.inputs[0], []
        ids, mask_shape, keep = "", None, None
        while True:
            p = producers.get(cur)
            user = sm if not steps else steps[-1]
            if p is None or _sole_consumer(graph, cur, consumers) is not user:
                break
            got = _mask_step(graph, p, rank)
            if got is None:
                break
            scores, (i, ms, k) = got
            if i and ids and (i != ids or ms != mask_shape):
                break
            st = graph.tensors.get(scores)
            if st is None or st.shape is None or tuple(st.shape) != tuple(xt.shape):
                break
            if i:
                ids, mask_shape = i, ms
            if not np.all(k):
                keep = k if keep is None else np.logical_and(keep, k)
            steps.append(p)
            cur = scores
        if not steps:
            continue
        kname = ""
        if keep is not None:
            kname = graph.unique_name(sm.name + "_mask_keep")
            graph.add_constant(kname, np.ascontiguousarray(keep, bool))
        sm.inputs = [cur, ids, kname]
        if mask_shape is not None:
            sm.attrs["mask_shape"] = mask_shape
        drop.update(id(n) for n in steps)
    graph.nodes = [n for n in graph.nodes if id(n) not in drop]
    remove_dead_nodes(graph)


def fuse_masked_mean(graph: Graph) -> None:
    """``MatMul(W, x)`` with ``x [B, T, D]`` and ``W [B, 1, T]`` computed from one integer
    mask input as ``mask / Σ mask`` (masked mean pooling: Cast, ReduceSum, Div, Unsqueeze…)
    → ``MaskedMean(x, ids)``. Checked on probe masks."""
    for mm in [n for n in graph.nodes if n.op == "MatMul"]:
        w, x = mm.inputs[:2]
        wt, xt = graph.tensors.get(w), graph.tensors.get(x)
        if wt is None or xt is None or wt.data is not None or wt.dtype != "float32" \
                or wt.shape is None or xt.shape is None or len(xt.shape) != 3 \
                or len(wt.shape) != 3 or _dynamic(wt.shape) or _dynamic(xt.shape):
            continue
        got = _probe(graph, w, 3)
        if got is None or not got[0]:
            continue
        ids, run = got
        shape = graph.tensor(ids).shape
        if tuple(wt.shape) != (shape[0], 1, shape[1]) or xt.shape[:2] != tuple(shape):
            continue
        rng = np.random.default_rng(1)
        ok = True
        try:
            for m in [np.ones(shape, np.int64)] + [rng.integers(0, 2, shape) for _ in range(4)]:
                m[:, 0] = 1
                want = (m / m.sum(axis=1, keepdims=True))[:, None, :]
                if not np.allclose(run(m), want, rtol=1e-6, atol=1e-7):
                    ok = False
                    break
        except Exception:  # the chain cannot run on probe values
            ok = False
        if ok:
            mm.op, mm.inputs, mm.attrs = "MaskedMean", [x, ids], {}
    remove_dead_nodes(graph)


def drop_softmax_nan_guards(graph: Graph) -> None:
    """``Where(IsNaN(p), 0, p)`` on a Softmax output ``p`` (torch's SDPA guard for fully masked
    rows) → ``p``: with finite masks (:func:`sdk.frontends.onnx_import.finite_mask_constants`)
    a softmax row is never NaN."""
    producers = graph.producers()
    rename: dict[str, str] = {}
    for n in graph.nodes:
        if n.op != "Where" or n.outputs[0] in graph.outputs:
            continue
        isnan = producers.get(n.inputs[0])
        p = n.inputs[2]
        sm = producers.get(p)
        zero = const_value(graph, n.inputs[1])
        if isnan is None or isnan.op != "IsNaN" or isnan.inputs[0] != p or sm is None \
                or sm.op != "Softmax" or zero is None or not np.all(np.asarray(zero) == 0):
            continue
        rename[n.outputs[0]] = p
    if not rename:
        return
    for n in graph.nodes:
        n.inputs = [rename.get(i, i) for i in n.inputs]
    remove_dead_nodes(graph)


def remove_dead_nodes(graph: Graph) -> None:
    """Drop nodes none of whose outputs is read (or a graph output), repeatedly."""
    while True:
        used = {i for n in graph.nodes for i in n.inputs if i} | set(graph.outputs)
        keep = [n for n in graph.nodes if any(o in used for o in n.outputs if o)]
        if len(keep) == len(graph.nodes):
            return
        graph.nodes = keep


def prepare_float_graph(graph: Graph, keep: frozenset[str] = frozenset()) -> Graph:
    """A copy of ``graph`` with all rewrites applied, topologically sorted. Tensors in
    ``keep`` are not folded away (their quantization is given)."""
    g = graph.copy()
    constants_to_tensors(g)
    drop_identity_casts(g)
    fold_batchnorm(g, keep)
    fuse_erf_gelu(g)
    fuse_tanh_gelu(g)
    fuse_decomposed_layernorm(g)
    fuse_decomposed_rmsnorm(g)
    drop_softmax_nan_guards(g)
    fuse_attention_mask(g)
    fuse_masked_mean(g)
    return g.sort()
