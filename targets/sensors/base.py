"""What every power or energy reader offers, and how a power reader becomes an energy meter.

Two kinds of hardware exist: **energy counters** (RAPL: a running total in microjoules) and
**power monitors** (INA3221, INA219/INA226, the Pi 5 PMIC: instantaneous watts). A power
monitor is turned into energy by sampling it while the workload runs and integrating with the
trapezoid rule: ``E ≈ Σ (P_k + P_{k+1})/2 · (t_{k+1} − t_k)``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class SensorUnavailable(Exception):
    """The sensor is not present or not readable here; the message says why."""


@dataclass
class EnergyMeasurement:
    sensor: str          # which sensor produced it, e.g. "rapl:package-0"
    energy_j: float
    seconds: float

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.seconds if self.seconds > 0 else 0.0


class EnergyMeter(Protocol):
    name: str

    def measure(self, workload: Callable[[], T]) -> tuple[T, EnergyMeasurement]:
        """Run ``workload`` once and return its result and the energy it took."""


def integrate_power(name: str, read_power_w: Callable[[], float],
                    workload: Callable[[], T], interval_s: float = 0.01
                    ) -> tuple[T, EnergyMeasurement]:
    """Sample ``read_power_w`` every ``interval_s`` in a thread while ``workload`` runs."""
    samples: list[tuple[float, float]] = [(time.perf_counter(), read_power_w())]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(interval_s):
            samples.append((time.perf_counter(), read_power_w()))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        result = workload()
    finally:
        stop.set()
        thread.join()
    samples.append((time.perf_counter(), read_power_w()))
    energy = sum((p0 + p1) / 2 * (t1 - t0)
                 for (t0, p0), (t1, p1) in itertools.pairwise(samples))
    return result, EnergyMeasurement(name, energy, samples[-1][0] - samples[0][0])
