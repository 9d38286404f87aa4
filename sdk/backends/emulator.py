"""Emulator mode: run for a target on this machine with the same integer numerics, enforce
the target's limits at compile time, and report modelled target latency beside the measured
host latency.

Limits checked by :func:`check_fits` (each failure names needed vs available and a fix):

* **RAM**: the static arena plan (:func:`sdk.compile.memory_plan.plan_memory`) must fit the
  target's RAM (on a microcontroller, the SRAM holding the tensor arena);
* **flash / storage**: weights plus per-channel parameters must fit ``flash_bytes``;
* **ops**: on a microcontroller every op needs a firmware kernel
  (``firmware_bridge.op_encoders.ENCODERS``).

Modelled latency is a roofline estimate (:mod:`sdk.backends.npu.roofline`) on the target's
CPU for nodes the plan keeps on the CPU and on its accelerator for nodes the NPU backend
takes (vela's figure for an Ethos-U when vela is installed). It is labelled as an estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.backends.partition import Plan, compile_for
from sdk.errors import TargetError, UnsupportedOpError
from sdk.graph.ir import Graph


def _target(target: Any) -> Any:
    from targets import load_target
    return load_target(target)


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


@dataclass
class FitReport:
    """What the model needs of the target and what the target has."""

    target: str
    arena_bytes: int
    ram_bytes: int
    flash_needed_bytes: int
    flash_bytes: int
    missing_ops: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.target}: arena {_kib(self.arena_bytes)} of {_kib(self.ram_bytes)} RAM "
                f"({100 * self.arena_bytes / self.ram_bytes:.1f}%), weights "
                f"{_kib(self.flash_needed_bytes)} of {_kib(self.flash_bytes)} flash "
                f"({100 * self.flash_needed_bytes / self.flash_bytes:.1f}%)")


def check_fits(graph: Graph, target: Any) -> FitReport:
    """Raise TargetError when ``graph`` does not fit ``target`` (RAM, flash, MCU ops)."""
    from sdk.compile.memory_plan import plan_memory

    t = _target(target)
    plan = plan_memory(graph)
    report = FitReport(t.name, plan.arena_bytes, t.memory.ram_bytes, plan.flash_bytes,
                       t.memory.flash_bytes)
    if t.is_mcu:
        try:
            from firmware_bridge.op_encoders import ENCODERS
        except ImportError:
            ENCODERS = None
        if ENCODERS is not None:
            # float boundary ops (quantize the input, dequantize the output) run on the host
            boundary = {n.name for n in graph.nodes
                        if (n.op == "QuantizeLinear" and n.inputs[0] in graph.inputs)
                        or (n.op == "DequantizeLinear" and n.outputs[0] in graph.outputs)}
            report.missing_ops = sorted({n.op for n in graph.nodes
                                         if n.op not in ENCODERS and n.name not in boundary})
    if report.arena_bytes > report.ram_bytes:
        raise TargetError(f"model {graph.name!r} needs {_kib(report.arena_bytes)} of arena; target "
                          f"{t.name} has {_kib(report.ram_bytes)} of RAM: try --activation-bits 8, "
                          "a smaller input or a smaller model")
    if report.flash_needed_bytes > report.flash_bytes:
        raise TargetError(f"model {graph.name!r} needs {_kib(report.flash_needed_bytes)} for "
                          f"weights; target {t.name} has {_kib(report.flash_bytes)} of flash: "
                          "prune or shrink the model")
    if report.missing_ops:
        raise UnsupportedOpError(report.missing_ops, f"the {t.name} firmware",
                                 "these ops have no microcontroller kernel; run on a Linux "
                                 "target or replace them")
    return report


@dataclass
class EmulationReport:
    """Host-measured latency beside the target's modelled latency, for one plan."""

    target: str
    plan: Plan
    fit: FitReport
    host_latency_s: float
    modelled_latency_s: float
    modelled_parts: list[tuple[str, str, float]]   # (device, source, seconds) per segment
    outputs: dict[str, np.ndarray]

    def __str__(self) -> str:
        lines = [str(self.plan), str(self.fit),
                 f"measured on this machine: {self.host_latency_s * 1e3:.3f} ms (median)",
                 f"modelled on {self.target}: {self.modelled_latency_s * 1e3:.3f} ms (estimate)"]
        for device, source, s in self.modelled_parts:
            lines.append(f"  {device}: {s * 1e3:.4f} ms ({source})")
        return "\n".join(lines)


def modelled_latency(plan: Plan, target: Any) -> list[tuple[str, str, float]]:
    """Per segment: (device, source of the figure, seconds) on the target."""
    from sdk.backends.npu import npu_estimate
    from sdk.backends.npu.roofline import roofline
    from sdk.backends.npu.vela import VelaReport

    t = _target(target)
    parts = []
    for seg in plan.segments:
        if seg.backend == "npu":
            est = npu_estimate(seg.graph, t)
            secs = est.inference_time_s if isinstance(est, VelaReport) else est.seconds
            parts.append((t.accelerator().name, est.source, secs))
        else:
            est = roofline(seg.graph, t, use_accelerator=False)
            parts.append((est.device, est.source, est.seconds))
    return parts


def emulate(graph: Graph, target: Any, feeds: Mapping[str, np.ndarray],
            backend: str = "reference", repeats: int = 10) -> EmulationReport:
    """Compile for ``target`` (limits enforced), run here, and model the target's latency."""
    t = _target(target)
    fit = check_fits(graph, t)
    exe = compile_for(graph, backend, t)
    prof = exe.profile(feeds, repeats=repeats)
    parts = modelled_latency(exe.plan, t)
    return EmulationReport(t.name, exe.plan, fit, prof.median_s, sum(p[2] for p in parts), parts,
                           exe.run(feeds))
