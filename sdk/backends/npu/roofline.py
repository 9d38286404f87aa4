"""Roofline latency estimate for an accelerator that is not on this machine.

For each node: ``t = max(ops / peak_ops_per_s, bytes / bandwidth)`` where ``ops = 2·MACs +
other element work`` (vendor convention, a MAC is two ops) and ``bytes`` is the compulsory
traffic (weights once, activations read and written) from :mod:`sdk.profile.opcount`. The
peak is ``macs_per_cycle · 2 · clock`` when the target publishes MACs/cycle, else its quoted
peak int8 ops/s. The whole model's estimate is the sum over nodes. It is an upper bound on
speed (real utilisation is lower), and is always labelled as an estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sdk.errors import TargetError
from sdk.graph.ir import Graph


@dataclass
class RooflineLayer:
    node: str
    op: str
    ops: float
    bytes: float
    seconds: float
    bound: str          # "compute" or "memory"


@dataclass
class RooflineEstimate:
    device: str
    peak_ops_per_s: float
    bandwidth_bytes_per_s: float
    seconds: float
    layers: list[RooflineLayer] = field(default_factory=list)
    source: str = "roofline estimate (not measured)"

    @property
    def inferences_per_s(self) -> float:
        return 1.0 / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"inferences_per_s": self.inferences_per_s}

    def summary(self) -> str:
        mem = sum(1 for layer in self.layers if layer.bound == "memory")
        return (f"{self.device} — {self.source}: {self.seconds * 1e3:.4f} ms "
                f"({self.inferences_per_s:.1f} inferences/s) at {self.peak_ops_per_s / 1e9:.1f} "
                f"GOPS peak and {self.bandwidth_bytes_per_s / 1e9:.1f} GB/s; {mem} of "
                f"{len(self.layers)} layers memory-bound")


def device_peak(target: Any, use_accelerator: bool = True) -> tuple[str, float, float]:
    """(device name, peak int8 ops/s, bandwidth bytes/s) of the target's NPU or CPU."""
    acc = target.accelerator() if use_accelerator and hasattr(target, "accelerator") else None
    if acc is not None:
        peak = (2.0 * acc.macs_per_cycle * acc.clock_hz if acc.macs_per_cycle and acc.clock_hz
                else acc.peak_int8_ops_per_s)
        bw = acc.bandwidth_bytes_per_s or target.memory.bandwidth_bytes_per_s
        return acc.name, float(peak), float(bw)
    if not hasattr(target, "cpu"):
        raise TargetError("a roofline estimate needs a Target (targets.load_target(NAME))")
    peak = 2.0 * target.cpu_peak_int8_macs_per_s
    return f"{target.cpu.core} x{target.cpu.cores}", float(peak), float(target.memory.bandwidth_bytes_per_s)


def roofline(graph: Graph, target: Any, use_accelerator: bool = True) -> RooflineEstimate:
    """Estimate the latency of ``graph`` on the target's accelerator (or its CPU)."""
    from sdk.profile.opcount import count_graph

    name, peak, bw = device_peak(target, use_accelerator)
    if peak <= 0 or bw <= 0:
        raise TargetError(f"target {getattr(target, 'name', target)!r} gives no peak ops/s or "
                          "bandwidth for a roofline estimate; add them to its TOML")
    layers = []
    for c in count_graph(graph):
        nbytes = c.weight_bytes + c.activation_read_bytes + c.activation_write_bytes
        t_compute, t_memory = c.ops / peak, nbytes / bw
        layers.append(RooflineLayer(c.node, c.op, c.ops, nbytes, max(t_compute, t_memory),
                                    "compute" if t_compute >= t_memory else "memory"))
    return RooflineEstimate(name, peak, bw, sum(layer.seconds for layer in layers), layers)
