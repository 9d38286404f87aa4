"""Jetson on-board INA3221 power monitor (three rails, e.g. VDD_IN, VDD_CPU_GPU_CV, VDD_SOC).

Two driver generations:

* **hwmon** (JetPack 5/6, ``/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmonN``):
  ``inK_label`` names the rail, ``inK_input`` is the bus voltage in mV and ``currK_input``
  the current in mA, so ``P = inK_input · currK_input / 10^6`` W.
* **iio** (JetPack 4, ``/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0``):
  ``rail_name_K`` names the rail and ``in_powerK_input`` is the power in mW.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from targets.sensors.base import EnergyMeasurement, SensorUnavailable, integrate_power

T = TypeVar("T")


def _read(p: Path) -> str:
    return p.read_text().strip()


def hwmon_rails(hwmon_dir: str | Path) -> dict[str, float]:
    """Power in watts of every labelled rail in one hwmon directory."""
    d = Path(hwmon_dir)
    rails: dict[str, float] = {}
    for label in sorted(d.glob("in*_label")):
        k = label.name[2:-len("_label")]
        volt, curr = d / f"in{k}_input", d / f"curr{k}_input"
        if volt.exists() and curr.exists():
            rails[_read(label)] = int(_read(volt)) * int(_read(curr)) / 1e6
    if not rails:
        raise SensorUnavailable(f"{d} has no INA3221 rails (inK_label/inK_input/currK_input)")
    return rails


def iio_rails(iio_dir: str | Path) -> dict[str, float]:
    """Power in watts of every rail in one older-driver iio directory."""
    d = Path(iio_dir)
    rails: dict[str, float] = {}
    for name in sorted(d.glob("rail_name_*")):
        k = name.name[len("rail_name_"):]
        power = d / f"in_power{k}_input"
        if power.exists():
            rails[_read(name)] = int(_read(power)) / 1e3
    if not rails:
        raise SensorUnavailable(f"{d} has no INA3221 rails (rail_name_K/in_powerK_input)")
    return rails


class Ina3221Meter:
    """Integrates one rail's power (``rail``, default VDD_IN = whole module input)."""

    def __init__(self, hwmon_glob: str, iio_glob: str = "", rail: str = "VDD_IN") -> None:
        self.rail = rail
        hw = sorted(glob.glob(hwmon_glob))
        iio = sorted(glob.glob(iio_glob)) if iio_glob else []
        if hw:
            self._dir, self._reader = hw[0], hwmon_rails
        elif iio:
            self._dir, self._reader = iio[0], iio_rails
        else:
            raise SensorUnavailable(f"no INA3221 found at {hwmon_glob}"
                                    + (f" or {iio_glob}" if iio_glob else ""))
        rails = self._reader(self._dir)
        if rail not in rails:
            raise SensorUnavailable(f"INA3221 at {self._dir} has no rail {rail!r}; "
                                    f"rails: {sorted(rails)}")
        self.name = f"ina3221:{rail}"

    def read_power_w(self) -> float:
        return self._reader(self._dir)[self.rail]

    def measure(self, workload: Callable[[], T]) -> tuple[T, EnergyMeasurement]:
        return integrate_power(self.name, self.read_power_w, workload)
