"""Raspberry Pi 5 PMIC readings from ``vcgencmd pmic_read_adc``.

The command prints one line per ADC channel, currents then voltages, e.g.::

     3V3_SYS_A current(1)=0.06831600A
     3V3_SYS_V volt(9)=3.31170000V

A rail's power is the product of its ``<RAIL>_A`` current and ``<RAIL>_V`` voltage; the board
power is the sum over rails that have both (``EXT5V_V`` has no current channel and is left
out). This is the PMIC's view: the rails it regulates, not the USB-C input.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from typing import TypeVar

from targets.sensors.base import EnergyMeasurement, SensorUnavailable, integrate_power

T = TypeVar("T")
_LINE = re.compile(r"^\s*(\S+)_(A|V)\s+(current|volt)\(\d+\)=([-+0-9.eE]+)[AV]\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, tuple[float, float]]:
    """Rail name -> (amps, volts) for rails with both readings."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            rail, unit, _, value = m.groups()
            (amps if unit == "A" else volts)[rail] = float(value)
    rails = {r: (amps[r], volts[r]) for r in amps if r in volts}
    if not rails:
        raise SensorUnavailable("vcgencmd pmic_read_adc printed no <RAIL>_A/<RAIL>_V pairs")
    return rails


def total_power_w(text: str) -> float:
    return sum(a * v for a, v in parse_pmic_read_adc(text).values())


class Pi5PmicMeter:
    def __init__(self, command: Sequence[str] = ("vcgencmd", "pmic_read_adc")) -> None:
        self.command = list(command)
        self.name = "pi5-pmic"
        self.read_power_w()  # fail now, with the reason

    def read_power_w(self) -> float:
        try:
            out = subprocess.run(self.command, capture_output=True, text=True, timeout=5,
                                 check=True).stdout
        except FileNotFoundError:
            raise SensorUnavailable(f"{self.command[0]} is not installed (not a Raspberry Pi "
                                    "OS image)") from None
        except subprocess.CalledProcessError as exc:
            raise SensorUnavailable(f"{' '.join(self.command)} failed: "
                                    f"{exc.stderr.strip()}") from None
        return total_power_w(out)

    def measure(self, workload: Callable[[], T]) -> tuple[T, EnergyMeasurement]:
        return integrate_power(self.name, self.read_power_w, workload, interval_s=0.05)
