"""Early exit benchmark: accuracy, mean MACs and measured mean latency with and without exits.

    .venv/bin/python tools/bench_exit.py                 # every rule, the whole test split
    .venv/bin/python tools/bench_exit.py --quick         # margin + gate, 150 samples (< 1 min)
    .venv/bin/python tools/bench_exit.py --mcu 30        # + 30 samples on the Cortex-M4 in QEMU
    .venv/bin/python tools/bench_exit.py --json out.json --backend onnxruntime
    .venv/bin/python tools/bench_exit.py --kws-only    # keyword spotting exits over time
    .venv/bin/python tools/bench_exit.py --seg-only    # segmentation: encoder depth per image
    .venv/bin/python tools/bench_exit.py --lm-only     # G2P decoder: per-token exit
    .venv/bin/python tools/bench_exit.py --seg-only --quick    # (or --lm-only --quick): < 1 min

--quick alone runs the digits and keyword-spotting rows (the committed KWS logits and clip
sums); the full run adds segmentation and the language model (minutes each).

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


def kws_depth_logits(splits: dict[str, int]) -> dict[str, tuple] | None:
    """Integer frame logits of the final head and of the depth exit head (after the LMU
    block) [N, 100, 12] each, labels, zero points, per split (``n`` class-balanced clips, 0 =
    all): the step graph with the exit head (tools/train_kws_exits.py), quantized as
    kws_frame_logits does, then stepped over all clips of a split side by side (the same
    integer graph with a batch axis: per-tensor grids, rows independent)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import kws_dataset
    import kws_eval
    import train_kws_exits

    from sdk.models import LMUFormerWeights, state_shapes, step_calibration_data
    from sdk.ops.shapes import with_input_shapes

    cfg = kws_dataset.DatasetConfig(seed=0)
    folder = ROOT / "data" / "kws" / cfg.key()
    if not (folder / "meta.json").is_file():
        return None
    model = LMUFormerWeights.load(KWS_MODEL)
    with np.load(train_kws_exits.HEAD) as z:
        head = {"w": z["w"], "b": z["b"]}
    xv, yv = kws_dataset.load_features(folder, "val")
    calib = step_calibration_data(model, xv[kws_eval.balanced_subset(yv, 32)])
    graph = sdk.quantize(sdk.load_onnx(train_kws_exits.kws_exit_step_onnx(model, head)), calib,
                         observer="minmax")
    names = list(state_shapes(model.config))
    out = {}
    for split, n in splits.items():
        x, y = kws_dataset.load_features(folder, split)
        idx = kws_eval.balanced_subset(y, n) if n else np.arange(len(y))
        x, y = x[idx], y[idx]
        b = len(x)
        shapes = {"x": [b, model.config.n_mels],
                  **{f"state_{m}": [b, s[1]] for m, s in state_shapes(model.config).items()}}
        sess = sdk.Session(with_input_shapes(graph, shapes), integer_io=True)
        info = {i.name: i for i in sess.inputs}
        oq = {o.name: o.quant for o in sess.outputs}
        state = {m: np.full(info[f"state_{m}"].shape, int(info[f"state_{m}"].quant.zero_point),
                            dtype=info[f"state_{m}"].dtype) for m in names}
        q_full, q_exit = [], []
        for t in range(x.shape[1]):
            r = sess.run(None, {"x": kws_eval.quantize_input(x[:, t], info["x"].quant),
                                **{f"state_{m}": state[m] for m in names}})
            state = {m: r[f"state_{m}_next"] for m in names}
            q_full.append(r["logits"])
            q_exit.append(r["exit_logits"])
        out[split] = (np.stack(q_full, 1), np.stack(q_exit, 1), y, idx,
                      int(oq["logits"].zero_point), int(oq["exit_logits"].zero_point))
    return out


def kws_depth_rows(quick: bool, drop: float, save: Path | None = None) -> list[dict]:
    """Keyword spotting, exits over depth: per clip, the integer running sum of the exit
    head's frame logits (after the LMU block) decides once its margin clears the calibrated
    threshold; otherwise the MLP block and the final head run (over the cached LMU-block
    outputs). Threshold on the validation voices (labelled accuracy within ``drop`` points
    of the model without exits), measured on the held-out test voices."""
    from sdk.exits.calibrate import choose, sweep
    from sdk.exits.rules import margin_scores
    from sdk.models import LMUFormerWeights
    from sdk.models.lmuformer import macs_per_frame

    t0 = time.perf_counter()
    committed = SAMPLES / "kws_depth_sums.npz"
    if quick and save is None and committed.is_file():  # the committed integer clip sums
        with np.load(committed) as z:
            sums_of = {s: (z[f"{s}_exit"], z[f"{s}_full"], z[f"{s}_y"], None)
                       for s in ("val", "test")}
        same = None
    else:
        data = kws_depth_logits({"val": 0, "test": 0})
        if data is None:
            print("keyword spotting over depth: skipped, the dataset is not generated "
                  "(python tools/kws_dataset.py --out data/kws --seed 0)")
            return []
        sums_of = {}
        for split in ("val", "test"):
            qf, qe, y, idx, zf, ze = data[split]
            sums_of[split] = ((qe.astype(np.int64) - ze).sum(1),
                              (qf.astype(np.int64) - zf).sum(1), y, idx)
        # the final head's integer frame logits equal the committed ones (same quantization)
        same = None
        frames = SAMPLES / "kws_frame_logits.npz"
        if frames.is_file():
            with np.load(frames) as z:
                same = bool(np.array_equal(data["test"][0], z["test_q"]) and
                            np.array_equal(data["val"][0], z["val_q"]))
        if save is not None:  # the tests' fixture: integer clip sums of both heads
            np.savez_compressed(save, **{f"{s}_{k}": v for s, t in sums_of.items()
                                         for k, v in zip(("exit", "full", "y"), t[:3])})
            print(f"wrote {save}")
    cfg = LMUFormerWeights.load(KWS_MODEL).config
    m = macs_per_frame(cfg)
    stage1 = m["embed"] + m["u"] + m["memory"] + m["lmu_in"] + m["head"]  # + the exit head
    stage2 = m["mix_1"] + m["mix_2"] + m["head"]
    full = sum(m.values())
    cum = [stage1, stage1 + stage2]

    ev, fv, yv, _ = sums_of["val"]
    et, ft, yt, _ = sums_of["test"]
    sc_v = margin_scores(ev)[:, None].astype(np.int64)
    ans_v = np.stack([ev.argmax(1), fv.argmax(1)], 1)
    pts = sweep("margin", sc_v, ans_v == yv[:, None], cum)
    acc_full_v = float((ans_v[:, 1] == yv).mean() * 100)
    pick = choose(pts, acc_full_v, full, drop, len(yv), unit="MACs per hop")
    thr = pick.thresholds[0]
    fire = margin_scores(et) >= thr
    label = np.where(fire, et.argmax(1), ft.argmax(1))
    macs = np.where(fire, cum[0], cum[1]).mean()
    row = {"model": "kws-lmuformer-nonspiking + depth exit after the LMU block",
           "rule": "margin of the clip sum (exit head)", "val_clips": len(yv),
           "test_clips": len(yt), "max_accuracy_drop": drop, "threshold": int(thr),
           "accuracy": float((label == yt).mean() * 100),
           "accuracy_full": float((ft.argmax(1) == yt).mean() * 100),
           "accuracy_exit_head_only": float((et.argmax(1) == yt).mean() * 100),
           "exit_share": float(fire.mean()), "macs_per_hop": float(macs),
           "macs_per_hop_full": full, "macs_saved": 1 - float(macs) / full,
           "stage_macs": cum, "final_logits_match_committed": same,
           "calibration": {"accuracy": pick.accuracy, "accuracy_full": acc_full_v,
                           "mean_macs": pick.mean_macs},
           "seconds": round(time.perf_counter() - t0, 1)}
    print(f"keyword spotting, exits over depth (exit head after the LMU block, margin of the "
          f"integer clip sum >= {thr}, calibrated on {len(yv)} validation clips within "
          f"{drop:g} pts), {len(yt)} held-out-voice test clips, integer step graph:")
    print(f"  accuracy {row['accuracy']:.2f}% vs {row['accuracy_full']:.2f}% without exits "
          f"({row['accuracy'] - row['accuracy_full']:+.2f} pts; the exit head alone "
          f"{row['accuracy_exit_head_only']:.2f}%); {100 * row['exit_share']:.1f}% of clips "
          f"skip the MLP block: {row['macs_per_hop']:.0f} vs {full} MACs per hop "
          f"({100 * row['macs_saved']:.1f}% saved, the exit head included)"
          + ("" if same is None else f"; final logits identical to the committed ones: {same}"))
    return [row]


def seg_encoder_macs(onnx_path: Path, exits: int) -> list[int]:
    """Encoder MACs (patch embedding + transformer blocks) of each exit depth, from the float
    graph: everything the tokens after block k need (heads and gate excluded)."""
    from sdk.exits.plan import ancestors, subgraph
    from sdk.ops.cost import graph_macs

    g = sdk.load_onnx(onnx_path)
    prod = g.producers()
    out = []
    for k in range(exits):
        t = f"/blocks.{k}/Add_2_output_0"
        anc = ancestors(t, prod)
        out.append(int(graph_macs(subgraph(g, [n for n in g.nodes if id(n) in anc],
                                           f"enc{k + 1}", {t}))))
    return out


def seg_validation_scenes() -> tuple[np.ndarray, np.ndarray]:
    """The 600 segmentation validation scenes: the trunk's 200 (train-split sources, seed 7)
    and 400 more generated from the same train-split sources (seed 8); never test sources."""
    from sdk.vision import cached_scenes

    a, b = cached_scenes(200, 7, "train", 64), cached_scenes(400, 8, "train", 64)
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


def seg_rows(quick: bool, drop: float, save_val: Path | None = None) -> list[dict]:
    """Segmentation, encoder depth per image (ECO-M2F gate): the committed heads + gate on
    the Segmenter trunk (samples/exits/seg_exits.onnx), compiled as tools/seg_eval.py does
    (32 generated train scenes, seed 11), gate thresholds calibrated on the 600 validation
    scenes (:func:`seg_validation_scenes`) with the miou criterion (grid and safety margin
    by cross-validation inside those scenes), measured on the held-out test scenes (seed 1)
    against the same integer model without exits; the float model (ONNX Runtime) with the
    integer thresholds mapped back through the gate's scale."""
    from sdk.exits.calibrate import miou_percent, segmentation_confusions
    from sdk.vision import cached_scenes, calibration_set, normalize_batch

    onnx_path = SAMPLES / "seg_exits.onnx"
    n_val, n_test = (100, 30) if quick else (600, 300)
    t0 = time.perf_counter()
    base = sdk.compile_model(onnx_path, {"x": calibration_set(32, 64)})
    vi, vl = seg_validation_scenes()
    xv, lv = normalize_batch(vi[:n_val]), vl[:n_val]
    bundle = sdk.add_exits(base, {"x": xv, "label": lv},
                           rule="gate", criterion="miou", max_accuracy_drop=drop)
    t_cal = time.perf_counter() - t0
    if save_val is not None:  # the validation scenes' integer gate scores and confusions
        from sdk.exits.calibrate import integer_outputs
        from sdk.exits.plan import ExitPlan

        p = ExitPlan.of(bundle)
        ints = [e.logits for e in p.exits]
        outs = integer_outputs(bundle, {"x": xv}, ints + [p.gate])
        conf, preds = segmentation_confusions(outs[:-1], bundle.graph.tensor(ints[-1]).shape,
                                              lv)
        save_val.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save_val, gate=outs[-1][:, :len(ints) - 1].astype(np.int32),
                            conf=conf.astype(np.int32),
                            agree=(preds == preds[:, -1:]).mean(axis=2).astype(np.float32),
                            cum_macs=np.array([e.macs for e in p.exits], np.int64),
                            full_macs=np.int64(p.full_macs))
    ti, tl = cached_scenes(300, 1, "test", 64)
    x, lab = normalize_batch(ti[:n_test]), tl[:n_test]
    sess = sdk.EarlyExitSession(bundle, compiled=False)
    plan = sess.plan
    k_exits = len(plan.exits)
    enc = seg_encoder_macs(onnx_path, k_exits)
    sess.warm_up({"x": x[0][None]}, runs=1 if quick else 3)
    logits, full_logits, ex, macs, t_exit, t_full = [], [], [], [], [], []
    for i in range(len(x)):
        feeds = {"x": x[i][None]}
        pair = (sess.run, sess.run_full) if i % 2 == 0 else (sess.run_full, sess.run)
        res = {}
        for fn in pair:
            res[fn.__name__] = fn(feeds)
        r, f = res["run"], res["run_full"]
        logits.append(r.outputs[r.exit_name])
        full_logits.append(f.outputs[f.exit_name])
        ex.append(r.exit)
        macs.append(r.macs)
        t_exit.append(r.seconds)
        t_full.append(f.seconds)
    ex = np.asarray(ex)
    shape = (1, *logits[0].shape[1:])
    c_int = segmentation_confusions([np.stack(logits)], shape, lab)[0][:, 0].sum(0)
    c_full = segmentation_confusions([np.stack(full_logits)], shape, lab)[0][:, 0].sum(0)
    # float (ONNX Runtime): the same thresholds on the float gate logits
    fs = sdk.Session(onnx_path, backend="onnxruntime")
    gq = bundle.graph.tensor(plan.gate).quant
    gs, gz = float(np.asarray(gq.scale).reshape(-1)[0]), int(np.asarray(gq.zero_point)
                                                            .reshape(-1)[0])
    thr_f = [(t - gz) * gs for t in plan.thresholds]
    f_ex, f_maps, f_full = [], [], []
    for i in range(len(x)):
        o = fs.run({"x": x[i][None]})
        g = o["gate"].reshape(-1)
        k = next((j for j in range(k_exits - 1) if g[j] >= thr_f[j]), k_exits - 1)
        f_ex.append(k)
        f_maps.append(o[plan.exits[k].name])
        f_full.append(o[plan.exits[-1].name])
    f_ex = np.asarray(f_ex)
    c_fexit = segmentation_confusions([np.stack(f_maps)], shape, lab)[0][:, 0].sum(0)
    c_ffull = segmentation_confusions([np.stack(f_full)], shape, lab)[0][:, 0].sum(0)
    cal = plan.calibration
    row = {"model": "segmenter-linear-4blocks + ECO-M2F gate", "rule": "gate (miou)",
           "val_scenes": n_val, "test_scenes": len(x), "max_miou_drop": drop,
           "thresholds": plan.thresholds, "calibration_val": {
               "miou": cal["chosen"]["accuracy"], "miou_full": cal["accuracy_full"],
               "saved_macs": cal["saved_macs"], "selection": cal["selection"]},
           "miou_int": float(miou_percent(c_int)), "miou_int_full": float(miou_percent(c_full)),
           "miou_float": float(miou_percent(c_fexit)),
           "miou_float_full": float(miou_percent(c_ffull)),
           "encoder_macs_per_exit": enc,
           "mean_encoder_macs": float(np.mean(np.asarray(enc)[ex])),
           "encoder_macs_saved": 1 - float(np.mean(np.asarray(enc)[ex])) / enc[-1],
           "float_encoder_macs_saved": 1 - float(np.mean(np.asarray(enc)[f_ex])) / enc[-1],
           "mean_macs": float(np.mean(macs)), "full_macs": plan.full_macs,
           "macs_saved": 1 - float(np.mean(macs)) / plan.full_macs,
           "exit_share": [float((ex == k).mean()) for k in range(k_exits)],
           "float_exit_share": [float((f_ex == k).mean()) for k in range(k_exits)],
           "mean_blocks": float(ex.mean() + 1),
           "latency_ms": 1e3 * float(np.mean(t_exit)),
           "latency_full_ms": 1e3 * float(np.mean(t_full)),
           "latency_median_ms": 1e3 * float(np.median(t_exit)),
           "latency_full_median_ms": 1e3 * float(np.median(t_full)),
           "calibration_s": round(t_cal, 1)}
    print(f"segmentation, encoder depth per image (gate, miou criterion, --max-miou-drop "
          f"{drop:g} on {n_val} validation scenes), {len(x)} held-out test scenes, integer "
          "model on the Numba kernels (interpreter), shared machine:")
    sel = cal["selection"]
    print(f"  calibration (validation scenes only): {sel['levels']} gate levels per exit, "
          f"safety margin {sel['margin']:g} pt by {sel['folds']}-fold cross-validation x "
          f"{sel['repeats']} (held-out-fold drops "
          f"{' / '.join(f'{v:.2f}' for v in sel['cv_drops'])}, "
          f"{100 * sel['cv_saved_macs']:.1f}% MACs saved); chosen point "
          f"{cal['chosen']['accuracy']:.2f} vs {cal['accuracy_full']:.2f} on validation, "
          f"thresholds {plan.thresholds}")
    print(f"  integer mIoU {row['miou_int']:.2f} with exits vs {row['miou_int_full']:.2f} without "
          f"({row['miou_int'] - row['miou_int_full']:+.2f}); float (ONNX Runtime, same "
          f"thresholds) {row['miou_float']:.2f} vs {row['miou_float_full']:.2f} "
          f"({row['miou_float'] - row['miou_float_full']:+.2f})")
    print(f"  encoder MACs {row['mean_encoder_macs']:.0f} vs {enc[-1]} "
          f"({100 * row['encoder_macs_saved']:.1f}% saved; float gate "
          f"{100 * row['float_encoder_macs_saved']:.1f}%), mean blocks {row['mean_blocks']:.2f}"
          f" of {k_exits}; all MACs (heads, gate, upsampling) {row['mean_macs']:.0f} vs "
          f"{plan.full_macs} ({100 * row['macs_saved']:.1f}% saved); exit share "
          f"{' / '.join(f'{100 * v:.1f}' for v in row['exit_share'])} %")
    print(f"  latency mean {row['latency_ms']:.1f} vs {row['latency_full_ms']:.1f} ms, median "
          f"{row['latency_median_ms']:.1f} vs {row['latency_full_median_ms']:.1f} ms "
          "(stage entries vs the main graph, interleaved)")
    return [row]


def lm_bundle(calib_words: list, drop: float, lex, val_words: list, candidates: int = 14):
    """The encoder-decoder G2P model with its per-token exit head, compiled (64 training
    words, as tools/slm_eval.py --compile) and its exit threshold calibrated on
    ``val_words`` (PER within ``drop`` points of the model without exits)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import slm_eval

    from sdk.exits.lm import (
        LMExitSession,
        calibrate_lm_exits,
        compile_exit_generation_model,
        load_exit_heads,
    )
    from sdk.models.slm import load_weights

    cfg, w = load_weights(ROOT / "samples" / "slm" / "encdec.npz")
    tok = sdk.G2PTokenizer()
    samples = [(tok.encode_word(x), tok.encode_phonemes(lex[x][0])) for x in calib_words]
    bundle = compile_exit_generation_model(cfg, w, load_exit_heads(SAMPLES /
                                                                   "g2p_exit_head.npz"),
                                           samples)
    sess = LMExitSession(bundle, thresholds=[None])
    ids = [tok.encode_word(x) for x in val_words]

    def per(outputs: list) -> float:
        return slm_eval.score({x: tok.decode(o) for x, o in zip(val_words, outputs)}, lex)["per"]

    cal = calibrate_lm_exits(sess, ids, per, drop, candidates=candidates)
    return bundle, sess, cal


def lm_rows(quick: bool, drop: float, save: Path | None = None) -> list[dict]:
    """Language model, per-token exit in the decoder (CALM / DYNAMAX style): an exit head
    after decoder layer 0 of the 2-layer decoder (sdk.exits.lm), its integer margin
    threshold calibrated on validation words, measured on the held-out words against the
    same integer model without exits (sdk.GenerationSession on decoder_step), interleaved."""
    sys.path.insert(0, str(ROOT / "tools"))
    import slm_data
    import slm_eval

    lex = slm_data.load_lexicon()
    train, valid, _ = slm_data.split(lex)
    held = slm_data.heldout_words()
    step = max(1, len(train) // 64)
    calib = train[::step][:64]
    n_val, n_test = (40, 40) if quick else (300, 600)
    val = valid[::max(1, len(valid) // n_val)][:n_val]
    test = held[::max(1, len(held) // n_test)][:n_test]
    t0 = time.perf_counter()
    bundle, sess, cal = lm_bundle(calib, drop, lex, val, 6 if quick else 14)
    t_cal = time.perf_counter() - t0
    if save is not None:  # samples/exits/g2p_exits.edge: the calibrated bundle the tests load
        bundle.save(save)
        print(f"wrote {save}")
    tok = sdk.G2PTokenizer()
    plan = bundle.manifest["lm_exits"]
    for x in test[:3]:  # warm-up (Numba JIT of every kernel)
        sess.generate(tok.encode_word(x))
        sess.generate_full(tok.encode_word(x))
    pe, pf, te, tf = {}, {}, [], []
    toks_e = toks_f = macs_e = macs_f = layers_e = layers_f = exits0 = 0
    for i, x in enumerate(test):
        ids = tok.encode_word(x)
        if i % 2:
            f = sess.generate_full(ids)
            r = sess.generate(ids)
        else:
            r = sess.generate(ids)
            f = sess.generate_full(ids)
        pe[x], pf[x] = tok.decode(r.tokens), tok.decode(f.tokens)
        te.append(r.seconds)
        tf.append(f.seconds)
        toks_e += len(r.exits)
        toks_f += len(f.exits)
        macs_e += r.macs
        macs_f += f.macs
        layers_e += r.layers
        layers_f += f.layers
        exits0 += sum(e == 0 for e in r.exits)
    se, sf = slm_eval.score(pe, lex), slm_eval.score(pf, lex)
    row = {"model": "g2p-encdec (2 decoder layers) + exit after layer 1", "rule": "margin",
           "val_words": len(val), "test_words": len(test), "max_per_drop": drop,
           "threshold": sess.thresholds[0], "calibration": {
               k: v for k, v in cal.items() if k != "curve"}, "curve": cal["curve"],
           "per": se["per"], "wer": se["wer"], "per_full": sf["per"], "wer_full": sf["wer"],
           "identical_words": sum(pe[x] == pf[x] for x in test) / len(test),
           "exit_share": exits0 / max(1, toks_e),
           "mean_layers_per_token": layers_e / max(1, toks_e),
           "mean_layers_per_token_full": layers_f / max(1, toks_f),
           "macs_per_token": macs_e / max(1, toks_e), "macs_per_token_full": macs_f / max(1, toks_f),
           "entry_macs": plan["macs"],
           "ms_per_word": 1e3 * float(np.median(te)), "ms_per_word_full": 1e3 * float(np.median(tf)),
           "ms_per_token": 1e3 * sum(te) / max(1, toks_e),
           "ms_per_token_full": 1e3 * sum(tf) / max(1, toks_f),
           "calibration_s": round(t_cal, 1)}
    row["macs_saved"] = 1 - row["macs_per_token"] / row["macs_per_token_full"]
    print(f"language model, per-token exit in the decoder (margin, threshold "
          f"{row['threshold']} calibrated on {len(val)} validation words within {drop:g} PER "
          f"points), {len(test)} held-out words, integer model (Numba interpreter), shared "
          "machine:")
    print(f"  PER {row['per']:.2f} vs {row['per_full']:.2f} without exits "
          f"({row['per'] - row['per_full']:+.2f}), WER {row['wer']:.2f} vs {row['wer_full']:.2f};"
          f" {100 * row['identical_words']:.1f}% identical outputs")
    print(f"  {100 * row['exit_share']:.1f}% of tokens exit after layer 1: decoder layers per "
          f"token {row['mean_layers_per_token']:.2f} vs {row['mean_layers_per_token_full']:.2f},"
          f" MACs per token {row['macs_per_token']:.0f} vs {row['macs_per_token_full']:.0f} "
          f"({100 * row['macs_saved']:.1f}% saved, the exit head and K/V fill included)")
    print(f"  time per token {row['ms_per_token']:.2f} vs {row['ms_per_token_full']:.2f} ms, "
          f"median per word {row['ms_per_word']:.1f} vs {row['ms_per_word_full']:.1f} ms")
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
    ap.add_argument("--save-kws-depth", type=Path,
                    help="also write the integer clip sums of both KWS heads here (npz)")
    ap.add_argument("--seg-only", action="store_true", help="only the segmentation row")
    ap.add_argument("--no-seg", action="store_true", help="skip segmentation")
    ap.add_argument("--save-seg-val", type=Path, default=None, metavar="NPZ",
                    help="write the validation scenes' integer gate scores and per-exit "
                         "confusions (the tests' fixture, samples/exits/seg_val_outputs.npz)")
    ap.add_argument("--seg-drop", type=float, default=1.0,
                    help="mIoU points the segmentation exits may lose (validation scenes)")
    ap.add_argument("--lm-only", action="store_true", help="only the language-model row")
    ap.add_argument("--no-lm", action="store_true", help="skip the language model")
    ap.add_argument("--lm-drop", type=float, default=0.5,
                    help="PER points the per-token exits may lose (validation words)")
    ap.add_argument("--save-lm-bundle", type=Path,
                    help="also write the calibrated G2P exit bundle here (.edge)")
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
    only = [k for k in ("kws", "seg", "lm") if getattr(args, f"{k}_only")]
    if len(only) > 1:
        ap.error("give at most one of --kws-only, --seg-only, --lm-only")
    rules = () if only else ("margin", "gate") if args.quick else RULES
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
    kws = [] if args.no_kws or (only and only != ["kws"]) else \
        kws_rows(args.quick, args.kws_drop, args.save_kws_logits)
    if kws:  # exits over depth too (the committed clip sums with --quick)
        kws += kws_depth_rows(args.quick, args.kws_drop, args.save_kws_depth)
    # --quick alone: digits and keyword spotting (< 1 min); segmentation and the language
    # model take minutes each in full, so with --quick they run only when asked for
    seg = [] if args.no_seg or (only and only != ["seg"]) or (args.quick and not only) else \
        seg_rows(args.quick, args.seg_drop, args.save_seg_val)
    lm = [] if args.no_lm or (only and only != ["lm"]) or (args.quick and not only) else \
        lm_rows(args.quick, args.lm_drop, args.save_lm_bundle)
    if not rows:
        if args.json:
            args.json.write_text(json.dumps({"rows": [], "kws": kws, "seg": seg, "lm": lm,
                                             "quick": args.quick}, indent=1))
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
        args.json.write_text(json.dumps({"rows": rows, "unreachable": unreachable, "kws": kws,
                                         "seg": seg, "lm": lm, "mcu": mcu,
                                         "quick": args.quick},
                                        indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
