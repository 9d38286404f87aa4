"""NPU backend for targets whose accelerator is not on this machine (emulator mode).

Numerics run on the SDK's integer kernels (the NPU is specified to compute the same integer
ops); time comes from the NPU's own compiler where one exists — ``ethos-u-vela`` for Arm
Ethos-U — and otherwise from a roofline model of the target's accelerator, labelled as an
estimate. ``supports`` accepts a node when the .tflite writer can express it exactly and the
target's accelerator lists its op; the rest falls back to the reference backend (the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.backends.base import Backend, Executable
from sdk.backends.npu.roofline import RooflineEstimate, roofline
from sdk.backends.npu.vela import VelaReport, compile_vela, vela_executable
from sdk.backends.reference import ReferenceBackend
from sdk.compile.tflite_writer import node_supported, write_tflite
from sdk.errors import TargetError
from sdk.graph.ir import Graph, Node


def _load(target: Any) -> Any:
    if target is None or isinstance(target, str):
        from targets import load_target
        return load_target(target or "corstone-300-ethos-u55")
    return target


def vela_accelerator(target: Any) -> str | None:
    """vela's ``--accelerator-config`` for an Ethos-U target (e.g. 'ethos-u55-128'), else None."""
    acc = target.accelerator()
    if acc is None or not acc.name.lower().startswith("ethos-u"):
        return None
    return acc.name.lower()


def npu_estimate(graph: Graph, target: Any) -> VelaReport | RooflineEstimate:
    """vela's estimate when the target is an Ethos-U and vela is installed, else a roofline."""
    target = _load(target)
    accel = vela_accelerator(target)
    if accel is not None and vela_executable() is not None:
        return compile_vela(write_tflite(graph).data, graph.name, accelerator=accel)
    return roofline(graph, target)


class NpuExecutable(Executable):
    """Integer kernels for the numbers, the NPU compiler or a roofline for the time."""

    def __init__(self, graph: Graph, target: Any) -> None:
        self.graph = graph
        self.target = target
        self.inner = ReferenceBackend().compile(graph, target)
        self.estimate = npu_estimate(graph, target)
        self.backend = f"{target.accelerator().name} (emulated)"

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.run(feeds)


class EthosUBackend(Backend):
    """An NPU target's accelerator (Ethos-U through vela; others through a roofline)."""

    name = "npu"

    def supports(self, node: Node, target: Any, graph: Graph) -> tuple[bool, str]:
        target = _load(target)
        acc = target.accelerator()
        if acc is None:
            return False, f"target {target.name!r} has no accelerator"
        if node.op not in acc.ops:
            return False, f"{acc.name} does not take {node.op} (target {target.name!r} op list)"
        ok, why = node_supported(graph, node)
        return ok, (f"the .tflite writer refuses it: {why}" if why else "")

    def compile(self, subgraph: Graph, target: Any) -> NpuExecutable:
        target = _load(target)
        if target.accelerator() is None:
            raise TargetError(f"target {target.name!r} has no NPU; pick one with an accelerator "
                              "(`edge targets`)")
        return NpuExecutable(subgraph, target)
