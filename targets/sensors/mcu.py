"""Microcontroller energy from a cycle count: ``E = cycles / f_clk · P_active``.

The firmware reads its cycle counter (DWT->CYCCNT on Cortex-M) around an inference and sends
the count back; the target profile gives the clock and the active power.
"""

from __future__ import annotations

from targets.model import Target
from targets.sensors.base import EnergyMeasurement


def energy_from_cycles(cycles: int, target: Target) -> EnergyMeasurement:
    if cycles < 0:
        raise ValueError(f"cycle count must be >= 0, got {cycles}")
    seconds = cycles / target.cpu.clock_hz
    return EnergyMeasurement(f"mcu-cycles:{target.name}", seconds * target.power.active_w,
                             seconds)
