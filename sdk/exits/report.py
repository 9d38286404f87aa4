"""The accuracy–compute curve of an early-exit bundle and the expected cost at its chosen
operating point, from a profile of its main graph (``edge profile MODEL.edge``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdk.exits.plan import ExitPlan


def expected_costs(bundle: Any, report: Any) -> dict[str, Any]:
    """Per exit, the cumulative MACs, modelled and measured time and energy of the stages up
    to it (from the report's per-layer rows), and their expectation over the exit shares
    chosen on the calibration set."""
    plan = ExitPlan.of(bundle)
    rows = {r.name: r for r in report.rows}
    chosen = plan.calibration.get("chosen", {})
    counts = chosen.get("exit_counts") or [0] * (len(plan.exits) - 1) + [1]
    shares = [c / max(sum(counts), 1) for c in counts]
    cum = {"modeled_s": 0.0, "measured_s": 0.0, "energy_j": 0.0}
    per_exit = []
    measured = True
    for spec in plan.exits:
        for n in bundle.entry(spec.entry).nodes:
            r = rows.get(n.name)
            if r is None:
                continue
            cum["modeled_s"] += r.modeled_s
            cum["energy_j"] += r.energy_compute_j + r.energy_memory_j + r.energy_static_j
            if r.measured_s is None:
                measured = False
            else:
                cum["measured_s"] += r.measured_s
        per_exit.append(dict(cum, name=spec.name, macs=spec.macs))
    full = [r for r in report.rows]
    full_cost = {"modeled_s": sum(r.modeled_s for r in full),
                 "energy_j": sum(r.energy_compute_j + r.energy_memory_j + r.energy_static_j
                                 for r in full),
                 "measured_s": sum(r.measured_s or 0.0 for r in full) if measured else None,
                 "macs": plan.full_macs}
    active_w = float(getattr(report, "active_w", 0.0) or 0.0)
    if active_w > 0:  # the report's energy figure: active power x modelled time
        for e in per_exit + [full_cost]:
            e["energy_j"] = active_w * e["modeled_s"]
    expect = {k: sum(s * e[k] for s, e in zip(shares, per_exit))
              for k in ("macs", "modeled_s", "energy_j", "measured_s")}
    if not measured:
        expect["measured_s"] = None
    return {"rule": plan.rule, "shares": shares, "per_exit": per_exit, "expected": expect,
            "main_graph": full_cost, "curve": plan.calibration.get("curve", []),
            "accuracy_full": plan.calibration.get("accuracy_full"),
            "accuracy": chosen.get("accuracy")}


def render(bundle: Any, report: Any) -> str:
    c = expected_costs(bundle, report)
    plan = ExitPlan.of(bundle)
    n = plan.calibration.get("samples", 0)
    metric, unit = ("mIoU", "") if plan.calibration.get("metric") == "mIoU" else \
        ("accuracy", "%")
    lines = [f"early exit ({c['rule']}; curve from {n} held-out calibration samples):",
             f"  {'mean MACs':>12s} {'saved':>7s} {metric:>9s}"]
    for p in c["curve"]:
        mark = " <- chosen" if p["thresholds"] == plan.thresholds else ""
        lines.append(f"  {p['mean_macs']:12.0f} {100 * (1 - p['mean_macs'] / plan.full_macs):6.1f}%"
                     f" {p['accuracy']:8.2f}{unit or ' '}{mark}")
    e, m = c["expected"], c["main_graph"]
    lines.append(f"  without exits: {plan.full_macs} MACs, {metric} "
                 f"{c['accuracy_full']:.2f}{unit}")
    lines.append("  exit shares: " + ", ".join(
        f"{s['name']} {100 * w:.1f}%" for s, w in zip(c["per_exit"], c["shares"])))
    lines.append(f"  expected per inference at the chosen point: {e['macs']:.0f} MACs, "
                 f"{e['modeled_s'] * 1e6:.1f} us modelled on {report.target} "
                 f"(main graph {m['modeled_s'] * 1e6:.1f} us), "
                 f"{e['energy_j'] * 1e6:.4g} uJ (main graph {m['energy_j'] * 1e6:.4g} uJ)"
                 + (f", {e['measured_s'] * 1e6:.1f} us measured here"
                    if e["measured_s"] is not None else ""))
    return "\n".join(lines)


def plot_curve(bundle: Any, path: str | Path) -> Path:
    """The accuracy–compute curve (PNG): mean MACs vs accuracy, the chosen point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = ExitPlan.of(bundle)
    curve = plan.calibration.get("curve", [])
    chosen = plan.calibration.get("chosen", {})
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["mean_macs"] for p in curve], [p["accuracy"] for p in curve], "o-", ms=3,
            label=f"{plan.rule} thresholds")
    ax.axhline(plan.calibration.get("accuracy_full", 0), color="gray", ls="--",
               label="without exits")
    if chosen:
        ax.plot([chosen["mean_macs"]], [chosen["accuracy"]], "r*", ms=12, label="chosen")
    ax.set_xlabel("mean MACs per inference")
    miou = plan.calibration.get("metric") == "mIoU"
    ax.set_ylabel("mIoU on the calibration set" if miou else "accuracy on the calibration set (%)")
    ax.set_title(f"{bundle.name}: {'mIoU' if miou else 'accuracy'} vs compute")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def profile_exits(model: str, report: Any, plot_path: str | None) -> str | None:
    """For ``edge profile``: the curve and expected costs when ``model`` is a bundle with
    exits (and the curve plot beside ``plot_path``), else None."""
    if not str(model).lower().endswith(".edge"):
        return None
    from sdk.compile.bundle import load_bundle

    bundle = load_bundle(model)
    if ExitPlan.of(bundle) is None:
        return None
    text = render(bundle, report)
    if plot_path:
        p = Path(plot_path)
        out = plot_curve(bundle, p.with_name(p.stem + "-exits" + (p.suffix or ".png")))
        text += f"\nwrote {out}"
    return text
