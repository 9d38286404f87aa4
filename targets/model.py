"""The ``Target`` record: what a board has, as plain dataclasses read from one TOML file.

Units are SI and spelled in the field names: ``clock_hz``, ``ram_bytes``,
``bandwidth_bytes_per_s``, ``active_w``. Energy per operation is in picojoules (``*_pj``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cpu:
    """The application or microcontroller core cluster."""

    arch: str                      # e.g. "armv8.2-a", "armv7e-m", "x86_64"
    core: str                      # e.g. "Cortex-A76", "Cortex-M7"
    cores: int
    clock_hz: float
    int8_macs_per_cycle: float     # per core, sustained by the SIMD unit (estimate, see TOML)
    simd: str = ""                 # "neon", "neon+dotprod", "helium", "dsp", "avx2"


@dataclass(frozen=True)
class Memory:
    """Memory sizes and where the compiled model's parts live.

    ``weights_in`` / ``activations_in`` name a memory level of the energy table
    ("sram", "dram" or "flash"): on a microcontroller weights stay in flash and the arena is
    in SRAM; on a Linux board both are in DRAM behind the caches.
    """

    ram_bytes: int
    flash_bytes: int
    bandwidth_bytes_per_s: float   # main memory (DRAM, or SRAM on an MCU) peak bandwidth
    weights_in: str
    activations_in: str
    storage: str = ""              # "microSD", "eMMC 8 GB", "NVMe" ... (free text)
    flash_bandwidth_bytes_per_s: float = 0.0   # 0: same as bandwidth_bytes_per_s


@dataclass(frozen=True)
class Accelerator:
    """An NPU, GPU or TPU beside the CPU."""

    name: str
    kind: str                      # "npu" | "gpu" | "tpu"
    peak_int8_ops_per_s: float     # 1 MAC = 2 ops, as vendors count TOPS
    macs_per_cycle: int            # 0 where the vendor does not publish it
    clock_hz: float
    onchip_sram_bytes: int
    bandwidth_bytes_per_s: float
    ops: tuple[str, ...]           # integer IR op names it accepts (docs/ops.md)
    delegate: str                  # which delegate / backend drives it
    optional: bool = False         # an add-on kit (e.g. the Pi 5 AI Kit), not always fitted
    power_w: float = 0.0           # typical power while busy


@dataclass(frozen=True)
class PowerSensor:
    """Where to read power or energy on the board; ``kind`` picks a reader in targets.sensors.

    ``params`` keeps the reader's own keys (paths, I2C bus and address, shunt resistor).
    """

    kind: str                      # "rapl" | "ina3221" | "pi5-pmic" | "ina219" | "ina226" | "mcu-cycles"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Power:
    """Board power figures used for static energy and MCU cycle-count energy."""

    active_w: float
    idle_w: float
    source: str = ""


@dataclass(frozen=True)
class Target:
    """A board profile. Load with :func:`targets.load_target`."""

    name: str
    description: str
    cpu: Cpu
    memory: Memory
    power: Power
    delegates: tuple[str, ...]
    accelerators: tuple[Accelerator, ...] = ()
    power_sensors: tuple[PowerSensor, ...] = ()
    energy_table: str = "horowitz-45nm"
    energy_overrides: dict[str, float] = field(default_factory=dict)
    is_mcu: bool = False
    host: bool = False             # the machine the SDK runs on (emulator mode)
    source_file: str = ""
    notes: str = ""

    @property
    def cpu_peak_int8_macs_per_s(self) -> float:
        return self.cpu.cores * self.cpu.clock_hz * self.cpu.int8_macs_per_cycle

    def accelerator(self, include_optional: bool = True) -> Accelerator | None:
        """The first accelerator (optional add-ons only when ``include_optional``)."""
        for acc in self.accelerators:
            if include_optional or not acc.optional:
                return acc
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["delegates"] = list(self.delegates)
        for a in d["accelerators"]:
            a["ops"] = list(a["ops"])
        return d
