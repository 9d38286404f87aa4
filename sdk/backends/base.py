"""The backend interface: every executor of an integer graph is one small module behind it.

A backend answers three questions:

* ``supports(node, target, graph) -> (bool, reason)``: can it run this node *exactly as the
  integer semantics say* (or within its stated tolerance)? ``reason`` says why not.
* ``compile(subgraph, target) -> Executable``: prepare a sub-graph whose every node it supports.
* ``Executable.run(feeds) -> outputs`` and ``Executable.profile(feeds, repeats)``.

Feeds and outputs are keyed by IR tensor name and are the IR's own arrays (NCHW, integer
dtypes for integer tensors), whatever layout the backend uses inside.
"""

from __future__ import annotations

import importlib
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.errors import EdgeError
from sdk.graph.ir import Graph, Node


@dataclass
class Profile:
    """Wall-clock latency of repeated runs of one Executable on this machine."""

    backend: str
    latencies_s: list[float]
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "median_s": self.median_s,
                "runs": len(self.latencies_s), "detail": self.detail}


class Executable(ABC):
    """A compiled (sub-)graph ready for repeated runs."""

    backend: str = "?"
    graph: Graph

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on ``feeds`` (input name -> array); return every output of the sub-graph."""

    def profile(self, feeds: Mapping[str, np.ndarray], repeats: int = 10,
                warmup: int = 1) -> Profile:
        """Median-friendly latency samples: ``warmup`` untimed runs, then ``repeats`` timed."""
        for _ in range(warmup):
            self.run(feeds)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            self.run(feeds)
            times.append(time.perf_counter() - t0)
        return Profile(self.backend, times)


class Backend(ABC):
    """One executor family (reference kernels, ONNX Runtime, LiteRT, an NPU compiler)."""

    name: str = "?"

    def available(self) -> tuple[bool, str]:
        """Whether the backend's runtime is importable here; the reason when not."""
        return True, ""

    @abstractmethod
    def supports(self, node: Node, target: Any, graph: Graph) -> tuple[bool, str]:
        """Can this backend run ``node`` (of ``graph``) for ``target``? (ok, reason if not)."""

    @abstractmethod
    def compile(self, subgraph: Graph, target: Any) -> Executable:
        """Prepare ``subgraph`` (every node supported) for repeated runs."""


# name -> "module:factory"; a module is imported only when its backend is asked for
BACKENDS: dict[str, str] = {
    "reference": "sdk.backends.reference:ReferenceBackend",
    "reference-numpy": "sdk.backends.reference:reference_numpy",
    "onnxruntime": "sdk.backends.onnxruntime:OrtBackend",
    "litert": "sdk.backends.litert:LiteRTBackend",
    "litert-ref": "sdk.backends.litert:_litert_ref",
    "litert-cpu": "sdk.backends.litert:_litert_cpu",
    "npu": "sdk.backends.npu:EthosUBackend",
    "mcu": "sdk.backends.mcu:McuBackend",
}


def get_backend(name: str | Backend, **options: Any) -> Backend:
    """A backend by name (``edge run --backend NAME``); options go to its constructor."""
    if isinstance(name, Backend):
        return name
    if name not in BACKENDS:
        raise EdgeError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, factory = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), factory)(**options)
