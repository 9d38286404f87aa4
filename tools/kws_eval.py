"""Accuracy of a keyword-spotting checkpoint on held-out voices: float, and integer-only.

Float: the NumPy step (sdk.models.lmuformer) streamed over every test clip. Integer: the ONNX
step graph is imported, calibrated on streamed validation frames and quantized by the SDK
(``sdk.quant.quantize``), then run hop by hop on the reference backend with integer I/O, the
state carried between hops as integers exactly as a device would; only the input frame is
quantized (``QuantizeLinear``) and the logits dequantized. The integer pass is slow on the
reference backend (milliseconds per hop), so ``--int-clips`` limits it to a class-balanced
subset, and the float accuracy on the same subset is printed beside it.

Usage: ``python tools/kws_eval.py samples/kws/models/kws_lmuformer_nonspiking.npz``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kws_dataset

from sdk.frontends.onnx_import import load_onnx
from sdk.models import (
    LMUFormerWeights,
    build_step_onnx,
    macs_per_frame,
    run_clips,
    running_mean_logits,
    state_shapes,
    step_calibration_data,
)
from sdk.quant import quantize
from sdk.runtime import Session


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` clips, as equal a number per class as possible (seeded)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = int(np.ceil(n / len(classes)))
    idx = [rng.permutation(np.nonzero(labels == c)[0])[:per] for c in classes]
    return np.sort(np.concatenate(idx))[:n]


def quantize_input(x: np.ndarray, q) -> np.ndarray:
    """``clamp(round_half_even(x/scale) + zp)`` (QuantizeLinear) for an int8 input."""
    v = np.rint(x / np.float32(q.scale)) + int(q.zero_point)
    return np.clip(v, -128, 127).astype(np.int8)


def integer_frame_logits(sess: Session, model: LMUFormerWeights, feats: np.ndarray
                         ) -> np.ndarray:
    """Stream ``feats [T, n_mels]`` through the integer step graph; dequantized logits [T, K]."""
    info = {i.name: i for i in sess.inputs}
    out_q = {o.name: o for o in sess.outputs}["logits"].quant
    names = list(state_shapes(model.config))
    state = {n: np.full(info[f"state_{n}"].shape, int(info[f"state_{n}"].quant.zero_point),
                        dtype=info[f"state_{n}"].dtype) for n in names}  # float 0.0
    rows = []
    for frame in feats:
        out = sess.run(None, {"x": quantize_input(frame[None], info["x"].quant),
                              **{f"state_{n}": state[n] for n in names}})
        state = {n: out[f"state_{n}_next"] for n in names}
        rows.append((out["logits"][0].astype(np.float32) - float(out_q.zero_point))
                    * float(out_q.scale))
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="checkpoint .npz from tools/train_kws.py")
    ap.add_argument("--data", default="data/kws")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--int-clips", type=int, default=240,
                    help="test clips for the integer pass (0: skip it)")
    ap.add_argument("--calib-clips", type=int, default=32)
    ap.add_argument("--observer", default="minmax")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    folder = kws_dataset.generate(a.data, kws_dataset.DatasetConfig(seed=a.data_seed))
    model = LMUFormerWeights.load(a.model)
    x, y = kws_dataset.load_features(folder, "test")
    t0 = time.perf_counter()
    float_pred = running_mean_logits(run_clips(model, x))[:, -1].argmax(-1)
    report = {"model": a.model, "test_clips": len(y),
              "float_acc": float((float_pred == y).mean()),
              "float_seconds": time.perf_counter() - t0}
    macs = sum(macs_per_frame(model.config).values())
    report.update(parameters=model.parameter_count(), macs_per_second=macs * 100)
    print(f"model   : {model.parameter_count()} parameters, {macs * 100 / 1e6:.1f} M MAC per "
          f"second of audio (100 steps); LMUFormer reports about 1.6 M parameters")
    print(f"float   : {report['float_acc'] * 100:.2f}% on {len(y)} held-out-voice clips")
    if a.int_clips > 0:
        xv, yv = kws_dataset.load_features(folder, "val")
        calib = step_calibration_data(model, xv[balanced_subset(yv, a.calib_clips)])
        t1 = time.perf_counter()
        graph = quantize(load_onnx(build_step_onnx(model)), calib, observer=a.observer)
        sess = Session(graph, integer_io=True)
        sub = balanced_subset(y, a.int_clips, seed=1)
        int_pred = np.array([running_mean_logits(integer_frame_logits(sess, model, x[i]))[-1]
                             .argmax() for i in sub])
        report.update({"int_clips": len(sub), "int_acc": float((int_pred == y[sub]).mean()),
                       "float_acc_same_clips": float((float_pred[sub] == y[sub]).mean()),
                       "int_agreement": float((int_pred == float_pred[sub]).mean()),
                       "int_seconds": time.perf_counter() - t1, "observer": a.observer,
                       "state_dtypes": {i.name: i.dtype for i in sess.inputs}})
        print(f"integer : {report['int_acc'] * 100:.2f}% on {len(sub)} clips (float on the "
              f"same clips {report['float_acc_same_clips'] * 100:.2f}%, argmax agreement "
              f"{report['int_agreement'] * 100:.1f}%), {report['int_seconds']:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
