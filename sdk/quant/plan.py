"""The quantization plan: which integer type and affine parameters each activation should get.

The plan holds *desired* parameters; the lowering may keep an input's parameters instead for
ops that cannot rescale (max-pool, reshape, ...). Policy for PTQ from observers:

* every activation gets ``activation_bits`` (8 → int8 asymmetric, 16 → int16 symmetric);
* with ``mixed_precision``, int16 where the range matters: Softmax inputs (attention scores),
  LayerNormalization inputs and the residual stream (an Add fed by an int16 tensor);
* Softmax outputs are int16 with scale 2^-15 (Shiftmax's output grid); Sigmoid outputs int8
  with scale 1/256, zero point −128; Tanh outputs int8 with scale 1/128;
* recurrent state (``state_pairs``: state input → state output of a step graph): each pair
  shares one grid, int16 symmetric under mixed precision (see :mod:`sdk.quant.state`); the
  residual rule then carries int16 on from the state inputs;
* ``int16``: tensors forced to int16 symmetric (e.g. chosen by
  :mod:`sdk.quant.sensitivity` where int8 loses the outliers); the residual rule carries
  int16 on through Add/Sub as for the built-in choices;
* ``observer_for``: per-tensor observer kind (``minmax``/``percentile``/``mse``/``entropy``)
  overriding the calibration's observer for those tensors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from sdk.errors import CalibrationError
from sdk.graph import Graph, QuantParams
from sdk.quant.observers import Observer, as_kind, params_for_range
from sdk.quant.state import forward_from_states, group_params, state_groups, widened_operands

SHIFTMAX_OUT_BITS = 16


@dataclass
class QuantPlan:
    """Desired activation parameters and dtypes, plus optional fixed weight parameters."""

    act: dict[str, QuantParams] = field(default_factory=dict)
    dtype: dict[str, str] = field(default_factory=dict)
    weights: dict[str, QuantParams] = field(default_factory=dict)
    per_channel: bool = True
    # PTQ may fuse across a tensor (MatMul+Add bias, ×scalar) and skip its rounding; a QDQ
    # model's own intermediate quantization must be kept to reproduce its integers.
    fuse_quantized: bool = True
    # state input → state output; the lowering makes each output land on its input's grid
    state_pairs: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> tuple[QuantParams, str] | None:
        if name in self.act:
            return self.act[name], self.dtype[name]
        return None


def fixed_output_params(op: str) -> tuple[QuantParams, str] | None:
    """Ops whose output grid is fixed by the op itself."""
    if op == "Softmax":
        return QuantParams(np.float32(2.0 ** -(SHIFTMAX_OUT_BITS - 1)), np.int32(0)), "int16"
    if op == "Sigmoid":
        return QuantParams(np.float32(1 / 256), np.int32(-128)), "int8"
    if op == "Tanh":
        return QuantParams(np.float32(1 / 128), np.int32(0)), "int8"
    return None


def plan_from_observers(graph: Graph, observers: dict[str, Observer], activation_bits: int = 8,
                        per_channel: bool = True, mixed_precision: bool = True,
                        state_pairs: Mapping[str, str] | None = None,
                        int16: Collection[str] = (),
                        observer_for: Mapping[str, str] | None = None) -> QuantPlan:
    """Turn observed ranges into a plan for the (fused) float ``graph``; ``state_pairs``
    (state input → state output, already checked against the graph) get shared grids;
    ``int16`` names tensors forced to int16, ``observer_for`` per-tensor observer kinds."""
    if activation_bits not in (8, 16):
        raise CalibrationError(f"activation bits must be 8 or 16, got {activation_bits}")
    base = "int8" if activation_bits == 8 else "int16"
    pairs = dict(state_pairs or {})
    state_dtype = "int16" if mixed_precision else base
    producers = graph.producers()
    groups = state_groups(graph, pairs)
    fixed_grid = [next((f for r in grp.roots if r in producers
                        for f in [fixed_output_params(producers[r].op)] if f is not None), None)
                  for grp in groups]
    consumers = graph.consumers()
    wide: set[str] = set(int16)
    if wide:
        for n in graph.topological_order():
            if n.op in ("Add", "Sub") and any(i in wide for i in n.inputs):
                wide.add(n.outputs[0])
    if mixed_precision:
        for n in graph.nodes:
            if n.op in ("Softmax", "LayerNormalization"):
                wide.add(n.inputs[0])
        for grp, fixed in zip(groups, fixed_grid):
            if fixed is None:
                wide |= set(grp.members) | widened_operands(graph, grp)
                wide |= forward_from_states(graph, [t for t in grp.members if t in pairs])
        for n in graph.topological_order():  # residual stream: int16 flows through Add
            if n.op in ("Add", "Sub") and any(i in wide for i in n.inputs):
                wide.add(n.outputs[0])
    plan = QuantPlan(per_channel=per_channel)
    names = list(graph.inputs) + [o for n in graph.nodes for o in n.outputs if o]
    for name in names:
        t = graph.tensors.get(name)
        if t is None or t.dtype != "float32":
            continue
        p = producers.get(name)
        fixed = fixed_output_params(p.op) if p is not None else None
        if fixed is not None:
            plan.act[name], plan.dtype[name] = fixed
            continue
        obs = observers.get(name)
        if obs is not None and observer_for and name in observer_for:
            obs = as_kind(obs, observer_for[name])
        if obs is None or not obs.seen:
            if consumers.get(name) or name in graph.outputs:
                raise CalibrationError(f"tensor {name!r} was never observed during calibration")
            continue
        dtype = "int16" if name in wide else base
        symmetric = dtype == "int16"
        lo, hi = obs.range(dtype, symmetric)
        plan.act[name] = params_for_range(lo, hi, dtype, symmetric)
        plan.dtype[name] = dtype
    for grp, fixed in zip(groups, fixed_grid):
        shared = group_params(grp, observers, state_dtype, fixed)
        if shared is None:
            raise CalibrationError(f"state tensors {sorted(grp.members)} were never observed "
                                   "during calibration; feed state values in the calibration data")
        for t in grp.members:
            plan.act[t], plan.dtype[t] = shared
    plan.state_pairs = pairs
    return plan
