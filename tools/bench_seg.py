"""Segmentation latency and FPS: the SDK's integer model against ONNX Runtime float, ONNX
Runtime QDQ (``quantize_static``) and LiteRT + XNNPACK, one thread each, interleaved in the
same run; model sizes float vs integer.

    .venv/bin/python tools/bench_seg.py --quick
    .venv/bin/python tools/bench_seg.py --runs 200 --json bench_seg.json

Every runner gets the same held-out scene per round, in turn (round-robin), so machine load
hits all of them alike; the table gives medians and each runner's ratio to ONNX Runtime float.
LiteRT needs a ``.tflite`` of the model: the integer graph's Shiftmax / ShiftGELU / I-LayerNorm
have no TFLite builtins and there is no float ONNX→TFLite converter in the dependencies, so
the row says why it is missing instead of timing something else. The agreement column is the
share of pixels whose class equals the float model's.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # run as a script: one thread (imported by a test or a
    # process whose Numba threads already run, changing it would break its next compile)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one thread, as the peers
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sdk


def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_qdq(onnx_path: Path, calib: np.ndarray, out: Path) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": x} for x in calib])

        def get_next(self):
            return next(self.it, None)

    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


def litert_runner(bundle_graph, work: Path):
    """A LiteRT + XNNPACK runner of the integer graph, or the reason there is none."""
    try:
        path = sdk.write_tflite(bundle_graph, work / "seg.tflite")
    except Exception as exc:  # noqa: BLE001 - the reason is the row
        return None, f"not exportable to .tflite: {str(exc).splitlines()[0][:110]}"
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
    except Exception as exc:  # noqa: BLE001
        return None, f"LiteRT cannot load it: {str(exc).splitlines()[0][:110]}"
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        s, z = inp["quantization"]
        it.set_tensor(inp["index"], np.clip(np.round(x / s) + z, -128, 127).astype(np.int8))
        it.invoke()
        return it.get_tensor(out["index"]).astype(np.float32)

    return run, ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="samples/seg/seg_vit_mask.onnx")
    ap.add_argument("--runs", type=int, default=100, help="timed rounds (each runner once)")
    ap.add_argument("--quick", action="store_true", help="20 rounds (under a minute)")
    ap.add_argument("--json", dest="json_path")
    a = ap.parse_args(argv)
    rounds = 20 if a.quick else a.runs
    onnx_path = Path(a.model)
    if not onnx_path.is_file():
        print(f"bench_seg: {onnx_path} does not exist", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-seg-"))
    t0 = time.perf_counter()
    fsess = ort_session(onnx_path)
    size = int(fsess.get_inputs()[0].shape[2])
    calib = sdk.vision.calibration_set(size=size)
    edge_path = sdk.compile_segmenter(onnx_path)
    # the compiled program a stream runs after its first 64 frames (compiled here in the
    # set-up, cached on disk) and the prepared interpreter it starts on
    isess = sdk.Session(edge_path, compiled=True)
    interp = sdk.Session(edge_path, compiled=False)
    qdq_path = ort_qdq(onnx_path, calib[:, 0][:, None], work / "seg_qdq.onnx")
    qsess = ort_session(qdq_path)
    lite, lite_why = litert_runner(isess.graph, work)
    # the board path: LiteRT + XNNPACK where the .tflite writer takes a node, the rest on the
    # integer kernels (sdk.Session partitions; the plan says which node ran where)
    psess = sdk.Session(edge_path, target="raspberry-pi-4")
    plan_line = str(psess.plan).splitlines()[0]
    images, _ = sdk.vision.cached_scenes(max(8, min(rounds, 50)), 1, "test", size)
    xs = sdk.vision.normalize_batch(images)[:, None]
    isess.run({"x": xs[0]})  # compiles the program (or loads it from the disk cache)
    setup_s = time.perf_counter() - t0

    runners = {
        "ORT float (fp32)": lambda x: fsess.run(None, {"x": x})[0],
        "ORT QDQ int8 (quantize_static)": lambda x: qsess.run(None, {"x": x})[0],
        "SDK integer-only (Numba kernels)": lambda x: isess.run({"x": x})["logits"],
        "SDK integer-only, interpreter": lambda x: interp.run({"x": x})["logits"],
    }
    if lite is not None:
        runners["LiteRT + XNNPACK (int8 .tflite)"] = lite
    runners["SDK partitioned: LiteRT+XNNPACK / kernels"] = (
        lambda x: psess.run({"x": x})["logits"])
    for fn in runners.values():  # warm-up (JIT, allocation)
        fn(xs[0])
    times: dict[str, list[float]] = {k: [] for k in runners}
    agree: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(rounds):
        x = xs[r % len(xs)]
        ref = None
        for name, fn in runners.items():
            t = time.perf_counter()
            y = fn(x)
            times[name].append(time.perf_counter() - t)
            pred = np.asarray(y)[0].argmax(0)
            if ref is None:
                ref = pred
            agree[name].append(float((pred == ref).mean()))
    base = statistics.median(times["ORT float (fp32)"])
    sizes = {"float ONNX": onnx_path.stat().st_size, "ORT QDQ ONNX": qdq_path.stat().st_size,
             "SDK .edge file": edge_path.stat().st_size,
             "SDK integer parameters": int(isess.bundle.manifest["parameter_bytes"])}
    rows = []
    for name in runners:
        med = statistics.median(times[name])
        rows.append({"runner": name, "median_ms": med * 1e3, "fps": 1.0 / med,
                     "speedup_vs_ort_float": base / med,
                     "pixel_agreement_with_float": float(np.mean(agree[name]))})
    print(f"bench_seg: {onnx_path} ({size}x{size}), {rounds} interleaved rounds, 1 thread each, "
          f"on {platform.machine()} {platform.processor() or ''} (shared, loaded machine: read "
          f"the ratios); set-up {setup_s:.0f} s")
    head = f"{'runner':<42}{'median ms':>11}{'FPS':>8}{'vs ORT fp32':>13}{'agree':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['runner']:<42}{r['median_ms']:>11.2f}{r['fps']:>8.1f}"
              f"{r['speedup_vs_ort_float']:>12.2f}x{r['pixel_agreement_with_float']:>8.1%}")
    if lite is None:
        print(f"{'LiteRT + XNNPACK (whole model)':<42}  -- {lite_why}")
    print(f"SDK integer-only row: {isess.executor}; interpreter row: {interp.executor}")
    print(f"partitioned row: {plan_line}")
    print("model size: " + ", ".join(f"{k} {v:,} B" for k, v in sizes.items())
          + f"; float / integer parameters = {sizes['float ONNX'] / sizes['SDK integer parameters']:.2f}x,"
          f" float / .edge = {sizes['float ONNX'] / sizes['SDK .edge file']:.2f}x")
    if a.json_path:
        Path(a.json_path).write_text(json.dumps({
            "model": str(onnx_path), "rounds": rounds, "rows": rows, "sizes": sizes,
            "litert": lite_why or "ran", "partitioned_plan": plan_line,
            "sdk_executor": isess.executor,
            "machine": platform.platform(),
            "note": "shared machine under load; medians of interleaved rounds"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
