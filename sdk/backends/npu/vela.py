"""Compile a .tflite for Arm Ethos-U with ``ethos-u-vela`` and read back its estimate.

vela 5.2.0 facts this relies on: its built-in ``Arm/vela.ini`` holds the system configs
(``Ethos_U55_High_End_Embedded`` …); cycles and inferences/s are printed only with
``--verbose-cycle-estimate``, per-layer figures with ``--verbose-performance``; the output
directory receives ``<name>_vela.tflite``, ``<name>_summary_<system>.csv`` (one row of network
totals) and ``<name>_per-layer.csv`` (one row per operator, with its target NPU or CPU). In
the optimized model the NPU part is one ``CUSTOM 'ethos-u'`` operator and every operator vela
could not place stays beside it as a normal TFLite (CPU) operator.

All figures are vela's own *estimates* (its performance model), not measurements.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sdk.errors import EdgeError

DEFAULT_CONFIG = "Arm/vela.ini"
DEFAULT_SYSTEM = "Ethos_U55_High_End_Embedded"
DEFAULT_MEMORY_MODE = "Shared_Sram"
DEFAULT_ACCELERATOR = "ethos-u55-128"


@dataclass
class VelaLayer:
    """One row of vela's per-layer CSV."""

    name: str
    original_op: str
    npu_op: str
    target: str          # "NPU" or "CPU"
    cycles: float
    macs: float
    network_pct_cycles: float


@dataclass
class VelaReport:
    """vela's estimate for one model (all figures are vela's performance model)."""

    accelerator: str
    system_config: str
    memory_mode: str
    clock_hz: float
    cycles_total: float
    cycles_npu: float
    inferences_per_s: float
    inference_time_s: float
    nn_macs: float
    sram_used_bytes: float
    offchip_flash_used_bytes: float
    sram_traffic_bytes: float
    dram_traffic_bytes: float
    offchip_flash_traffic_bytes: float
    npu_operators: int
    cpu_operators: int
    layers: list[VelaLayer] = field(default_factory=list)
    optimized_ops: list[str] = field(default_factory=list)   # ops of the vela .tflite
    optimized_model: bytes = b""
    source: str = "vela estimate"

    @property
    def cpu_ops(self) -> list[str]:
        """Operators left for the CPU beside the NPU's CUSTOM 'ethos-u' op."""
        return [op for op in self.optimized_ops if op != "CUSTOM 'ethos-u'"]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("optimized_model")
        d["cpu_ops"] = self.cpu_ops
        return d

    def summary(self) -> str:
        return (f"{self.accelerator} ({self.system_config}, {self.memory_mode}) — vela estimate: "
                f"{self.cycles_total:.0f} cycles ({self.cycles_npu:.0f} NPU), "
                f"{self.inference_time_s * 1e3:.3f} ms, {self.inferences_per_s:.1f} inferences/s, "
                f"SRAM traffic {self.sram_traffic_bytes / 1024:.1f} KiB, DRAM "
                f"{self.dram_traffic_bytes / 1024:.1f} KiB, off-chip flash "
                f"{self.offchip_flash_traffic_bytes / 1024:.1f} KiB; {self.npu_operators} op(s) on "
                f"the NPU, {self.cpu_operators} on the CPU"
                + (f" ({', '.join(self.cpu_ops)})" if self.cpu_ops else ""))


def vela_executable() -> list[str] | None:
    """How to start vela here: the console script beside this Python, or on PATH."""
    here = Path(sys.executable).with_name("vela")
    if here.exists():
        return [str(here)]
    found = shutil.which("vela")
    return [found] if found else None


def _f(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key, "") or 0.0)
    except ValueError:
        return 0.0


def _count(stdout: str, what: str) -> int:
    for line in stdout.splitlines():
        if line.strip().startswith(f"{what} operators"):
            return int(line.split("=")[1].split("(")[0])
    return 0


def compile_vela(model: bytes, name: str = "model", accelerator: str = DEFAULT_ACCELERATOR,
                 system_config: str = DEFAULT_SYSTEM, memory_mode: str = DEFAULT_MEMORY_MODE,
                 config: str = DEFAULT_CONFIG, timeout_s: float = 120.0) -> VelaReport:
    """Run vela on a .tflite (bytes) and parse its summary, per-layer CSV and output model."""
    exe = vela_executable()
    if exe is None:
        raise EdgeError("ethos-u-vela is not installed; run `pip install ethos-u-vela==5.2.0`")
    from sdk.frontends.tflite_import import parse_tflite

    with tempfile.TemporaryDirectory(prefix="edge-vela-") as tmp:
        src = Path(tmp) / f"{name}.tflite"
        src.write_bytes(model)
        out = Path(tmp) / "out"
        cmd = exe + [str(src), "--config", config, "--system-config", system_config,
                     "--memory-mode", memory_mode, "--accelerator-config", accelerator,
                     "--verbose-cycle-estimate", "--verbose-performance", "--output-dir", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise EdgeError(f"vela did not finish within {timeout_s:.0f} s on {name!r}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise EdgeError(f"vela failed on {name!r} (exit {proc.returncode}): {' | '.join(tail)}")
        summaries = list(out.glob(f"{name}_summary_*.csv"))
        if not summaries:
            raise EdgeError(f"vela wrote no summary CSV for {name!r}; is it version 5.x?")
        with summaries[0].open() as fh:
            row = next(csv.DictReader(fh))
        layers = []
        per_layer = out / f"{name}_per-layer.csv"
        if per_layer.exists():
            with per_layer.open() as fh:
                for r in csv.DictReader(fh):
                    layers.append(VelaLayer(r.get("Name", ""), r.get("Original Operator", ""),
                                            r.get("NNG Operator", ""), r.get("Target", ""),
                                            _f(r, "Op Cycles"), _f(r, "MAC Count"),
                                            _f(r, "Network% (cycles)")))
        optimized = (out / f"{name}_vela.tflite").read_bytes()
    ops = [o.kind for o in parse_tflite(optimized)[2]]
    return VelaReport(
        accelerator=accelerator, system_config=system_config, memory_mode=memory_mode,
        clock_hz=_f(row, "core_clock"), cycles_total=_f(row, "cycles_total"),
        cycles_npu=_f(row, "cycles_npu"), inferences_per_s=_f(row, "inferences_per_second"),
        inference_time_s=_f(row, "inference_time"), nn_macs=_f(row, "nn_macs"),
        sram_used_bytes=_f(row, "sram_memory_used") * 1024,
        offchip_flash_used_bytes=_f(row, "off_chip_flash_memory_used") * 1024,
        sram_traffic_bytes=_f(row, "sram_total_bytes"),
        dram_traffic_bytes=_f(row, "dram_total_bytes"),
        offchip_flash_traffic_bytes=_f(row, "off_chip_flash_total_bytes"),
        npu_operators=_count(proc.stdout, "NPU"), cpu_operators=_count(proc.stdout, "CPU"),
        layers=layers, optimized_ops=ops, optimized_model=optimized,
        source=f"vela estimate ({' '.join(Path(c).name for c in cmd[:1])} "
               f"--accelerator-config {accelerator} --system-config {system_config})")
