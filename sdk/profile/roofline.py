"""Roofline latency estimate of one node on a target (labelled an estimate everywhere).

``t = max(work / peak_rate, bytes_weights / bw_weights + bytes_activations / bw_activations)``

* ``work`` is counted in MAC-equivalents: MACs + accumulates + adds + muls + requants +
  other (each element-wise operation occupies one SIMD lane-slot, like a MAC).
* On the CPU, ``peak_rate = cores · clock · int8_macs_per_cycle`` for integer nodes; a float
  node gets a quarter of it (a 128-bit lane holds 4 fp32 values instead of 16 int8).
* On an accelerator that accepts the op, ``peak_rate = peak_int8_ops_per_s / 2`` (vendors
  count a MAC as 2 ops) and traffic moves at the accelerator's bandwidth.
* Weights stream from the target's weight memory (flash on a microcontroller, at the flash
  bandwidth), activations from its activation memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdk.profile.opcount import OpCount
from targets.model import Target


@dataclass
class LatencyEstimate:
    unit: str            # "cpu" or the accelerator's name
    compute_s: float
    memory_s: float

    @property
    def latency_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def work_mac_equivalents(c: OpCount) -> float:
    return c.macs + c.accumulates + c.adds + c.muls + c.requants + c.other


def estimate_node(c: OpCount, target: Target, use_accelerator: bool = True) -> LatencyEstimate:
    """Roofline estimate for one counted node on ``target``."""
    acc = target.accelerator() if use_accelerator else None
    work = work_mac_equivalents(c)
    act_bytes = c.activation_read_bytes + c.activation_write_bytes
    if acc is not None and c.op in acc.ops and c.arithmetic == "int":
        rate = acc.peak_int8_ops_per_s / 2
        return LatencyEstimate(acc.name, work / rate,
                               (c.weight_bytes + act_bytes) / acc.bandwidth_bytes_per_s)
    rate = target.cpu_peak_int8_macs_per_s * (0.25 if c.arithmetic == "fp32" else 1.0)
    mem = target.memory
    weight_bw = (mem.flash_bandwidth_bytes_per_s if mem.weights_in == "flash"
                 and mem.flash_bandwidth_bytes_per_s > 0 else mem.bandwidth_bytes_per_s)
    return LatencyEstimate("cpu", work / rate,
                           c.weight_bytes / weight_bw + act_bytes / mem.bandwidth_bytes_per_s)
