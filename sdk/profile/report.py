"""The profile report: per-layer rows, totals, memory, energy; JSON export and a plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LayerRow:
    """One node: counts, traffic, measured and modelled time, modelled energy."""

    name: str
    op: str
    unit: str                     # where the target would run it ("cpu" or an accelerator)
    arithmetic: str               # "int" or "fp32"
    macs: int
    accumulates: float
    adds: int
    muls: int
    requants: int
    other: int
    weight_bytes: int
    activation_bytes: int         # read + written
    measured_s: float | None      # median wall time on this machine (None: not run)
    modeled_s: float              # roofline estimate on the target
    bound: str                    # "compute" or "memory"
    energy_compute_j: float
    energy_memory_j: float
    energy_static_j: float
    fp32_compute_j: float         # the same counts priced in fp32 (integer saving)

    @property
    def energy_j(self) -> float:
        return self.energy_compute_j + self.energy_memory_j + self.energy_static_j


@dataclass
class ProfileReport:
    model: str
    target: str
    energy_table: str
    energy_table_source: str
    rows: list[LayerRow]
    peak_arena_bytes: int
    weight_bytes: int
    flash_bytes: int
    ram_available_bytes: int
    flash_available_bytes: int
    measured_on: str              # host description, or "" when nothing ran
    runs: int
    measured_total_s: float | None
    sensor: str                   # meter name, or "no sensor (<why>)"
    measured_energy_j: float | None
    notes: list[str] = field(default_factory=list)

    # -- totals -------------------------------------------------------------------------
    def total(self, key: str) -> float:
        return sum(getattr(r, key) for r in self.rows)

    @property
    def modeled_total_s(self) -> float:
        return self.total("modeled_s")

    @property
    def energy_j(self) -> float:
        return sum(r.energy_j for r in self.rows)

    @property
    def fits(self) -> bool:
        return (self.peak_arena_bytes <= self.ram_available_bytes
                and self.flash_bytes <= self.flash_available_bytes)

    def totals(self) -> dict[str, Any]:
        keys = ("macs", "accumulates", "adds", "muls", "requants", "other", "weight_bytes",
                "activation_bytes", "energy_compute_j", "energy_memory_j", "energy_static_j",
                "fp32_compute_j")
        t: dict[str, Any] = {k: self.total(k) for k in keys}
        t["modeled_s"] = self.modeled_total_s
        t["measured_s"] = self.measured_total_s
        t["energy_j"] = self.energy_j
        t["energy_uj"] = self.energy_j * 1e6
        compute = t["energy_compute_j"]
        t["fp32_over_int_compute"] = t["fp32_compute_j"] / compute if compute > 0 else None
        return t

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "rows"}
        d["rows"] = [{**asdict(r), "energy_j": r.energy_j} for r in self.rows]
        d["totals"] = self.totals()
        d["fits"] = self.fits
        d["modeled_note"] = ("modeled_s is a roofline estimate for the target; energy is "
                             f"modelled with table {self.energy_table!r}")
        return d

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    # -- text ---------------------------------------------------------------------------
    def render(self) -> str:
        """A plain-text table: MACs are multiply-accumulates, ACs the accumulates of
        spike-driven layers (at the traced firing rate)."""
        lines = [(f"profile of {self.model!r} on target {self.target!r} "
                  f"(energy table: {self.energy_table})")]
        head = (f"{'layer':<24} {'op':<16} {'unit':<8} {'MACs':>11} {'ACs':>9} {'bytes':>10} "
                f"{'measured us':>11} {'model us':>9} {'energy uJ':>10}")
        lines += [head, "-" * len(head)]
        for r in self.rows:
            meas = f"{r.measured_s * 1e6:11.1f}" if r.measured_s is not None else f"{'-':>11}"
            lines.append(f"{r.name[:24]:<24} {r.op[:16]:<16} {r.unit[:8]:<8} {r.macs:>11,} "
                         f"{r.accumulates:>9,.0f} "
                         f"{r.weight_bytes + r.activation_bytes:>10,} {meas} "
                         f"{r.modeled_s * 1e6:9.2f} {r.energy_j * 1e6:10.3f}")
        t = self.totals()
        meas = (f"{self.measured_total_s * 1e6:11.1f}" if self.measured_total_s is not None
                else f"{'-':>11}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<50} {t['macs']:>11,} {t['accumulates']:>9,.0f} "
                     f"{t['weight_bytes'] + t['activation_bytes']:>10,} {meas} "
                     f"{self.modeled_total_s * 1e6:9.2f} {self.energy_j * 1e6:10.3f}")
        lines.append(f"peak arena {self.peak_arena_bytes:,} B of {self.ram_available_bytes:,} B "
                     f"RAM; weights {self.weight_bytes:,} B; flash {self.flash_bytes:,} B of "
                     f"{self.flash_available_bytes:,} B" + ("" if self.fits else "  DOES NOT FIT"))
        if t["fp32_over_int_compute"]:
            lines.append(f"arithmetic energy {t['energy_compute_j'] * 1e6:.3f} uJ; the same "
                         f"counts in fp32 {t['fp32_compute_j'] * 1e6:.3f} uJ "
                         f"({t['fp32_over_int_compute']:.1f}x)")
        if self.measured_energy_j is not None:
            lines.append(f"measured energy ({self.sensor}): "
                         f"{self.measured_energy_j * 1e6:.1f} uJ per inference on this machine")
        else:
            lines.append(f"measured energy: {self.sensor}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    # -- plot ---------------------------------------------------------------------------
    def plot(self, path: str | Path) -> None:
        """Per-layer latency (measured and modelled) and energy bars, saved as an image."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r.name for r in self.rows]
        x = range(len(names))
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6, 0.35 * len(names) + 2), 7),
                                       sharex=True)
        width = 0.4
        ax1.bar([i - width / 2 for i in x], [r.modeled_s * 1e3 for r in self.rows], width,
                label=f"modelled on {self.target}")
        if any(r.measured_s is not None for r in self.rows):
            ax1.bar([i + width / 2 for i in x], [(r.measured_s or 0) * 1e3 for r in self.rows],
                    width, label="measured on this machine")
        ax1.set_ylabel("latency (ms)")
        ax1.legend()
        ax2.bar(list(x), [r.energy_j * 1e6 for r in self.rows], color="tab:green")
        ax2.set_ylabel(f"energy (uJ, {self.energy_table})")
        ax2.set_xticks(list(x))
        ax2.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
        fig.suptitle(f"{self.model} on {self.target}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
