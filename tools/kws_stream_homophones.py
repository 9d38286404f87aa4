"""False alarms on keyword-free sentences that hold an exact homophone of a keyword.

espeak-ng says "know" exactly as "no" (n'oU) and "write" exactly as "right" (r'aIt); the
keyword-free test text (Debian ``fortunes``, tools/kws_stream_data.py) holds such sentences,
and a detector that only hears sound cannot tell them apart. This reads every test-split
keyword-free sentence with "know" or "write", and as many other keyword-free test sentences
(seeded draw), by four held-out-style voices with 0.5 s pauses, streams each set through the
float model and ``KeywordDetector`` at a stored operating point (or ``--threshold``), and
prints the events per set, by keyword.

Usage::

    python tools/kws_stream_homophones.py samples/kws/models/kws_lmuformer_stream.npz \\
        --point 10 --threshold 0.65
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kws_stream_data as sd
import kws_stream_eval as ev

from sdk.cli.kws_demo import point_threshold
from sdk.models import LMUFormerWeights
from sdk.runtime.keyword_spotter import speak_sentence

HOMOPHONE = re.compile(r"\b(" + "|".join(sd.HOMOPHONES) + r")\b")
RELATED = re.compile(r"\b(" + "|".join([*sd.HOMOPHONES, "knows", "known", "writes"]) + r")\b")
VOICES = ("en-us+f2", "en-us+m8", "en+john", "en-us+rob")


def read_stream(sentences: list[str]) -> np.ndarray:
    """The sentences read one after another (voices in turn, 0.5 s pauses) → int16 log-mel."""
    parts = []
    for i, s in enumerate(sentences):
        audio, _ = speak_sentence(s, VOICES[i % len(VOICES)], keywords=())
        parts += [np.zeros(8000), audio]
    x = np.concatenate(parts + [np.zeros(8000)])
    return sd.fast_logmel(np.clip(np.rint(x * 16384.0), -32768, 32767).astype(np.int16))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="checkpoint .npz with stored operating points")
    ap.add_argument("--point", default="1", help="stored operating point (false alarms/h)")
    ap.add_argument("--threshold", type=float, help="override the point's threshold")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    model = LMUFormerWeights.load(a.model)
    meta = json.loads(Path(a.model).with_suffix(".json").read_text())
    points = ev.stored_points(meta)
    if a.point not in points:
        ap.error(f"{a.model} stores no operating point {a.point!r}; it has {sorted(points)} "
                 "(tools/kws_stream_eval.py --choose)")
    point = dict(points[a.point])
    if a.threshold is not None:
        point.pop("thresholds", None)
        point["threshold"] = a.threshold
    th = point_threshold(point)
    pool = sd.fortune_sentences()["test"]
    homo = [s for s in pool if HOMOPHONE.search(s)]
    others = [s for s in pool if not RELATED.search(s)]
    rng = np.random.default_rng(a.seed)
    others = [others[i] for i in rng.choice(len(others), len(homo), replace=False)]
    print(f"threshold {th}, smoothing {point['smoothing_hops']} hops; "
          f"{len(homo)} of {len(pool)} keyword-free test sentences hold 'know' or 'write'")
    for name, sents in (("with know/write", homo), ("without", others)):
        feats = read_stream(sents)
        z = ev.float_logits(model, [feats])[0]
        kw = ev.keyword_posteriors(z, point["smoothing_hops"])
        per = np.array([th[k] for k in ev.KEYWORDS]) if isinstance(th, dict) else \
            np.full(len(ev.KEYWORDS), th)
        words = [ev.KEYWORDS[k] for k, _ in ev.detect(*ev.over_thresholds(kw, per), 0.0, 100)]
        by = ", ".join(f"{w} {words.count(w)}" for w in sorted(set(words)))
        print(f"{name:16s}: {len(sents)} sentences, {len(feats) / 6000:.1f} min, "
              f"{len(words)} false alarms ({by or 'none'})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
