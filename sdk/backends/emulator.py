"""Emulator mode: run for a target on this machine with the same integer numerics, enforce
the target's limits at compile time, and report modelled target latency beside the measured
host latency.

Limits checked by :func:`check_fits` (each failure names needed vs available and a fix):

* **RAM**: the static arena plan (:func:`sdk.compile.memory_plan.plan_memory`) must fit the
  target's RAM (on a microcontroller, the SRAM holding the tensor arena);
* **flash / storage**: weights plus per-channel parameters must fit ``flash_bytes``; on a
  microcontroller the packed flash image (``firmware_bridge.image``, what ``edge flash``
  sends) must fit one A/B slot of that flash;
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
from sdk.errors import GraphError, TargetError, UnsupportedOpError
from sdk.graph.ir import Graph


def _target(target: Any) -> Any:
    from targets import load_target
    return load_target(target)


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


@dataclass
class FitReport:
    """What the model needs of the target and what the target has. On a microcontroller
    also the packed flash image (``image_bytes``, what ``edge flash`` sends) against one A/B
    slot (``slot_bytes``); ``problems`` holds one clause per limit exceeded (empty: fits)."""

    target: str
    arena_bytes: int
    ram_bytes: int
    flash_needed_bytes: int
    flash_bytes: int
    missing_ops: list[str] = field(default_factory=list)
    image_bytes: int | None = None
    slot_bytes: int | None = None
    problems: list[str] = field(default_factory=list)
    fix: str = ""

    @property
    def fits(self) -> bool:
        return not self.problems

    def message(self, model: str | None = None) -> str:
        """One line: what does not fit, needed vs available, and a fix not already in force."""
        return (f"model does not fit {self.target}: " + "; ".join(self.problems)
                + (f" (model {model!r})" if model else "")
                + (f" — {self.fix}" if self.fix else ""))

    def __str__(self) -> str:
        text = (f"{self.target}: arena {_kib(self.arena_bytes)} of {_kib(self.ram_bytes)} RAM "
                f"({100 * self.arena_bytes / self.ram_bytes:.1f}%), weights "
                f"{_kib(self.flash_needed_bytes)} of {_kib(self.flash_bytes)} flash "
                f"({100 * self.flash_needed_bytes / self.flash_bytes:.1f}%)")
        if self.image_bytes is not None and self.slot_bytes:
            text += (f", image {_kib(self.image_bytes)} of a {_kib(self.slot_bytes)} A/B slot "
                     f"({100 * self.image_bytes / self.slot_bytes:.1f}%)")
        return text


def decide_fit(report: FitReport, int16_activations: int = 0, int8_activations: int = 0
               ) -> FitReport:
    """THE fit decision, shared by ``edge compile --target``, ``edge profile`` and ``edge
    flash``: fill ``report.problems`` (arena vs RAM, weights vs flash, packed image vs one
    A/B slot) and ``report.fix``, a suggestion that never names what is already in force
    (the activation widths are read off the graph: ``--activation-bits 8`` is suggested
    only when every activation is int16)."""
    ram = report.arena_bytes > report.ram_bytes
    flash = report.flash_needed_bytes > report.flash_bytes
    image = (report.image_bytes is not None and report.slot_bytes is not None
             and report.image_bytes > report.slot_bytes)
    problems, fixes = [], []
    if ram:
        problems.append(f"RAM: arena needs {_kib(report.arena_bytes)} of arena; target "
                        f"{report.target} has {_kib(report.ram_bytes)} of RAM")
        if int16_activations and not int8_activations:
            fixes.append("compile with --activation-bits 8")
        elif int16_activations:
            fixes.append(f"make fewer activations int16 ({int16_activations} are: "
                         "--no-mixed-precision, --int16-layers none)")
        elif int8_activations:
            fixes.append("activations are int8 already: use a smaller input or model")
        else:
            fixes.append("use a smaller input or model")
    if flash:
        problems.append(f"flash: needs {_kib(report.flash_needed_bytes)} for weights; target "
                        f"{report.target} has {_kib(report.flash_bytes)} of flash")
    if image:
        problems.append(f"flash: image needs {report.image_bytes:,} B, an A/B slot of "
                        f"{report.target} holds {report.slot_bytes:,} B")
    if flash or image:
        fixes.append("weights are int8 already: prune or shrink the model, or pick a board "
                     "with more flash")
    report.problems, report.fix = problems, "; ".join(fixes)
    return report


def activation_widths(graph: Graph) -> tuple[int, int]:
    """(int16, int8/uint8) activation tensors of an integer graph."""
    n16 = n8 = 0
    for t in graph.tensors.values():
        if t.is_constant or t.quant is None:
            continue
        if t.dtype == "int16":
            n16 += 1
        elif t.dtype in ("int8", "uint8"):
            n8 += 1
    return n16, n8


def fit_report(graph: Graph, target: Any) -> FitReport:
    """Everything :func:`check_fits` decides, without raising: needs vs limits, and on a
    microcontroller the packed image against one A/B slot and the ops without a kernel."""
    from sdk.compile.memory_plan import plan_memory

    t = _target(target)
    plan = plan_memory(graph)
    report = FitReport(t.name, plan.arena_bytes, t.memory.ram_bytes, plan.flash_bytes,
                       t.memory.flash_bytes)
    if t.is_mcu:
        try:
            from firmware_bridge.image import image_sizes, slot_size_for_flash
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
            if not report.missing_ops:
                try:
                    report.image_bytes, image_arena = image_sizes(graph)
                except (UnsupportedOpError, GraphError):
                    report.image_bytes = None   # no image can be packed: the op check says why
                else:
                    report.slot_bytes = slot_size_for_flash(t.memory.flash_bytes)
                    report.arena_bytes = max(report.arena_bytes, image_arena)
    return decide_fit(report, *activation_widths(graph))


def check_fits(graph: Graph, target: Any) -> FitReport:
    """Raise TargetError (one line) when ``graph`` does not fit ``target`` (RAM, flash, and on
    a microcontroller the packed image per A/B slot, as ``edge flash`` checks), or
    UnsupportedOpError for MCU ops without a firmware kernel."""
    report = fit_report(graph, target)
    if not report.fits:
        raise TargetError(report.message(graph.name))
    if report.missing_ops:
        raise UnsupportedOpError(report.missing_ops, f"the {report.target} firmware",
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
