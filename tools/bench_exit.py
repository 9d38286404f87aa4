"""Early exit benchmark: accuracy, mean MACs and measured mean latency with and without exits.

    .venv/bin/python tools/bench_exit.py                 # every rule, the whole test split
    .venv/bin/python tools/bench_exit.py --quick         # margin + gate, 150 samples (< 1 min)
    .venv/bin/python tools/bench_exit.py --json out.json --backend onnxruntime

The digit classifier of samples/exits is compiled once (calibration split: quantization
ranges), then given exits by each rule at ``--max-accuracy-drop`` on the same calibration
split. Every row is measured on the held-out test split, which neither training nor
calibration saw. "without exits" is the same integer model run to its last exit only (its
main entry, what the last exit needs); "with exits" runs the stage entries until an exit
fires. The two are timed interleaved, sample by sample, after a warm-up, on the same
backend (default: the Numba reference kernels). Timings are wall-clock on a shared machine:
read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sdk

SAMPLES = ROOT / "samples" / "exits"
RULES = ("margin", "entropy", "patience", "gate")


def measure(sess, x: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, mean MACs, exit histogram and mean latency of ``sess`` with and without
    exits on (x, y), the two timed interleaved."""
    for xi in x[:5]:  # warm-up: JIT, caches
        sess.run({"x": xi[None]})
        sess.run_full({"x": xi[None]})
    hits = hits_full = 0
    macs, t_exit, t_full = [], [], []
    hist = [0] * len(sess.plan.exits)
    for i, (xi, yi) in enumerate(zip(x, y)):
        feeds = {"x": xi[None]}
        if i % 2:
            f = sess.run_full(feeds)
            r = sess.run(feeds)
        else:
            r = sess.run(feeds)
            f = sess.run_full(feeds)
        hits += r.label == yi
        hits_full += f.label == yi
        macs.append(r.macs)
        hist[r.exit] += 1
        t_exit.append(r.seconds)
        t_full.append(f.seconds)
    n = len(y)
    return {"samples": n, "accuracy": 100 * hits / n, "accuracy_full": 100 * hits_full / n,
            "mean_macs": float(np.mean(macs)), "full_macs": sess.plan.full_macs,
            "macs_saved": 1 - float(np.mean(macs)) / sess.plan.full_macs,
            "latency_ms": 1e3 * float(np.mean(t_exit)),
            "latency_full_ms": 1e3 * float(np.mean(t_full)),
            "latency_saved": 1 - float(np.mean(t_exit)) / float(np.mean(t_full)),
            "exit_share": [round(h / n, 4) for h in hist],
            "thresholds": sess.thresholds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="margin and gate rules, 150 samples")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.5)
    ap.add_argument("--backend", default=None,
                    help="run the stages on this backend (default: Numba reference kernels)")
    args = ap.parse_args(argv)
    with np.load(SAMPLES / "digits_calib.npz") as z:
        xc, yc = z["x"], z["label"]
    with np.load(SAMPLES / "digits_test.npz") as z:
        xt, yt = z["x"], z["label"]
    rules = ("margin", "gate") if args.quick else RULES
    if args.quick:
        xt, yt = xt[:150], yt[:150]
    t0 = time.perf_counter()
    base = sdk.compile_model(SAMPLES / "digits_exits.onnx", {"x": xc})
    rows = []
    for rule in rules:
        bundle = sdk.add_exits(base, {"x": xc, "label": yc}, rule=rule,
                               max_accuracy_drop=args.max_accuracy_drop)
        sess = sdk.EarlyExitSession(bundle, backend=args.backend)
        row = {"model": "digits-cnn-3exits", "rule": rule,
               "backend": args.backend or "reference (numba)", **measure(sess, xt, yt)}
        rows.append(row)
    print(f"early exit, digits CNN (3 exits), held-out test split ({len(yt)} samples), "
          f"--max-accuracy-drop {args.max_accuracy_drop:g} on the calibration split; "
          f"backend {rows[0]['backend']}; shared machine, wall-clock")
    head = (f"{'rule':9s} {'acc %':>7s} {'acc full':>8s} {'Δ pts':>6s} {'mean MACs':>10s} "
            f"{'full MACs':>10s} {'saved':>6s} {'ms exit':>8s} {'ms full':>8s} "
            f"{'t saved':>7s}  exit share")
    print(head)
    for r in rows:
        print(f"{r['rule']:9s} {r['accuracy']:7.2f} {r['accuracy_full']:8.2f} "
              f"{r['accuracy'] - r['accuracy_full']:+6.2f} {r['mean_macs']:10.0f} "
              f"{r['full_macs']:10d} {100 * r['macs_saved']:5.1f}% {r['latency_ms']:8.3f} "
              f"{r['latency_full_ms']:8.3f} {100 * r['latency_saved']:6.1f}%  "
              f"{' / '.join(f'{100 * s:.1f}' for s in r['exit_share'])}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "quick": args.quick}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
