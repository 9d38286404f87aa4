"""Average the weights of keyword-spotting checkpoints fine-tuned from one start (torch-free).

Usage: ``python tools/kws_average.py A.npz B.npz [...] --out OUT.npz [--weights wA wB ...]``
writes ``OUT.npz``, its single-step ONNX graph ``OUT.onnx`` and a report ``OUT.json`` (the
command, each source's SHA-256, weight and training command, float accuracy on the
held-out-voice test clips).

Fine-tunes that start from the same checkpoint stay close in weight space, and the mean of
their weights often generalizes better than either (a "model soup", Wortsman et al. 2022).
The sources must share the configuration and everything a fine-tune does not train (the
input normalization, the LMU's Ā and B̄); anything else is refused in one line. Each weight
array of the result is the element-wise mean of the sources' folded arrays, or with
``--weights`` their weighted mean (positive weights, one per source, summing to 1). A streaming
operating point is not averaged: choose one for the result on validation streams
(``tools/kws_stream_eval.py OUT.npz --split val ... --choose``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sdk.errors import EdgeError
from sdk.models import LMUFormerWeights, build_step_onnx, run_clips, running_mean_logits

#: arrays a fine-tune leaves as they are: the sources must agree on them exactly
FIXED = ("in_mean", "in_inv_std", "a_bar", "b_bar")


def average(models: list[LMUFormerWeights], names: list[str],
            mix: list[float] | None = None) -> LMUFormerWeights:
    """The element-wise mean of the sources' weights (``mix``: weighted, one positive weight
    per source, summing to 1); ``SystemExit`` (one line) when they are not fine-tunes of one
    start or the weights are not such."""
    first, fname = models[0], names[0]
    if mix is not None and len(mix) != len(models):
        raise SystemExit(f"--weights gives {len(mix)} weights for {len(models)} checkpoints: "
                         "give one weight per checkpoint")
    if mix is not None and not (all(w > 0 for w in mix) and abs(sum(mix) - 1.0) <= 1e-6):
        raise SystemExit(f"--weights {' '.join(f'{w:g}' for w in mix)}: give positive weights "
                         "that sum to 1")
    for m, n in zip(models[1:], names[1:]):
        if m.config != first.config:
            raise SystemExit(f"{n} has config {m.config}, {fname} {first.config}: average "
                             "checkpoints of one architecture (fine-tunes of one start)")
        if set(m.weights) != set(first.weights):
            raise SystemExit(f"{n} holds arrays {sorted(set(m.weights) ^ set(first.weights))} "
                             f"that {fname} does not: average checkpoints of one architecture")
        for k in FIXED:
            if k in first.weights and not np.array_equal(m.weights[k], first.weights[k]):
                raise SystemExit(f"{n} and {fname} differ in {k}, which fine-tuning does not "
                                 "change: they do not share a start; average fine-tunes of "
                                 "one checkpoint")

    def combine(k: str) -> np.ndarray:
        arrays = np.stack([m.weights[k].astype(np.float64) for m in models])
        if mix is None:  # the plain mean, as the committed soups were made (bit for bit)
            return arrays.mean(axis=0).astype(np.float32)
        return np.tensordot(np.asarray(mix, dtype=np.float64), arrays, axes=1).astype(np.float32)

    weights = {k: (v.copy() if k in FIXED else combine(k)) for k, v in first.weights.items()}
    return LMUFormerWeights(first.config, weights)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", nargs="+", help="two or more .npz from tools/train_kws.py")
    ap.add_argument("--out", required=True, help="the averaged checkpoint (.npz)")
    ap.add_argument("--weights", type=float, nargs="+", metavar="W",
                    help="one positive weight per checkpoint, summing to 1 (default: equal)")
    ap.add_argument("--data", default="data/kws",
                    help="clip dataset for the held-out-voice accuracy (tools/kws_dataset.py)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--no-eval", action="store_true",
                    help="skip the clip accuracy (no dataset needed)")
    a = ap.parse_args(argv)
    if len(a.checkpoint) < 2:
        raise SystemExit("give two or more checkpoints to average")
    out = Path(a.out)
    if out.suffix != ".npz":
        raise SystemExit(f"--out {a.out}: name the averaged checkpoint OUT.npz")
    if any(out.resolve() == Path(p).resolve() for p in a.checkpoint):
        raise SystemExit(f"--out {a.out} is one of the sources: write the average elsewhere")
    missing = [p for p in a.checkpoint if not Path(p).is_file()]
    if missing:
        raise SystemExit(f"no checkpoint {missing[0]}: give .npz files from tools/train_kws.py")
    try:
        models = [LMUFormerWeights.load(p) for p in a.checkpoint]
    except EdgeError as e:
        raise SystemExit(str(e)) from None
    model = average(models, a.checkpoint, a.weights)
    mix = a.weights if a.weights is not None else [1.0 / len(models)] * len(models)
    sources = []
    for p, w in zip(a.checkpoint, mix):
        meta = Path(p).with_suffix(".json")
        src = {"path": p, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(),
               "weight": w}
        if meta.is_file():
            src["command"] = json.loads(meta.read_text()).get("command")
        sources.append(src)
    report = {"variant": "spiking" if model.config.spiking else "nonspiking",
              "config": asdict(model.config), "parameters": model.parameter_count(),
              "command": "python tools/kws_average.py " + shlex.join(
                  (argv if argv is not None else sys.argv[1:])),
              "averaged_from": sources}
    if not a.no_eval:
        import kws_dataset

        folder = kws_dataset.generate(a.data, kws_dataset.DatasetConfig(seed=a.data_seed))
        for split in ("val", "test"):
            x, y = kws_dataset.load_features(folder, split)
            pred = running_mean_logits(run_clips(model, x))[:, -1].argmax(-1)
            report[f"{split}_acc"] = float((pred == y).mean())
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    out.with_suffix(".onnx").write_bytes(build_step_onnx(model, batch=1).SerializeToString())
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    acc = (f"; test clips (held-out voices, float) {report['test_acc'] * 100:.2f}%"
           if "test_acc" in report else "")
    kind = "mean" if a.weights is None else "weighted mean"
    print(f"{out}: {kind} of {len(models)} checkpoints, {model.parameter_count()} parameters{acc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
