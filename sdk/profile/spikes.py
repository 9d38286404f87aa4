"""Spike tensors: tensors whose real values can only be 0 or 1, and their firing rates.

A tensor carries spikes when the node that produces it can only output ``{0, 1}`` in real
units (``real = S·(q − z)`` for a quantized tensor):

* a comparison (``Greater``, ``GreaterOrEqual`` ...: a bool tensor) or a ``LIF`` / ``QLIF``
  neuron (a LIF neuron in ONNX may be ``Cast(GreaterOrEqual(H, V_th))``);
* ``HardSigmoid`` ``clip(α·h + β, 0, 1)`` that is an exact step in float32: its linear region
  ``(−β/α, (1−β)/α)`` is narrower than the float32 grid there, so every float32 ``h`` gives
  exactly 0 or 1 (:func:`hard_sigmoid_is_step`; how
  :func:`sdk.models.lmuformer.heaviside_hard_sigmoid` writes a spike);
* an integer op whose every possible raw output ``q`` dequantizes to 0 or 1:
  ``q = z`` or ``|S·(q − z) − 1| ≤ SPIKE_LEVEL_TOL`` (:func:`integer_output_levels`: a
  ``QLut``'s table, a ``QClamp``'s ``[min, max]``, a requantizing op's ``[act_min, act_max]``);
* a view, cast or slice of a spike tensor, a concatenation of spike tensors that share one
  silent level, or any tensor listed in ``graph.metadata["spike_tensors"]``.

The *silent level* is the raw value of a 0 (the zero point ``z``; 0 for float and bool), so the
firing rate of ``n`` observed values is ``#(q ≠ silent) / n``.
"""

from __future__ import annotations

import numpy as np

from sdk.graph.ir import Graph, Node
from sdk.ops.schema import VIEW, ops_with

SPIKE_OPS = frozenset({"LIF", "QLIF"})     # ops whose outputs are 0/1 spikes
COMPARE_OPS = frozenset({"Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal"})
VIEW_OPS = ops_with(VIEW)
# ops whose output is a spike tensor (same silent level) when their first data input is one
SPIKE_PRESERVING_OPS = VIEW_OPS | frozenset({"Cast", "Transpose", "Slice", "Gather"})
SPIKE_LEVEL_TOL = 1e-3     # |real − 1| allowed for the quantized "1" level
MAX_LEVELS = 1 << 16       # larger integer output ranges are never {0, 1}
STEP_PROBE_ULPS = 2        # float32 values probed beyond each end of the linear region
STEP_PROBE_MAX = 64        # a linear region holding more float32 values is not a step


def hard_sigmoid_is_step(alpha: float, beta: float) -> bool:
    """True when float32 ``HardSigmoid(h) = clip(α·h + β, 0, 1)`` outputs only 0 or 1.

    The output is strictly between 0 and 1 only for ``h`` in the linear region
    ``(−β/α, (1−β)/α)``. The float32 values from ``STEP_PROBE_ULPS`` below to
    ``STEP_PROBE_ULPS`` above that region are evaluated with the reference kernel; since
    ``fl(fl(α·h) + β)`` is monotone in ``h``, the op is a step when all of them give 0 or 1
    and the outermost give 0 on one side and 1 on the other (then so does every float32
    beyond them). A region holding more than ``STEP_PROBE_MAX`` float32 values is not a step.
    """
    from sdk.kernels.float_ref import hard_sigmoid

    a, b = np.float32(alpha), np.float32(beta)
    if not (np.isfinite(a) and np.isfinite(b)) or a == 0:
        return False
    lo, hi = sorted((-float(b) / float(a), (1.0 - float(b)) / float(a)))
    f32max = float(np.finfo(np.float32).max)
    if not (-f32max < lo and hi < f32max):
        return False
    h = np.float32(lo)
    for _ in range(STEP_PROBE_ULPS):
        h = np.nextafter(h, np.float32(-np.inf))
    probes = [h]
    beyond = 0
    while beyond < STEP_PROBE_ULPS:
        if len(probes) > STEP_PROBE_MAX + 2 * STEP_PROBE_ULPS + 2:
            return False
        h = np.nextafter(h, np.float32(np.inf))
        if not np.isfinite(h):
            return False
        probes.append(h)
        beyond += float(h) > hi
    y = hard_sigmoid(np.array(probes, np.float32), alpha=float(a), beta=float(b))
    ends = (0.0, 1.0) if a > 0 else (1.0, 0.0)
    return bool(np.all((y == 0) | (y == 1)) and (float(y[0]), float(y[-1])) == ends)


def integer_output_levels(graph: Graph, node: Node) -> np.ndarray | None:
    """The raw values an integer node can output, or None when unknown or too many: a
    ``QLut``'s table entries, a ``QClamp``'s ``min..max``, ``act_min..act_max`` of a
    requantizing op."""
    if node.op == "QLut" and len(node.inputs) > 1:
        table = graph.tensor(node.inputs[1])
        return None if table.data is None else np.unique(table.data.astype(np.int64))
    if node.op == "QClamp":
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        lo, hi = node.attrs.get("act_min"), node.attrs.get("act_max")
    if lo is None or hi is None or not 0 <= int(hi) - int(lo) < MAX_LEVELS:
        return None
    return np.arange(int(lo), int(hi) + 1, dtype=np.int64)


def integer_silent_level(graph: Graph, node: Node) -> int | None:
    """The zero point ``z`` when every raw output level ``q`` of ``node`` is ``z`` or
    dequantizes to 1 (``|S·(q − z) − 1| ≤ SPIKE_LEVEL_TOL``), else None. A tensor without
    quantization parameters holds plain integers (``S = 1``, ``z = 0``)."""
    out = graph.tensor(node.outputs[0])
    if out.dtype in ("float32", "float16", "bool") or out.is_constant:
        return None
    levels = integer_output_levels(graph, node)
    if levels is None:
        return None
    scale, zp = 1.0, 0
    if out.quant is not None:
        if out.quant.scale.size != 1:
            return None                 # per-channel: each channel would need its own check
        scale, zp = float(out.quant.scale.reshape(())), int(out.quant.zero_point.reshape(()))
    real = scale * (levels - zp).astype(np.float64)
    if not np.all((levels == zp) | (np.abs(real - 1.0) <= SPIKE_LEVEL_TOL)):
        return None
    return zp


def spike_silent_levels(graph: Graph) -> dict[str, int]:
    """Every spike tensor of ``graph`` (see the module docstring) -> its silent level, the
    raw value of a 0 (the zero point; 0 for float and bool tensors)."""
    found: dict[str, int] = {}
    for name in graph.metadata.get("spike_tensors", []):
        q = graph.tensor(name).quant
        found[name] = 0 if q is None or q.zero_point.size != 1 else int(q.zero_point)
    found.update({t.name: 0 for t in graph.tensors.values()
                  if t.dtype == "bool" and not t.is_constant})
    for n in graph.topological_order():
        out = n.outputs[0] if n.outputs else ""
        if not out or out in found:
            continue
        data = [i for i in n.inputs if i and not graph.tensor(i).is_constant]
        if n.op in SPIKE_OPS or n.op in COMPARE_OPS:
            found[out] = 0
        elif n.op == "HardSigmoid":
            if hard_sigmoid_is_step(n.attrs.get("alpha", 0.2), n.attrs.get("beta", 0.5)):
                found[out] = 0
        elif n.op in SPIKE_PRESERVING_OPS:
            if data and data[0] in found:
                found[out] = found[data[0]]
        elif n.op == "Concat":
            if data and all(i in found for i in data) and len({found[i] for i in data}) == 1:
                found[out] = found[data[0]]
        else:
            silent = integer_silent_level(graph, n)
            if silent is not None:
                found[out] = silent
    return found


def spike_tensors(graph: Graph) -> set[str]:
    """The names of the spike tensors of ``graph`` (see :func:`spike_silent_levels`)."""
    return set(spike_silent_levels(graph))


def firing_rate(values: np.ndarray, silent: float = 0) -> float:
    """Fraction of spiking elements: ``#(values ≠ silent) / size`` (0 for an empty tensor)."""
    v = np.asarray(values)
    return float(np.count_nonzero(v != silent)) / v.size if v.size else 0.0
