"""mIoU and per-class IoU of the segmentation model: float, integer (full calibration) and
integer one-shot (calibrated on a single image), on held-out generated scenes.

    .venv/bin/python tools/seg_eval.py                      # samples/seg/seg_vit_mask.onnx
    .venv/bin/python tools/seg_eval.py samples/seg/seg_vit_linear.onnx --scenes 300 --json r.json
    .venv/bin/python tools/seg_eval.py samples/seg/seg_tiny_mask.onnx --mcu 20   # + QEMU M4

Test scenes: :func:`sdk.vision.cached_scenes` split ``test`` (crops from held-out regions of
every source image), seed 1. Full calibration: ``--calib`` generated train scenes (seed 11);
one-shot: the first of them alone. The float model runs on ONNX Runtime, the integer bundles
on the SDK's kernels. Also prints the model sizes (float ONNX file vs integer parameters and
.edge file).

``--mcu N`` also packs the integer model (full calibration) for the ``mps2-an386`` firmware
(refused, one line, when it exceeds the board or the tiny-segmenter budget: ``--mcu-weights-kib``
/ ``--mcu-arena-kib``, default 300 / 256; ``--mcu-no-budget`` checks the board alone), runs
the first N test scenes in the Cortex-M4 firmware under QEMU, checks every frame's int8
logits against the NumPy reference bit for bit and prints the instructions per frame
(QEMU -icount) with the five costliest op types.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sdk


def confusion(pred: np.ndarray, lab: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(lab.ravel().astype(np.int64) * c + pred.ravel(),
                       minlength=c * c).reshape(c, c)


def ious(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU in percent (NaN for a class absent from both prediction and labels)."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    return np.where(union > 0, 100.0 * inter / np.maximum(union, 1), np.nan)


def predict(sess, x: np.ndarray) -> np.ndarray:
    return np.stack([sess.run({"x": xi[None]})["logits"][0].argmax(0) for xi in x])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default="samples/seg/seg_vit_mask.onnx")
    ap.add_argument("--scenes", type=int, default=300, help="held-out test scenes")
    ap.add_argument("--calib", type=int, default=32, help="calibration scenes (full PTQ)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the test scenes")
    ap.add_argument("--json", dest="json_path", help="write the figures here")
    ap.add_argument("--quick", action="store_true", help="100 test scenes")
    ap.add_argument("--mcu", type=int, default=0, metavar="N",
                    help="run N test scenes in the mps2-an386 firmware under QEMU")
    ap.add_argument("--mcu-weights-kib", type=float, default=300.0)
    ap.add_argument("--mcu-arena-kib", type=float, default=256.0)
    ap.add_argument("--mcu-no-budget", action="store_true",
                    help="check the board's memory map only, not the tiny-segmenter budget")
    a = ap.parse_args(argv)
    n = 100 if a.quick else a.scenes
    onnx_path = Path(a.model)
    if not onnx_path.is_file():
        print(f"seg_eval: {onnx_path} does not exist; train it with tools/train_seg.py",
              file=sys.stderr)
        return 2
    classes = list(sdk.vision.CLASSES)
    c = len(classes)
    fsess = sdk.Session(onnx_path, backend="onnxruntime")
    size = int(fsess.inputs[0].shape[2])
    images, labels = sdk.vision.cached_scenes(n, a.seed, "test", size)
    x = sdk.vision.normalize_batch(images)
    calib = sdk.vision.calibration_set(a.calib, size)
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="seg-eval-"))
    t0 = time.perf_counter()
    results["float"] = {"pred": predict(fsess, x)}
    sizes = {"float_onnx_bytes": onnx_path.stat().st_size}
    for key, cal in (("int", calib), ("int_oneshot", calib[:1])):
        t = time.perf_counter()
        bundle = sdk.compile_model(onnx_path, {"x": cal})
        path = bundle.save(work / f"{key}.edge")
        compile_s = time.perf_counter() - t
        isess = sdk.Session(path)
        results[key] = {"pred": predict(isess, x), "calibration_images": len(cal),
                        "compile_s": round(compile_s, 1)}
        if key == "int":
            sizes["int_edge_bytes"] = path.stat().st_size
            sizes["int_parameter_bytes"] = int(bundle.manifest["parameter_bytes"])
    out: dict = {"model": str(onnx_path), "test_scenes": n, "test_seed": a.seed,
                 "classes": classes, "sizes": sizes}
    for key, r in results.items():
        conf = confusion(r.pop("pred"), labels, c)
        per = ious(conf)
        r["miou"] = float(np.nanmean(per))
        r["pixel_acc"] = float(100.0 * np.trace(conf) / conf.sum())
        r["iou"] = {classes[i]: (None if np.isnan(per[i]) else round(float(per[i]), 2))
                    for i in range(c)}
        out[key] = r
    out["int_drop"] = out["float"]["miou"] - out["int"]["miou"]
    out["int_oneshot_drop"] = out["float"]["miou"] - out["int_oneshot"]["miou"]
    out["size_ratio_parameters"] = sizes["float_onnx_bytes"] / sizes["int_parameter_bytes"]
    out["size_ratio_edge_file"] = sizes["float_onnx_bytes"] / sizes["int_edge_bytes"]
    if a.mcu:
        try:
            out["mcu"] = run_mcu(a, work / "int.edge", x[:a.mcu], labels[:a.mcu], c)
        except (sdk.TargetError, sdk.UnsupportedOpError) as e:
            print(f"seg_eval: {e}", file=sys.stderr)
            return 1
    out["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"model {onnx_path} ({size}x{size}), {n} held-out test scenes (seed {a.seed}); "
          f"calibration: {a.calib} train scenes (int) / 1 scene (int one-shot)")
    head = f"{'class':<12}" + "".join(f"{k:>14}" for k in ("float", "int", "int one-shot"))
    print(head)
    print("-" * len(head))
    for name in classes:
        cells = []
        for key in ("float", "int", "int_oneshot"):
            v = out[key]["iou"][name]
            cells.append(f"{'-' if v is None else f'{v:.2f}':>14}")
        print(f"{name:<12}" + "".join(cells))
    print("-" * len(head))
    print(f"{'mIoU':<12}" + "".join(f"{out[k]['miou']:>14.2f}"
                                    for k in ("float", "int", "int_oneshot")))
    print(f"{'pixel acc':<12}" + "".join(f"{out[k]['pixel_acc']:>14.2f}"
                                         for k in ("float", "int", "int_oneshot")))
    print(f"mIoU drop vs float: int {out['int_drop']:+.2f} points, int one-shot "
          f"{out['int_oneshot_drop']:+.2f} points")
    print(f"size: float ONNX {sizes['float_onnx_bytes']:,} B; integer parameters "
          f"{sizes['int_parameter_bytes']:,} B ({out['size_ratio_parameters']:.2f}x smaller); "
          f".edge file {sizes['int_edge_bytes']:,} B ({out['size_ratio_edge_file']:.2f}x)")
    if a.mcu:
        m = out["mcu"]
        print(f"mps2-an386 (QEMU Cortex-M4): {m['frames']} frames, bit-exact with the NumPy "
              f"reference: {m['bit_exact_frames']}/{m['frames']}; instructions per frame "
              f"{m['instructions_per_frame']:,.0f} (median); int8 weights "
              f"{m['int8_weight_bytes']:,} B, arena {m['arena_bytes']:,} B, image "
              f"{m['image_bytes']:,} B; device mIoU on these frames {m['miou']:.2f} (SDK int "
              f"{m['sdk_int_miou']:.2f})")
        print("  costliest ops: " + ", ".join(f"{op} {v / 1e6:.1f} M" for op, v in m["top_ops"]))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(out, indent=1))
    return 0 if not a.mcu or out["mcu"]["bit_exact_frames"] == out["mcu"]["frames"] else 1


def run_mcu(a, bundle: Path, x: np.ndarray, labels: np.ndarray, c: int) -> dict:
    """The integer bundle in the QEMU Cortex-M4 firmware: bit-exactness, instructions."""
    v = sdk.vision
    budget = None if a.mcu_no_budget else v.McuBudget(int(a.mcu_weights_kib * 1024),
                                                      int(a.mcu_arena_kib * 1024))
    seg = v.segmenter_image(bundle, "mps2-an386", budget)
    seg.name = Path(a.model).stem
    exact, counts, dev_pred, ref_pred = 0, [], [], []
    per_op: dict[str, float] = {}
    with v.QemuSegmenter(seg) as dev:
        for xi in x:
            xq = v.quantize_input(seg, xi[None])
            got, n = dev(xq)
            ref = v.reference_logits(seg, xq)
            exact += int(np.array_equal(got, ref))
            counts.append(n)
            dev_pred.append(got[0].argmax(0))
            ref_pred.append(ref[0].argmax(0))
        for _, op, v, _ in dev.op_counts():
            per_op[op] = per_op.get(op, 0.0) + v
    return {"frames": len(x), "bit_exact_frames": exact,
            "instructions_per_frame": float(np.median(counts)),
            "instructions_all": counts, "int8_weight_bytes": seg.weights_bytes,
            "arena_bytes": seg.arena_bytes, "image_bytes": seg.image_bytes,
            "budget": None if budget is None else [budget.weights_bytes, budget.arena_bytes],
            "miou": float(np.nanmean(ious(confusion(np.stack(dev_pred), labels, c)))),
            "sdk_int_miou": float(np.nanmean(ious(confusion(np.stack(ref_pred), labels, c)))),
            "top_ops": sorted(per_op.items(), key=lambda kv: -kv[1])[:5]}


if __name__ == "__main__":
    raise SystemExit(main())
