"""Prefix-accuracy curve of a streaming keyword spotter: accuracy vs fraction of the clip heard.

The prediction after ``t`` frames is the running mean of the frame logits (the model emits one
per 10 ms hop). The *sequence-length reduction* is ``1 − t*/T``, where ``t*`` is the first frame
from which the accuracy stays within ``--within`` points (default 1) of the full-clip accuracy;
LMUFormer reports 32.03% on Speech Commands.

Usage: ``python tools/kws_prefix_curve.py samples/kws/models/kws_lmuformer_spiking.npz``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kws_dataset

from sdk.models import LMUFormerWeights, run_clips, running_mean_logits

LMUFORMER_REDUCTION = 0.3203


def prefix_curve(frame_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy of the running-mean prediction after each frame, ``[T]``."""
    return (running_mean_logits(frame_logits).argmax(-1) == labels[:, None]).mean(axis=0)


def sequence_reduction(curve: np.ndarray, within: float = 0.01) -> tuple[int, float]:
    """First frame count ``t*`` from which ``curve`` stays ≥ full − within; ``1 − t*/T``."""
    ok = curve >= curve[-1] - within
    # the last frame is always ok; find the start of the final run of ok frames
    bad = np.nonzero(~ok)[0]
    t_star = int(bad[-1]) + 2 if len(bad) else 1
    return t_star, 1.0 - t_star / len(curve)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="+", help="checkpoint(s) .npz from tools/train_kws.py")
    ap.add_argument("--data", default="data/kws")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--within", type=float, default=1.0, help="points below full-clip accuracy")
    ap.add_argument("--json", help="write the curves here")
    a = ap.parse_args(argv)
    folder = kws_dataset.generate(a.data, kws_dataset.DatasetConfig(seed=a.data_seed))
    x, y = kws_dataset.load_features(folder, a.split)
    results = {}
    marks = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    print(f"{'model':<28}" + "".join(f"{int(m * 100):>6}%" for m in marks)
          + "   t*  reduction  (LMUFormer 32.03%)")
    for path in a.model:
        model = LMUFormerWeights.load(path)
        curve = prefix_curve(run_clips(model, x), y)
        t_star, red = sequence_reduction(curve, a.within / 100.0)
        pts = [curve[max(1, round(m * len(curve))) - 1] for m in marks]
        print(f"{Path(path).stem:<28}" + "".join(f"{p * 100:6.1f} " for p in pts)
              + f" {t_star:4d}  {red * 100:8.2f}%")
        results[Path(path).stem] = {"curve": [float(c) for c in curve], "t_star": t_star,
                                    "reduction": red, "full_accuracy": float(curve[-1])}
    if a.json:
        Path(a.json).write_text(json.dumps({"split": a.split, "within_points": a.within,
                                            "lmuformer_reduction": LMUFORMER_REDUCTION,
                                            "models": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
