"""Sentence-restoration accuracy of the two small language models, float vs integer.

On the held-out fortune sentences (``samples/slm/text/heldout.txt``, never trained on; the
source of each is its fixed seeded corruption, tools/slm_text_data.py):

* ``float``: the float ONNX graphs in ONNX Runtime with past-KV step graphs (greedy;
  tools/slm_eval.py's ``OrtGenerator``);
* ``int``: the integer generation bundle (``sdk.GenerationSession``, int8 KV caches, greedy).

Exact match: share of sentences restored character for character. CER: character edit
distance to the target / target length (corpus level). ms/sentence: median wall time, one
thread (``NUMBA_NUM_THREADS=1``, ORT ``intra_op_num_threads=1``); the integer models on the
node interpreter.

    .venv/bin/python tools/slm_text_eval.py --compile   # (re)build samples/slm/text/*.edge + ONNX
    .venv/bin/python tools/slm_text_eval.py [--limit N] [--json out.json]
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slm_text_data
from slm_eval import OrtGenerator, edit_distance, timed

import sdk
from sdk.models.slm import decoder_onnx, encoder_onnx, load_weights

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT / "samples" / "slm" / "text"
KINDS = ("encdec", "deconly")
CALIB_SENTENCES = 64
#: options of sdk.compile_model for the committed bundles (``--observer`` overrides): the
#: percentile observer; minmax and mse were tried too (samples/slm/text/README.md)
COMPILE_OPTIONS: dict = {"observer": "percentile"}


def score(preds: dict[str, str], targets: dict[str, str]) -> dict:
    errs = n = exact = 0
    for k, p in preds.items():
        t = targets[k]
        errs += edit_distance(p, t)
        n += len(t)
        exact += p == t
    return {"exact": 100.0 * exact / max(1, len(preds)), "cer": 100.0 * errs / max(1, n),
            "sentences": len(preds)}


def compile_kind(kind: str, out: Path = TEXT, n_calib: int = CALIB_SENTENCES) -> Path:
    import onnx

    cfg, w = load_weights(out / f"{kind}.npz")
    tok = sdk.TextTokenizer()
    train, _, _ = slm_text_data.split(slm_text_data.load_sentences())
    step = max(1, len(train) // n_calib)
    sents = train[::step][:n_calib]
    samples = [(tok.encode_source(slm_text_data.source_of(t)), tok.encode(t)) for t in sents]
    meta = json.loads((out / f"{kind}.json").read_text())
    bundle = sdk.compile_generation_model(cfg, w, samples, name=f"text_{kind}",
                                          meta={"params": meta["params"],
                                                "tokenizer": tok.name,
                                                "task": "sentence restoration"},
                                          **COMPILE_OPTIONS)
    path = bundle.save(out / f"{kind}.edge")
    if cfg.encdec:
        onnx.save(encoder_onnx(cfg, w), out / f"{kind}_encoder.onnx")
    onnx.save(decoder_onnx(cfg, w, 1, "past"), out / f"{kind}_decoder_step.onnx")
    print(f"{kind}: {path} ({path.stat().st_size} bytes), ONNX written")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", action="store_true", help="rebuild samples/slm/text/*.edge + ONNX")
    ap.add_argument("--limit", type=int, default=0, help="N held-out sentences, evenly spaced")
    ap.add_argument("--split", choices=("heldout", "val"), default="heldout",
                    help="score the held-out sentences (default) or the validation ones "
                    "(for choices such as --observer; never tuned on held-out)")
    ap.add_argument("--models", default=",".join(KINDS))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--show", type=int, default=0, help="print N restored sentences")
    ap.add_argument("--dir", type=Path, default=TEXT, help="where the .npz/.json/.edge live")
    ap.add_argument("--calib", type=int, default=CALIB_SENTENCES,
                    help="with --compile: calibrate on this many training sentences")
    ap.add_argument("--observer", default=None, help="with --compile: sdk.compile_model's "
                    "calibration observer (default percentile)")
    args = ap.parse_args()
    if args.observer:
        COMPILE_OPTIONS["observer"] = args.observer
    models = args.models.split(",")
    if args.compile:
        for k in KINDS:
            if k in models:
                compile_kind(k, args.dir, args.calib)
    if args.split == "val":
        _, valid, _ = slm_text_data.split(slm_text_data.load_sentences())
        pairs = [(slm_text_data.source_of(t), t) for t in valid]
    else:
        pairs = slm_text_data.heldout_pairs()
    if args.limit:
        pairs = pairs[:: max(1, len(pairs) // args.limit)][: args.limit]
    src = {t: s for s, t in pairs}
    targets = {t: t for _, t in pairs}
    keys = [t for _, t in pairs]
    tok = sdk.TextTokenizer()
    rows, shown = [], {}
    for kind in KINDS:
        if kind not in models:
            continue
        cfg, w = load_weights(args.dir / f"{kind}.npz")
        params = cfg.params(w)
        f = OrtGenerator(cfg, w)
        enc = {k: tok.encode_source(src[k], cfg.max_src) for k in keys}
        fp, f_ms = timed(lambda k, f=f, e=enc: tok.decode(f.generate(e[k])), keys)
        gs = sdk.GenerationSession(args.dir / f"{kind}.edge", compiled=False)
        ip, i_ms = timed(lambda k, g=gs, e=enc: tok.decode(g.generate(e[k]).tokens), keys)
        sf, si = score(fp, targets), score(ip, targets)
        meta = json.loads((args.dir / f"{kind}.json").read_text())
        for name, s, ms in ((f"{kind} float (ORT)", sf, f_ms), (f"{kind} int8 (edge)", si, i_ms)):
            rows.append({"model": name, "params": params, **s, "ms_per_sentence": ms,
                         "train_steps": meta["steps"], "train_cpu_s": meta.get("cpu_seconds")})
        rows[-1]["agree_with_float"] = float(np.mean([fp[k] == ip[k] for k in keys]))
        rows[-1]["delta_exact"] = si["exact"] - sf["exact"]
        rows[-1]["delta_cer"] = si["cer"] - sf["cer"]
        shown[kind] = ip
    copy = score({k: src[k] for k in keys}, targets)
    print(f"{'held-out' if args.split == 'heldout' else 'validation'} fortune sentences: "
          f"{len(keys)} (machine shared with other jobs); "
          f"the corrupted input itself: exact {copy['exact']:.2f} %, CER {copy['cer']:.2f} %")
    print(f"{'model':22s} {'params':>8s} {'exact %':>8s} {'CER %':>7s} {'ms/sent':>8s}")
    for r in rows:
        print(f"{r['model']:22s} {r['params']:8d} {r['exact']:8.2f} {r['cer']:7.2f} "
              f"{r['ms_per_sentence']:8.1f}" + (
                  f"   int-float: exact {r['delta_exact']:+.2f}, CER {r['delta_cer']:+.2f}, "
                  f"same output {100 * r['agree_with_float']:.1f} %"
                  if "delta_cer" in r else ""))
    for k in keys[:args.show]:
        print(f"{src[k]!r}\n  target  {k!r}\n" + "".join(
            f"  {kind:8s}{shown[kind][k]!r}\n" for kind in shown), end="")
    if args.json:
        args.json.write_text(json.dumps({"sentences": len(keys), "corrupted_input": copy,
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
