"""Early exit benchmark: accuracy, mean MACs and measured mean latency with and without exits.

    .venv/bin/python tools/bench_exit.py                 # every rule, the whole test split
    .venv/bin/python tools/bench_exit.py --quick         # margin + gate, 150 samples (< 1 min)
    .venv/bin/python tools/bench_exit.py --mcu 30        # + 30 samples on the Cortex-M4 in QEMU
    .venv/bin/python tools/bench_exit.py --json out.json --backend onnxruntime
    .venv/bin/python tools/bench_exit.py --kws-only    # keyword spotting exits over time

Keyword spotting (exits over time): the committed non-spiking LMUFormer
(samples/kws/models) is quantized as tools/kws_eval.py does and streamed hop by hop over the
generated dataset (tools/kws_dataset.py, data/kws); the integer running sum of its frame
logits decides at every hop from the 10th once its margin clears ``a + b * hop``
(sdk.exits.temporal), calibrated on the validation voices, measured on the held-out test
voices: accuracy and mean hops against deciding after the whole clip (100 hops). The integer
frame logits are cached under data/exits/; ``--quick`` reads the committed ones
(samples/exits/kws_frame_logits.npz, all 1800 + 2400 clips) instead.

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
KWS_MODEL = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.npz"
CACHE = ROOT / "data" / "exits"


def kws_frame_logits(splits: dict[str, int]) -> dict[str, tuple] | None:
    """Integer frame logits [N, 100, 12] + labels per split (``n`` clips, class-balanced,
    0 = all), and the logits' zero point; None when the KWS dataset is not generated."""
    sys.path.insert(0, str(ROOT / "tools"))
    import kws_dataset
    import kws_eval

    from sdk.models import LMUFormerWeights, build_step_onnx, state_shapes, step_calibration_data

    cfg = kws_dataset.DatasetConfig(seed=0)
    folder = ROOT / "data" / "kws" / cfg.key()
    if not (folder / "meta.json").is_file():
        return None
    model = LMUFormerWeights.load(KWS_MODEL)
    out = {}
    sess = None
    for split, n in splits.items():
        cache = CACHE / f"kws_{split}_{n}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                out[split] = (z["q"], z["y"], int(z["zp"]))
            continue
        if sess is None:
            xv, yv = kws_dataset.load_features(folder, "val")
            calib = step_calibration_data(model, xv[kws_eval.balanced_subset(yv, 32)])
            graph = sdk.quantize(sdk.load_onnx(build_step_onnx(model)), calib,
                                 observer="minmax")
            sess = sdk.Session(graph, integer_io=True)
            info = {i.name: i for i in sess.inputs}
            zp = int({o.name: o for o in sess.outputs}["logits"].quant.zero_point)
            names = list(state_shapes(model.config))
        x, y = kws_dataset.load_features(folder, split)
        idx = kws_eval.balanced_subset(y, n) if n else np.arange(len(y))
        rows = []
        for i in idx:
            state = {m: np.full(info[f"state_{m}"].shape, int(info[f"state_{m}"].quant.zero_point),
                                dtype=info[f"state_{m}"].dtype) for m in names}
            frames = []
            for frame in x[i]:
                r = sess.run(None, {"x": kws_eval.quantize_input(frame[None], info["x"].quant),
                                    **{f"state_{m}": state[m] for m in names}})
                state = {m: r[f"state_{m}_next"] for m in names}
                frames.append(r["logits"][0])
            rows.append(np.stack(frames))
        q = np.stack(rows)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, q=q, y=y[idx], zp=zp)
        out[split] = (q, y[idx], zp)
    return out


def mcu_row(bundle, x: np.ndarray, y: np.ndarray) -> dict | None:
    """The same exits on the Cortex-M4 firmware in QEMU: instructions per inference with the
    calibrated thresholds and with none firing (every stage runs; the exit heads included)."""
    import copy

    from firmware_bridge.build import toolchain_missing
    from firmware_bridge.client import DeviceClient
    from firmware_bridge.qemu import QemuFirmware, qemu_missing, ticks_to_instructions

    why = toolchain_missing("m4") or qemu_missing()
    if why:
        print(f"MCU: skipped ({why})")
        return None
    never = copy.deepcopy(bundle)
    for e in never.manifest["exits"]["exits"][:-1]:
        e["threshold"] = 1 << 30
    with QemuFirmware() as q:
        c = DeviceClient(q.url, timeout=1.0)
        try:
            ins, ins_full, hits, hits_full, exits = [], [], 0, 0, []
            dev = sdk.DeviceExitModel(c, bundle)  # loads the image (QEMU counts are exact:
            for xi, yi in zip(x, y):              # no need to interleave)
                r = dev.run({"x": xi[None]})
                ins.append(ticks_to_instructions(r.ticks, q.icount_shift))
                hits += r.label == yi
                exits.append(r.exit)
            full = sdk.DeviceExitModel(c, never)
            for xi, yi in zip(x, y):
                r = full.run({"x": xi[None]})
                ins_full.append(ticks_to_instructions(r.ticks, q.icount_shift))
                hits_full += r.label == yi
        finally:
            c.close()
    n = len(y)
    return {"samples": n, "accuracy": 100 * hits / n, "accuracy_full": 100 * hits_full / n,
            "instructions": float(np.mean(ins)), "instructions_full": float(np.mean(ins_full)),
            "instructions_saved": 1 - float(np.mean(ins)) / float(np.mean(ins_full)),
            "exit_share": [exits.count(k) / n for k in range(len(bundle.manifest["exits"]
                                                                 ["exits"]))]}


def kws_rows(quick: bool, drop: float, save: Path | None = None) -> list[dict]:
    from sdk.exits.temporal import TemporalExitPlan, calibrate_over_time

    committed = SAMPLES / "kws_frame_logits.npz"
    if quick and save is None and committed.is_file():  # the committed integer frame logits
        with np.load(committed) as z:
            zp = int(z["zero_point"])
            data = {"val": (z["val_q"], z["val_y"], zp), "test": (z["test_q"], z["test_y"], zp)}
    else:
        data = kws_frame_logits({"val": 0, "test": 0})
    if data is None:
        print("keyword spotting: skipped, the dataset is not generated "
              "(python tools/kws_dataset.py --out data/kws --seed 0)")
        return []
    if save is not None:  # samples/exits/kws_frame_logits.npz (the tests' real-data fixture)
        np.savez_compressed(save, val_q=data["val"][0], val_y=data["val"][1],
                            test_q=data["test"][0], test_y=data["test"][1],
                            zero_point=data["val"][2])
        print(f"wrote {save}")
    qv, yv, zp = data["val"]
    qt, yt, _ = data["test"]
    t = qv.shape[1]
    plan = calibrate_over_time(qv, zp, yv, range(10, t + 1), max_accuracy_drop=drop)
    hops, label = plan.decide(qt)
    full = TemporalExitPlan([t - 1, t], [1 << 40], zp).decide(qt)[1]
    # the fixed-prefix baseline (tools/kws_prefix_curve.py's rule, here on integers): the
    # shortest prefix whose accuracy on the test clips stays within the drop of the full clip
    sums = np.cumsum(qt.astype(np.int64) - zp, axis=1)
    curve = (np.argmax(sums, axis=2) == yt[:, None]).mean(axis=0) * 100
    bad = np.flatnonzero(curve < curve[-1] - drop)
    t_star = int(bad[-1]) + 2 if len(bad) else 1
    row = {"model": "kws-lmuformer-nonspiking", "rule": "margin over time",
           "val_clips": len(yv), "test_clips": len(yt),
           "accuracy": float((label == yt).mean() * 100),
           "accuracy_full": float((full == yt).mean() * 100),
           "mean_hops": float(hops.mean()), "full_hops": t,
           "hops_saved": 1 - float(hops.mean()) / t,
           "fixed_prefix_hops": t_star, "fixed_prefix_saved": 1 - t_star / t,
           "thresholds": plan.thresholds, "checkpoints": plan.checkpoints,
           "calibration": {k: v for k, v in plan.calibration.items() if k != "curve"}}
    print(f"keyword spotting, exits over time: calibrated on {len(yv)} validation clips, "
          f"measured on {len(yt)} held-out-voice test clips (integer step graph, Numba)")
    print(f"  accuracy {row['accuracy']:.2f}% vs {row['accuracy_full']:.2f}% after the whole "
          f"clip ({row['accuracy'] - row['accuracy_full']:+.2f} pts); mean hops "
          f"{row['mean_hops']:.1f} of {t} ({100 * row['hops_saved']:.1f}% fewer); a fixed "
          f"prefix within {drop:g} pts needs {t_star} hops ({100 * row['fixed_prefix_saved']:.1f}%"
          " fewer)")
    return [row]


def measure(sess, x: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, mean MACs, exit histogram and mean latency of ``sess`` with and without
    exits on (x, y), the two timed interleaved."""
    # warm-up: JIT, and every stage run often enough for a tiered executor to compile it
    sess.warm_up({"x": x[0][None]}, runs=80)
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
            "latency_median_ms": 1e3 * float(np.median(t_exit)),
            "latency_full_median_ms": 1e3 * float(np.median(t_full)),
            "exit_share": [round(h / n, 4) for h in hist],
            "thresholds": sess.thresholds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="margin and gate rules, 150 samples")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--max-accuracy-drop", type=float, default=0.5)
    ap.add_argument("--criterion", choices=["consistency", "accuracy"], default="consistency",
                    help="what the calibration bounds (sdk.add_exits)")
    ap.add_argument("--kws-drop", type=float, default=1.0,
                    help="accuracy points the keyword-spotting exits may lose")
    ap.add_argument("--kws-only", action="store_true", help="only the keyword-spotting rows")
    ap.add_argument("--no-kws", action="store_true", help="skip keyword spotting")
    ap.add_argument("--save-kws-logits", type=Path,
                    help="also write the integer frame logits of both splits here (npz)")
    ap.add_argument("--mcu", type=int, default=None, metavar="N",
                    help="also run N test samples on the Cortex-M4 firmware in QEMU "
                         "(instructions with and without exits)")
    ap.add_argument("--backend", default=None,
                    help="run the stages on this backend (default: Numba reference kernels)")
    args = ap.parse_args(argv)
    with np.load(SAMPLES / "digits_calib.npz") as z:
        xc, yc = z["x"], z["label"]
    with np.load(SAMPLES / "digits_test.npz") as z:
        xt, yt = z["x"], z["label"]
    rules = () if args.kws_only else ("margin", "gate") if args.quick else RULES
    if args.quick:
        xt, yt = xt[:150], yt[:150]
    t0 = time.perf_counter()
    base = sdk.compile_model(SAMPLES / "digits_exits.onnx", {"x": xc[:64]})  # digits_quant.npz
    rows = []
    unreachable = {}
    for rule in rules:
        try:
            bundle = sdk.add_exits(base, {"x": xc, "label": yc}, rule=rule,
                                   max_accuracy_drop=args.max_accuracy_drop,
                                   criterion=args.criterion)
        except sdk.CalibrationError as exc:  # this rule cannot save compute within the drop
            unreachable[rule] = str(exc)
            continue
        sess = sdk.EarlyExitSession(bundle, backend=args.backend)
        row = {"model": "digits-cnn-3exits", "rule": rule,
               "backend": args.backend or "reference (numba)", **measure(sess, xt, yt)}
        rows.append(row)
    kws = [] if args.no_kws else kws_rows(args.quick, args.kws_drop, args.save_kws_logits)
    if not rows:
        if args.json:
            args.json.write_text(json.dumps({"rows": [], "kws": kws, "quick": args.quick},
                                            indent=1))
        return 0
    print(f"early exit, digits CNN (3 exits), held-out test split ({len(yt)} samples), "
          f"--max-accuracy-drop {args.max_accuracy_drop:g} ({args.criterion}) on the "
          "calibration split; "
          f"backend {rows[0]['backend']}; shared machine, wall-clock")
    head = (f"{'rule':9s} {'acc %':>7s} {'acc full':>8s} {'Δ pts':>6s} {'mean MACs':>10s} "
            f"{'full MACs':>10s} {'saved':>6s} {'ms exit':>8s} {'ms full':>8s} "
            f"{'t saved':>7s} {'median':>15s}  exit share")
    print(head)
    for r in rows:
        print(f"{r['rule']:9s} {r['accuracy']:7.2f} {r['accuracy_full']:8.2f} "
              f"{r['accuracy'] - r['accuracy_full']:+6.2f} {r['mean_macs']:10.0f} "
              f"{r['full_macs']:10d} {100 * r['macs_saved']:5.1f}% {r['latency_ms']:8.3f} "
              f"{r['latency_full_ms']:8.3f} {100 * r['latency_saved']:6.1f}% "
              f"{r['latency_median_ms']:6.3f}/{r['latency_full_median_ms']:.3f}ms  "
              f"{' / '.join(f'{100 * s:.1f}' for s in r['exit_share'])}")
    mcu = None
    n_mcu = args.mcu or 0
    if n_mcu:
        bundle = sdk.add_exits(base, {"x": xc, "label": yc}, rule="margin",
                               max_accuracy_drop=args.max_accuracy_drop,
                               criterion=args.criterion)
        mcu = mcu_row(bundle, xt[:n_mcu], yt[:n_mcu])
        if mcu:
            print(f"Cortex-M4 in QEMU (margin, {mcu['samples']} test samples, device-side exit "
                  f"checks): {mcu['instructions']:.0f} instructions per inference vs "
                  f"{mcu['instructions_full']:.0f} without exits "
                  f"({100 * mcu['instructions_saved']:.1f}% fewer); accuracy "
                  f"{mcu['accuracy']:.1f}% vs {mcu['accuracy_full']:.1f}%")
    for rule, why in unreachable.items():
        print(f"{rule:9s} not calibrated: {why}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "unreachable": unreachable, "kws": kws, "mcu": mcu,
                                         "quick": args.quick},
                                        indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
