"""SmoothQuant-style scale migration: move activation outliers into the weights.

A linear layer ``Y = X·W`` (``X [..., K]``, ``W [K, N]``) is unchanged when each input
channel ``j`` of ``X`` is divided by ``s_j`` and row ``j`` of ``W`` multiplied by it. With

    s_j = max|X_j|^α / max|W_j|^(1−α)          (max over calibration data / over all
                                                 linear consumers' rows j; α in [0, 1])

the per-channel activation ranges even out (α = 0.5 splits the difficulty between the two),
so a per-tensor int8 grid on ``X`` and per-output-channel int8 weights both lose less.

Here ``X`` is a ``LayerNormalization`` output, so ``1/s`` folds exactly into the LayerNorm's
``γ`` and ``β`` (``LN(x)·γ/s + β/s``). When the LayerNorm output also feeds something that is
not a constant-weight ``MatMul`` (a post-LN transformer's residual ``Add``), the LayerNorm is
duplicated: the smoothed copy (output ``<X>.smooth``) feeds the linear layers and the original
keeps feeding the rest, so the float graph computes exactly the same function (up to float
rounding). :func:`smooth_graph` returns the rewritten graph and one :class:`SmoothInfo` per
migrated tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sdk.errors import CalibrationError
from sdk.graph import Graph, Node, Tensor
from sdk.quant.calibrate import float_feeds, sample_batches
from sdk.quant.fuse import const_value
from sdk.quant.trace import trace


@dataclass
class SmoothInfo:
    """One migration: the activation, its linear consumers, the scales' spread."""

    tensor: str
    smoothed: str
    consumers: list[str]
    act_ratio_before: float   # max_j max|X_j| / median_j max|X_j|
    act_ratio_after: float
    s_min: float
    s_max: float


def smooth_targets(graph: Graph) -> list[tuple[Node, list[Node]]]:
    """``(LayerNormalization node, [MatMul nodes with constant [K, N] weights it feeds])``."""
    consumers = graph.consumers()
    out = []
    for n in graph.nodes:
        if n.op != "LayerNormalization" or int(n.attrs.get("axis", -1)) not in (-1,):
            continue
        if len(n.inputs) < 2 or const_value(graph, n.inputs[1]) is None:
            continue
        lin = [u for u in consumers.get(n.outputs[0], [])
               if u.op == "MatMul" and u.inputs[0] == n.outputs[0]
               and (w := const_value(graph, u.inputs[1])) is not None and w.ndim == 2]
        if lin:
            out.append((n, lin))
    return out


def channel_absmax(graph: Graph, data: Mapping[str, np.ndarray], tensors: list[str]
                   ) -> dict[str, np.ndarray]:
    """``max|x|`` per last-axis channel of each tensor over the calibration samples."""
    acc: dict[str, np.ndarray] = {}
    for feeds in sample_batches(graph, data):
        values = trace(graph, float_feeds(graph, feeds))
        for t in tensors:
            v = np.abs(np.asarray(values[t], np.float64))
            m = v.reshape(-1, v.shape[-1]).max(0)
            acc[t] = m if t not in acc else np.maximum(acc[t], m)
    return acc


def migration_scales(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = x_max_j^α / w_max_j^(1−α)``, 1 where a channel is silent, clipped to
    ``[1e-4, 1e4]``."""
    if not 0.0 <= alpha <= 1.0:
        raise CalibrationError(f"smoothing alpha must be in [0, 1], got {alpha}")
    x = np.asarray(x_max, np.float64)
    w = np.asarray(w_max, np.float64)
    ok = (x > 0) & (w > 0)
    s = np.ones_like(x)
    s[ok] = x[ok] ** alpha / w[ok] ** (1.0 - alpha)
    return np.clip(s, 1e-4, 1e4)


def _ratio(m: np.ndarray) -> float:
    med = float(np.median(m))
    return float(m.max() / med) if med > 0 else 1.0


def smooth_graph(graph: Graph, data: Mapping[str, np.ndarray], alpha: float = 0.5,
                 only: set[str] | None = None) -> tuple[Graph, list[SmoothInfo]]:
    """A copy of the (prepared) float ``graph`` with every LayerNorm → linear activation
    migrated (``only``: restrict to these LayerNorm outputs); exact in real arithmetic."""
    g = graph.copy()
    targets = [(ln, lin) for ln, lin in smooth_targets(g) if only is None or ln.outputs[0] in only]
    if not targets:
        return g, []
    stats = channel_absmax(g, data, [ln.outputs[0] for ln, _ in targets])
    consumers = g.consumers()
    infos = []
    for ln, lin in targets:
        x = ln.outputs[0]
        w_max = np.max([np.abs(np.asarray(const_value(g, u.inputs[1]), np.float64)).max(1)
                        for u in lin], axis=0)
        s = migration_scales(stats[x], w_max, alpha)
        gamma = np.asarray(const_value(g, ln.inputs[1]), np.float64)
        beta = (np.asarray(const_value(g, ln.inputs[2]), np.float64)
                if len(ln.inputs) > 2 and ln.inputs[2] else np.zeros_like(gamma))
        gn = g.unique_name(ln.inputs[1] + ".smooth")
        g.add_constant(gn, (gamma / s).astype(np.float32))
        bn = g.unique_name((ln.inputs[2] or ln.inputs[1]) + ".smooth_beta")
        g.add_constant(bn, (beta / s).astype(np.float32))
        ids = {id(u) for u in lin}
        others = [u for u in consumers.get(x, []) if id(u) not in ids]
        if others or x in g.outputs:
            xs = g.unique_name(x + ".smooth")
            g.add_tensor(Tensor(xs, "float32", g.tensor(x).shape))
            g.add_node("LayerNormalization", [ln.inputs[0], gn, bn], [xs],
                       name=ln.name + "_smooth", **dict(ln.attrs))
        else:
            xs = x
            ln.inputs = [ln.inputs[0], gn, bn]
        for u in lin:
            w = np.asarray(const_value(g, u.inputs[1]), np.float64)
            wn = g.unique_name(u.inputs[1] + ".smooth")
            g.add_constant(wn, (w * s[:, None]).astype(np.float32))
            u.inputs = [xs, wn]
        infos.append(SmoothInfo(x, xs, [u.outputs[0] for u in lin], _ratio(stats[x]),
                                _ratio(stats[x] / s), float(s.min()), float(s.max())))
    return g.sort(), infos
