"""Which activations need int16: a per-tensor sensitivity report, and per-layer errors.

**Sensitivity** (:func:`sensitivity_table`): each int8 activation of the plan is quantized
to int8 *alone* and the graph outputs are compared with float on calibration samples, either
in the real integer graph with the other candidates int16 (``mode="integer"``, the default of
:func:`sdk.quant.quantize`: the integer kernels' own approximations count) or by fake
quantization (quantize and dequantize on its int8 grid) inserted into the float graph with
everything else float (``mode="float"``, cheaper). The error ``1 − cos`` ranks the tensors: the ones at the top lose most
by being int8 on their own. Each row also says *why*: the tensor's range, its outlier ratio
``max|x| / p99.9(|x|)`` (per-tensor int8 spends its 255 levels on the extremes, so the bulk
gets few levels), ``max|x| / median|x|`` and the int8 step. With ``observer_kinds`` it also tries each observer per
tensor and keeps the one with the least output error.

**Choice** (:func:`choose_int16`): the candidates in sensitivity order are moved to int16
until the *integer* graph (really lowered, really run) reaches the target output cosine on
the calibration samples; the smallest such prefix is kept (binary search over prefix
lengths, assuming more int16 never hurts).

Only tensors whose int16 is safe are candidates: not an operand of a MatMul between two
activations (int16×int16 products overflow the int32 accumulator), and for constant-weight
linears only when ``32767·Σ_k|w_q[n, k]| < 2^31`` for every output row ``n``.

**Layer errors** (:func:`layer_errors`): cosine and relative RMSE of every activation of the
integer graph (dequantized) against the same tensor of the float graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sdk.graph import Graph, QuantParams, Tensor
from sdk.ops.interpreter import Interpreter
from sdk.quant.fuse import const_value
from sdk.quant.observers import Observer, as_kind, outlier_ratio, params_for_range
from sdk.quant.plan import QuantPlan

LAYOUT_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Slice",
              "Gather", "Concat", "Pad", "Dropout", "MaxPool", "Relu", "Clip"}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def rel_rmse(ref: np.ndarray, x: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64).ravel()
    d = np.linalg.norm(ref - np.asarray(x, np.float64).ravel())
    n = np.linalg.norm(ref)
    return float(d / n) if n > 0 else float(d)


def output_cosines(outs: Sequence[Sequence[np.ndarray]], refs: Sequence[Sequence[np.ndarray]]
                   ) -> np.ndarray:
    """Per-sample cosine of all outputs (concatenated) against the reference."""
    return np.array([cosine(np.concatenate([np.ravel(v) for v in o]),
                            np.concatenate([np.ravel(v) for v in r]))
                     for o, r in zip(outs, refs)])


# ------------------------------------------------------------------ candidates and safety

def _fc_int16_safe(graph: Graph, node, per_channel: bool) -> bool:
    w = const_value(graph, node.inputs[1])
    if w is None:
        return False
    w = np.abs(np.asarray(w, np.float64))
    w_nk = w.T if node.op == "MatMul" else (w if int(node.attrs.get("transB", 0)) else w.T)
    if w_nk.ndim != 2:
        return False
    top = w_nk.max(1, keepdims=True) if per_channel else w_nk.max()
    top = np.where(top > 0, top, 1.0)
    worst = float((np.round(w_nk / top * 127)).sum(1).max())
    return 32767.0 * worst < 2.0**31


def int16_safe(graph: Graph, tensor: str, per_channel: bool = True) -> bool:
    """May ``tensor`` become int16 without risking its consumers' int32 accumulators?"""
    for u in graph.consumers().get(tensor, []):
        if u.op in ("Conv", "ConvTranspose"):
            return False
        if u.op in ("MatMul", "Gemm"):
            if u.inputs[0] != tensor or not _fc_int16_safe(graph, u, per_channel):
                return False
        elif (u.op in LAYOUT_OPS - {"Relu", "Clip", "MaxPool"}
              and not int16_safe(graph, u.outputs[0], per_channel)):
            return False
    return True


def candidates(graph: Graph, plan: QuantPlan, int_graph: Graph) -> list[str]:
    """int8 activations of ``plan`` that the integer graph really rounds (present there as
    int8 tensors, produced by an arithmetic op) and that may safely be int16."""
    producers = graph.producers()
    out = []
    for name, dt in plan.dtype.items():
        if dt != "int8" or name not in int_graph.tensors:
            continue
        p = producers.get(name)
        if p is not None and p.op in LAYOUT_OPS:
            continue
        t = int_graph.tensors[name]
        if t.dtype != "int8" or t.is_constant:
            continue
        if int16_safe(graph, name, plan.per_channel):
            out.append(name)
    return out


# ------------------------------------------------------------------ fake quantization

def fake_quant_graph(graph: Graph, grids: Mapping[str, tuple[QuantParams, str]]) -> Graph:
    """A copy of the float ``graph`` in which each tensor of ``grids`` is rounded to its
    integer grid (QuantizeLinear → DequantizeLinear) before anything reads it."""
    g = graph.copy()
    for name, (qp, dt) in grids.items():
        raw = g.unique_name(name + "__float")
        q = g.unique_name(name + "__q")
        t = g.tensor(name)
        g.add_tensor(Tensor(raw, "float32", t.shape))
        g.add_tensor(Tensor(q, dt, t.shape))
        if name in g.inputs:
            g.inputs = [raw if i == name else i for i in g.inputs]
        else:
            for n in g.nodes:
                n.outputs = [raw if o == name else o for o in n.outputs]
        s, z = float(qp.scale), int(qp.zero_point)
        g.add_node("QuantizeLinear", [raw], [q], name=f"fq_{q}", scale=s, zero_point=z, dtype=dt)
        g.add_node("DequantizeLinear", [q], [name], name=f"fdq_{q}", scale=s, zero_point=z)
    return g.sort()


def _run(graph: Graph, samples: Sequence[Mapping[str, np.ndarray]], fast: bool = True
         ) -> list[list[np.ndarray]]:
    it = Interpreter(graph, fast=fast)
    outs = []
    for feeds in samples:
        r = it.run(dict(feeds), outputs=list(graph.outputs))
        outs.append([np.asarray(r[o], np.float64) for o in graph.outputs])
    return outs


@dataclass
class SensitivityRow:
    """One tensor quantized alone to int8: output error and why it is (in)sensitive."""

    tensor: str
    error: float          # 1 − mean output cosine vs float (this tensor alone int8)
    rrmse: float          # mean relative RMSE of the outputs
    lo: float
    hi: float
    outlier_ratio: float  # max|x| / p99.9(|x|)
    step: float           # int8 step of the chosen grid
    observer: str
    int16: bool = False   # chosen for int16
    bulk_ratio: float = 1.0  # max|x| / median(|x|)

    def reason(self) -> str:
        tag = " (outliers)" if self.outlier_ratio > 4 or self.bulk_ratio > 100 else ""
        return (f"range [{self.lo:.3g}, {self.hi:.3g}]: max|x| = {self.bulk_ratio:.0f}× the "
                f"median |x|, {self.outlier_ratio:.1f}× p99.9{tag}; int8 step {self.step:.3g}")


def sensitivity_table(graph: Graph, observers: Mapping[str, Observer], plan: QuantPlan,
                      samples: Sequence[Mapping[str, np.ndarray]], tensors: Sequence[str],
                      observer_kinds: Sequence[str] = ("minmax",),
                      build: Callable[[list[str], dict[str, str]], Graph] | None = None
                      ) -> list[SensitivityRow]:
    """Rows sorted by error (largest first), one per tensor of ``tensors``.

    Without ``build``: fake quantization in the float graph, this tensor alone int8, the
    rest float. With ``build(int16_names, observer_for) → integer graph``: the real integer
    graph with this tensor int8 and the other ``tensors`` int16 (so the integer kernels'
    own approximations are part of the measure)."""
    ref = _run(graph, samples)
    rows = []
    for name in tensors:
        obs = observers[name]
        rest = [t for t in tensors if t != name]
        best = None
        for kind in observer_kinds:
            o = as_kind(obs, kind)
            lo, hi = o.range("int8", False)
            qp = params_for_range(lo, hi, "int8", False)
            g = (fake_quant_graph(graph, {name: (qp, "int8")}) if build is None
                 else build(rest, {name: kind}))
            outs = _run(g, samples)
            err = 1.0 - float(np.mean(output_cosines(outs, ref)))
            rr = float(np.mean([rel_rmse(np.concatenate([np.ravel(v) for v in r]),
                                         np.concatenate([np.ravel(v) for v in x]))
                                for x, r in zip(outs, ref)]))
            if best is None or err < best[0] - 1e-12:
                best = (err, rr, kind, float(qp.scale))
        err, rr, kind, step = best
        rows.append(SensitivityRow(name, err, rr, obs.lo, obs.hi, outlier_ratio(obs), step, kind,
                                   bulk_ratio=outlier_ratio(obs, 50.0)))
    rows.sort(key=lambda r: -r.error)
    return rows


def choose_int16(rows: Sequence[SensitivityRow], evaluate: Callable[[list[str]], float],
                 target: float, max_tensors: int | None = None, prune: bool = False
                 ) -> tuple[list[str], list[tuple[int, float]]]:
    """The fewest leading rows to make int16 so that ``evaluate(int16 list)`` (the integer
    graph's worst output cosine) reaches ``target``. Returns the list and the tried
    ``(count, cosine)`` pairs. If even all candidates miss the target, all are returned.
    ``prune``: then drop, least sensitive first, each chosen tensor whose removal keeps the
    target (one evaluation per chosen tensor)."""
    chosen, tried = _shortest_prefix(rows, evaluate, target, max_tensors)
    if prune and chosen and dict(tried).get(len(chosen), -1.0) >= target:
        for name in list(reversed(chosen)):
            trial = [t for t in chosen if t != name]
            c = evaluate(trial)
            tried.append((len(trial), c))
            if c >= target:
                chosen = trial
    return chosen, tried


def _shortest_prefix(rows: Sequence[SensitivityRow], evaluate: Callable[[list[str]], float],
                     target: float, max_tensors: int | None
                     ) -> tuple[list[str], list[tuple[int, float]]]:
    names = [r.tensor for r in rows]
    limit = len(names) if max_tensors is None else min(len(names), max_tensors)
    tried: dict[int, float] = {}

    def ok(k: int) -> bool:
        if k not in tried:
            tried[k] = evaluate(names[:k])
        return tried[k] >= target

    if ok(0):
        return [], sorted(tried.items())
    lo, hi = 0, None  # ok(lo) is False
    k = 1
    while limit > 0:
        k = min(k, limit)
        if ok(k):
            hi = k
            break
        lo = k
        if k == limit:
            break
        k *= 2
    if hi is None:
        return names[:limit], sorted(tried.items())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return names[:hi], sorted(tried.items())


# ------------------------------------------------------------------ per-layer errors

@dataclass
class LayerError:
    tensor: str
    dtype: str
    cosine: float
    rrmse: float


def dequantized(int_graph: Graph, name: str, value: np.ndarray) -> np.ndarray:
    t = int_graph.tensors.get(name)
    v = np.asarray(value)
    if v.dtype.kind == "f" or t is None or t.quant is None:
        return v.astype(np.float64)
    return (v.astype(np.float64) - t.quant.zero_point.astype(np.float64)) * \
        t.quant.scale.astype(np.float64)


def layer_errors(float_graph: Graph, int_graph: Graph,
                 samples: Sequence[Mapping[str, np.ndarray]],
                 int_samples: Sequence[Mapping[str, np.ndarray]] | None = None,
                 skip_layout: bool = True) -> list[LayerError]:
    """Every tensor present in both graphs (same name and size), in the float graph's
    order: cosine and relative RMSE of the dequantized integer value against float, averaged
    over the samples. ``int_samples`` defaults to ``samples``."""
    names = [o for n in float_graph.topological_order() for o in n.outputs
             if o and o in int_graph.tensors
             and not (skip_layout and n.op in LAYOUT_OPS)]
    names += [o for o in float_graph.outputs if o not in names]
    fi = Interpreter(float_graph, fast=True)
    ii = Interpreter(int_graph, fast=True)
    acc: dict[str, list[tuple[float, float]]] = {}
    for feeds, ifeeds in zip(samples, int_samples or samples):
        fv = fi.run(dict(feeds), outputs=names)
        want = [n for n in names if n in int_graph.tensors]
        iv = ii.run(dict(ifeeds), outputs=want)
        for n in want:
            a = np.asarray(fv[n], np.float64)
            b = dequantized(int_graph, n, iv[n])
            if a.size != b.size:
                continue
            acc.setdefault(n, []).append((cosine(a, b), rel_rmse(a, b)))
    out = []
    for n in names:
        if n in acc:
            v = acc[n]
            out.append(LayerError(n, int_graph.tensors[n].dtype, float(np.mean([c for c, _ in v])),
                                  float(np.mean([r for _, r in v]))))
    return out
