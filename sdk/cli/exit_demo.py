"""`edge demo exit`: an early-exit digit classifier stops computing once it is confident.

Compiles the committed three-exit CNN (samples/exits) with exits calibrated on its
calibration split at ``--max-accuracy-drop``, then classifies held-out digits stage by stage:
each digit is drawn in text with the exit that answered and what it cost; the summary compares
accuracy, mean MACs and measured time with the same integer model run to its last exit.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "exits"
SHADES = " .:-=+*#%@"


def _draw(img: np.ndarray) -> list[str]:
    """A [H, W] image in [0, 1] as text: a character per pixel (two for a small image), every
    other row of a tall one (characters are about twice as high as wide)."""
    wide = 2 if img.shape[1] <= 8 else 1
    rows = img if img.shape[0] <= 8 else img[::2]
    top = len(SHADES) - 1
    return ["".join(SHADES[min(int(v * top + 0.5), top)] * wide for v in r) for r in rows]


@click.command("exit")
@click.option("--samples", "n", default=200, show_default=True,
              help="held-out digits to classify")
@click.option("--show", default=4, show_default=True, help="digits drawn in text")
@click.option("--max-accuracy-drop", "drop", default=0.5, show_default=True,
              help="accuracy points the exits may lose (calibrated on the calibration split)")
@click.option("--rule", type=click.Choice(["margin", "entropy", "patience", "gate"]),
              default="margin", show_default=True, help="integer exit rule")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="keep the compiled bundle here (default: a temporary folder)")
def command(n: int, show: int, drop: float, rule: str, out_dir: str | None) -> None:
    """Early exit on handwritten digits: confident inputs leave after the first stage."""
    from sdk import EarlyExitSession, add_exits, compile_model, load_bundle
    from sdk.errors import InputError

    onnx_path = SAMPLES / "digits_exits.onnx"
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path} is missing; run tools/train_exit_digits.py")
    with np.load(SAMPLES / "digits_calib.npz") as z:
        xc, yc = z["x"], z["label"]
    with np.load(SAMPLES / "digits_test.npz") as z:
        xt, yt = z["x"][:n], z["label"][:n]
    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="edge-exit-"))
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(f"compiling {onnx_path.name}: {len(yc)} calibration digits, rule {rule}, "
               f"max accuracy drop {drop:g} points")
    bundle = add_exits(compile_model(onnx_path, {"x": xc[:64]}), {"x": xc, "label": yc}, rule=rule,
                       max_accuracy_drop=drop)
    path = bundle.save(folder / "digits_exits.edge")
    sess = EarlyExitSession(load_bundle(path))
    plan = sess.plan
    click.echo(f"wrote {path}: stages {', '.join(plan.stages)}; thresholds "
               f"{sess.thresholds} ({plan.rule}, integer)")
    sess.warm_up({"x": xt[0][None]})
    hits = hits_full = 0
    macs, t_exit, t_full = [], [], []
    counts = [0] * len(plan.exits)
    for i, (x, y) in enumerate(zip(xt, yt)):
        r = sess.run({"x": x[None]})
        t0 = time.perf_counter()
        f = sess.run_full({"x": x[None]})
        t_full.append(time.perf_counter() - t0)
        t_exit.append(r.seconds)
        hits += r.label == y
        hits_full += f.label == y
        macs.append(r.macs)
        counts[r.exit] += 1
        if i < show:
            click.echo("")
            for line in _draw(x[0]):
                click.echo("    " + line)
            click.echo(f"  label {y}: {r.exit_name} answered {r.label} after "
                       f"{r.stages_run} of {len(plan.stages)} stages, {r.macs:,} MACs "
                       f"({100 * r.macs / plan.full_macs:.0f}% of the full model), "
                       f"score {r.scores[-1] if r.scores else '-'}")
    k = len(yt)
    click.echo("")
    click.echo(f"{k} held-out digits: accuracy {100 * hits / k:.2f}% with exits vs "
               f"{100 * hits_full / k:.2f}% without")
    click.echo(f"  mean MACs {np.mean(macs):,.0f} vs {plan.full_macs:,} "
               f"({100 * (1 - np.mean(macs) / plan.full_macs):.1f}% saved); exits taken: "
               + ", ".join(f"{e.name} {100 * c / k:.1f}%" for e, c in zip(plan.exits, counts)))
    click.echo(f"  mean time {1e3 * np.mean(t_exit):.3f} ms vs {1e3 * np.mean(t_full):.3f} ms "
               "(this machine, shared: read the ratio)")
