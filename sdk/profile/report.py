"""The profile report: per-layer rows, totals, memory, energy; JSON export and a plot.

Energy has ONE headline figure per inference, with its source:

* measured: a power sensor read around the runs (the target is this machine), else
* modelled: the board's active power (its TOML ``[power]``, with the TOML's source) x the
  modelled latency.

The per-op energy table (``energy_table``, Horowitz 45 nm by default) does not give a second
total: its per-layer figures only set each layer's *share* of the headline (a breakdown).
"""

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
    active_w: float = 0.0          # the target's active power ([power] active_w)
    power_source: str = ""         # where that figure comes from (the TOML's [power] source)
    latency_model: str = "roofline"  # how modeled_s was obtained
    # the SDK's one fit decision (sdk.backends.emulator.fit_report) when the caller made it:
    # one clause per limit exceeded, including the packed MCU image against one A/B slot
    fit_problems: list[str] | None = None
    cycle_estimate: dict | None = None  # sdk.profile.cycles.CycleEstimate.to_json() of the
    #                                    whole inference (QEMU mix), when one was measured

    @property
    def inference_time_s(self) -> float:
        """The modelled time of one inference: the cycle model's where the instruction mix
        was measured, else the roofline sum."""
        if self.cycle_estimate is not None:
            return float(self.cycle_estimate["seconds"])
        return self.modeled_total_s

    # -- the one energy figure ----------------------------------------------------------
    @property
    def energy_per_inference_j(self) -> float:
        """The headline: measured energy per run where a sensor was read, else active power
        x modelled time."""
        if self.measured_energy_j is not None:
            return self.measured_energy_j
        return self.active_w * self.inference_time_s

    @property
    def energy_source(self) -> str:
        if self.measured_energy_j is not None:
            return (f"measured by {self.sensor} around {self.runs} runs on this machine "
                    "(the whole sensor domain)")
        return (f"modelled: active power {self.active_w:g} W "
                f"({self.power_source or 'target profile'}) x modelled time "
                f"{self.inference_time_s * 1e3:.4g} ms ({self.latency_model})")

    def energy_shares(self) -> list[float]:
        """Each layer's share of the headline, from the op-count energy table."""
        total = sum(r.energy_j for r in self.rows)
        if total <= 0:
            return [0.0 for _ in self.rows]
        return [r.energy_j / total for r in self.rows]

    # -- totals -------------------------------------------------------------------------
    def total(self, key: str) -> float:
        return sum(getattr(r, key) for r in self.rows)

    @property
    def modeled_total_s(self) -> float:
        return self.total("modeled_s")

    @property
    def energy_j(self) -> float:
        """Sum of the op-count table's per-layer figures: the weights of the breakdown, not
        the energy per inference (that is :attr:`energy_per_inference_j`)."""
        return sum(r.energy_j for r in self.rows)

    @property
    def fits(self) -> bool:
        if self.fit_problems is not None:
            return not self.fit_problems
        return (self.peak_arena_bytes <= self.ram_available_bytes
                and self.flash_bytes <= self.flash_available_bytes)

    def totals(self) -> dict[str, Any]:
        keys = ("macs", "accumulates", "adds", "muls", "requants", "other", "weight_bytes",
                "activation_bytes", "energy_compute_j", "energy_memory_j", "energy_static_j",
                "fp32_compute_j")
        t: dict[str, Any] = {k: self.total(k) for k in keys}
        t["modeled_s"] = self.modeled_total_s
        t["measured_s"] = self.measured_total_s
        t["op_model_energy_j"] = self.energy_j
        compute = t["energy_compute_j"]
        t["fp32_over_int_compute"] = t["fp32_compute_j"] / compute if compute > 0 else None
        return t

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items()
             if k not in ("rows", "active_w", "power_source")}
        e = self.energy_per_inference_j
        shares = self.energy_shares()
        d["rows"] = [{**asdict(r), "energy_j": r.energy_j, "energy_share": sh,
                      "energy_uj_of_inference": sh * e * 1e6}
                     for r, sh in zip(self.rows, shares, strict=True)]
        d["totals"] = self.totals()
        d["fits"] = self.fits
        d["energy"] = {
            "per_inference_j": e, "per_inference_uj": e * 1e6,
            "method": "measured" if self.measured_energy_j is not None
            else "active_power_x_modelled_time",
            "source": self.energy_source, "active_w": self.active_w,
            "power_source": self.power_source,
            "breakdown": (f"rows' energy_share: each layer's share of per_inference_j, set by "
                          f"the op-count table {self.energy_table!r} (arithmetic + memory "
                          "traffic + static); rows' energy_j are those table figures, "
                          "weights of the split, not a second total")}
        d["modeled_note"] = (f"modeled_s is a {self.latency_model} estimate for the target; "
                             "energy.per_inference_j is the one energy figure")
        return d

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1))

    # -- text ---------------------------------------------------------------------------
    def render(self, per: str = "inference") -> str:
        """A plain-text table: MACs are multiply-accumulates, ACs the accumulates of
        spike-driven layers (at the traced firing rate); 'E %' and 'E uJ' split the one
        energy-per-inference figure printed below the table (``per``: what one run of the graph
        is, e.g. "step" for a streaming step graph)."""
        lines = [f"profile of {self.model!r} on target {self.target!r}"]
        head = (f"{'layer':<24} {'op':<16} {'unit':<8} {'MACs':>11} {'ACs':>9} {'bytes':>10} "
                f"{'measured us':>11} {'model us':>9} {'E %':>6} {'E uJ':>9}")
        lines += [head, "-" * len(head)]
        e_uj = self.energy_per_inference_j * 1e6
        for r, share in zip(self.rows, self.energy_shares(), strict=True):
            meas = f"{r.measured_s * 1e6:11.1f}" if r.measured_s is not None else f"{'-':>11}"
            lines.append(f"{r.name[:24]:<24} {r.op[:16]:<16} {r.unit[:8]:<8} {r.macs:>11,} "
                         f"{r.accumulates:>9,.0f} "
                         f"{r.weight_bytes + r.activation_bytes:>10,} {meas} "
                         f"{r.modeled_s * 1e6:9.2f} {share * 100:6.1f} {share * e_uj:9.3f}")
        t = self.totals()
        meas = (f"{self.measured_total_s * 1e6:11.1f}" if self.measured_total_s is not None
                else f"{'-':>11}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<50} {t['macs']:>11,} {t['accumulates']:>9,.0f} "
                     f"{t['weight_bytes'] + t['activation_bytes']:>10,} {meas} "
                     f"{self.modeled_total_s * 1e6:9.2f} {100.0:6.1f} {e_uj:9.3f}")
        lines.append(f"peak arena {self.peak_arena_bytes:,} B of {self.ram_available_bytes:,} B "
                     f"RAM; weights {self.weight_bytes:,} B; flash {self.flash_bytes:,} B of "
                     f"{self.flash_available_bytes:,} B" + ("" if self.fits else "  DOES NOT FIT"))
        if self.fit_problems:
            lines.append("does not fit: " + "; ".join(self.fit_problems))
        lines.append(f"energy per {per}: {e_uj:.4g} uJ  <- {self.energy_source}")
        lines.append(f"  per-layer split (E %, E uJ): shares from the op-count table "
                     f"{self.energy_table} (a breakdown of the figure above, not a second "
                     "estimate)")
        if t["fp32_over_int_compute"]:
            lines.append(f"  the op-count table prices this arithmetic "
                         f"{t['fp32_over_int_compute']:.1f}x higher in fp32 (the integer "
                         "saving, a ratio)")
        if self.measured_energy_j is None:
            lines.append(f"  sensor: {self.sensor}")
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
        e_uj = self.energy_per_inference_j * 1e6
        ax2.bar(list(x), [sh * e_uj for sh in self.energy_shares()], color="tab:green")
        ax2.set_ylabel("energy (uJ, share of the inference)")
        ax2.set_xticks(list(x))
        ax2.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
        fig.suptitle(f"{self.model} on {self.target}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
