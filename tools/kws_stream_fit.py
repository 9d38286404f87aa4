"""Does a stream model know keywords, or only its training streams? Keyword-peak shares on
streams rendered fresh, for any pairing of voices and text.

For every keyword said in a stream, the peak of the said keyword's smoothed posterior
(``tools/kws_stream_eval.py``'s scores, float) inside its hit window (0.1 s after the keyword
starts to 1 s after it ends); the table gives the share of keywords whose peak passes 0.5, 0.9
and 0.99. Rows:

* ``trained``: the first ``--streams`` keyword streams of a cached training set (``--trained
  DIR``, e.g. ``data/kws_stream/<hash>``): what the model was fitted on;
* ``<voices> voices × <text> text``: ``--streams`` new keyword streams (clean, seeds no cached
  set uses) read by speakers of one split (``tools/kws_dataset.py``'s voice split) from the
  sentences of one split (``tools/kws_stream_data.py``'s text split).

A model far more confident on ``trained`` than on fresh training voices reading training text
has learned its training streams, not the task: more streams, not more voices, is the lever.

    python tools/kws_stream_fit.py samples/kws/models/kws_lmuformer_stream.npz \\
        --pairs train:train train:val val:val --streams 6 --trained data/kws_stream/<hash>
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
import kws_dataset  # noqa: E402
import kws_stream_data  # noqa: E402
import kws_stream_eval  # noqa: E402

from sdk.errors import EdgeError  # noqa: E402
from sdk.models import LMUFormerWeights  # noqa: E402

LEVELS = (0.5, 0.9, 0.99)


def fresh_streams(voices: str, text: str, n: int, seconds: float = 300.0, seed: int = 0
                  ) -> list[dict]:
    """``n`` clean keyword streams: speakers of split ``voices`` reading sentences of split
    ``text`` (seeds apart from every cached set's: the first seed element is 1000 + seed)."""
    speakers = kws_dataset.split_speakers(kws_dataset.list_variants(),
                                          kws_dataset.DatasetConfig(seed=0))[voices]
    rng = np.random.default_rng([1000 + seed, len(voices), len(text)])
    pools = kws_stream_data._pools()
    out = []
    for i in range(n):
        acc = kws_dataset.ACCENTS[int(rng.integers(len(kws_dataset.ACCENTS)))]
        v = f"{acc}+{speakers[int(rng.integers(len(speakers)))]}"
        spec = kws_stream_data.StreamSpec(text, "kw", i, v, (v,) * 4, seconds,
                                          (1000 + seed, len(voices), len(text), i), ("clean",))
        r = kws_stream_data.render(spec, pools)
        out.append({"feats": r["feats"]["clean"], "voice": v,
                    "truth": [(kws_stream_eval.KEYWORDS.index(w), a, b)
                              for w, a, b in r["truth"]]})
    return out


def keyword_peaks(model: LMUFormerWeights, streams: list[np.ndarray],
                  truth: list[list[tuple[int, float, float]]], smoothing: int = 20
                  ) -> np.ndarray:
    """Per keyword said, the peak of its own smoothed posterior inside its hit window."""
    peaks = []
    for z, tr in zip(kws_stream_eval.float_logits(model, streams), truth):
        kw = kws_stream_eval.keyword_posteriors(z, smoothing)
        for w, a, b in tr:
            lo = max(int(round((a + 0.1) * 100)) - 1, 0)
            hi = min(int(round((b + 1.0) * 100)), len(kw))
            peaks.append(float(kw[lo:hi, w].max()) if hi > lo else 0.0)
    return np.array(peaks)


def shares(peaks: np.ndarray) -> dict[str, float]:
    return {f">{lv:g}": float(np.mean(peaks > lv)) if len(peaks) else float("nan")
            for lv in LEVELS}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except EdgeError as e:  # a missing checkpoint or cached set: one line, not a traceback
        raise SystemExit(f"kws_stream_fit: {e}") from None


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="checkpoints .npz")
    ap.add_argument("--pairs", nargs="+", default=["train:train", "train:val", "val:val"],
                    help="VOICES:TEXT splits of the fresh streams (train, val, test)")
    ap.add_argument("--streams", type=int, default=6, help="streams per row (5 min each)")
    ap.add_argument("--trained", help="a cached training folder: also score its first streams")
    ap.add_argument("--smoothing", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    if a.streams < 1 or a.smoothing < 1:
        raise SystemExit(f"--streams {a.streams} / --smoothing {a.smoothing}: give at least 1")
    models = [LMUFormerWeights.load(mp) for mp in a.models]  # refuse a bad path before rendering
    rows: dict[str, tuple[list[np.ndarray], list[list]]] = {}
    if a.trained:  # first: a missing set is refused before any rendering
        d = kws_stream_data.load(a.trained, "train", "kw", "mixed")
        feats = kws_stream_eval.stream_features(d)[:a.streams]
        truth: list[list] = [[] for _ in feats]
        for i, w, s0, s1 in zip(d["ev_stream"], d["ev_word"], d["ev_start"], d["ev_end"]):
            if int(i) < len(feats):
                truth[int(i)].append((int(w), float(s0), float(s1)))
        rows["trained (its own training streams)"] = (feats, truth)
    for pair in a.pairs:
        v, _, t = pair.partition(":")
        if v not in ("train", "val", "test") or t not in ("train", "val", "test"):
            raise SystemExit(f"--pairs {pair}: give VOICES:TEXT, each train, val or test")
    for pair in a.pairs:
        v, _, t = pair.partition(":")
        t0 = time.perf_counter()
        got = fresh_streams(v, t, a.streams, seed=a.seed)
        rows[f"{v} voices x {t} text"] = ([g["feats"] for g in got], [g["truth"] for g in got])
        print(f"rendered {pair}: {a.streams} streams, {time.perf_counter() - t0:.0f} s",
              flush=True)
    report = {}
    print(f"{'model':32s} {'streams':36s} {'keywords':>8s} " + " ".join(
        f"{'>' + format(lv, 'g'):>6s}" for lv in LEVELS))
    for mp, model in zip(a.models, models):
        for name, (feats, truth) in rows.items():
            pk = keyword_peaks(model, feats, truth, a.smoothing)
            s = shares(pk)
            report.setdefault(mp, {})[name] = {"keywords": len(pk), **s}
            print(f"{Path(mp).stem[:32]:32s} {name:36s} {len(pk):8d} " + " ".join(
                f"{v * 100:5.1f}%" for v in s.values()), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
