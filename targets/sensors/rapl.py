"""Linux powercap RAPL: ``/sys/class/powercap/intel-rapl:N/energy_uj``.

Each domain directory holds ``name`` (``package-0``, ``core``, ``dram`` ...), ``energy_uj``
(a running counter in microjoules) and ``max_energy_range_uj`` (the counter wraps to 0 after
this value). The energy between two reads is ``after − before``, or, when the counter
wrapped, ``max_energy_range_uj − before + after``. Since 2020 kernels make ``energy_uj``
readable by root only; a permission error is reported as "not readable", never guessed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from targets.sensors.base import EnergyMeasurement, SensorUnavailable

T = TypeVar("T")
DEFAULT_ROOT = "/sys/class/powercap"


def energy_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Microjoules between two counter reads, allowing for one wrap-around."""
    if after >= before:
        return after - before
    return max_energy_range_uj - before + after


@dataclass
class RaplDomain:
    path: Path
    name: str
    max_energy_range_uj: int

    def read_uj(self) -> int:
        try:
            return int((self.path / "energy_uj").read_text().strip())
        except PermissionError:
            raise SensorUnavailable(f"RAPL {self.path}/energy_uj is not readable by this user "
                                    "(root only on this kernel)") from None

    def measure(self, workload: Callable[[], T]) -> tuple[T, EnergyMeasurement]:
        t0, e0 = time.perf_counter(), self.read_uj()
        result = workload()
        e1, t1 = self.read_uj(), time.perf_counter()
        joules = energy_delta_uj(e0, e1, self.max_energy_range_uj) * 1e-6
        return result, EnergyMeasurement(f"rapl:{self.name}", joules, t1 - t0)


def find_domains(root: str | Path = DEFAULT_ROOT, kind: str = "package") -> list[RaplDomain]:
    """Top-level RAPL domains whose ``name`` starts with ``kind`` ("package", "psys" ...).

    Raises SensorUnavailable with the reason when none is present or readable.
    """
    root = Path(root)
    dirs = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not dirs:
        raise SensorUnavailable(f"no RAPL domains under {root} (not an Intel/AMD Linux host, "
                                "or powercap is not exposed in this container)")
    domains = []
    for d in dirs:
        try:
            name = (d / "name").read_text().strip()
            max_uj = int((d / "max_energy_range_uj").read_text().strip())
        except OSError as exc:
            raise SensorUnavailable(f"RAPL domain {d} is not readable: {exc}") from None
        if name.startswith(kind):
            domains.append(RaplDomain(d, name, max_uj))
    if not domains:
        raise SensorUnavailable(f"no RAPL domain named {kind}* under {root}")
    domains[0].read_uj()  # fail now, with the reason, if the counter is root-only
    return domains


class RaplMeter:
    """Sum of all package domains (one per CPU socket)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT, kind: str = "package") -> None:
        self.domains = find_domains(root, kind)
        self.name = "rapl:" + "+".join(d.name for d in self.domains)

    def measure(self, workload: Callable[[], T]) -> tuple[T, EnergyMeasurement]:
        t0 = time.perf_counter()
        before = [d.read_uj() for d in self.domains]
        result = workload()
        after = [d.read_uj() for d in self.domains]
        t1 = time.perf_counter()
        uj = sum(energy_delta_uj(b, a, d.max_energy_range_uj)
                 for d, b, a in zip(self.domains, before, after))
        return result, EnergyMeasurement(self.name, uj * 1e-6, t1 - t0)
