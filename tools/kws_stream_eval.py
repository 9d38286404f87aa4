"""Keyword spotting on continuous speech: recall and false alarms per hour across thresholds.

The model streams every held-out stream of tools/kws_stream_data.py from the zero state, hop
by hop, never reset (float: the NumPy step of sdk.models.lmuformer; integer: the step graph
compiled by the SDK, calibrated on validation streams, run by ``StreamingSession`` with
integer state carried between hops; many streams side by side, the same bits as one by one).
A model with a stream head (``config.stream_head``, tools/train_kws.py ``--stream-head``) is
scored on that head (``stream_logits``), as the demo runs it.
Detection is exactly ``sdk.runtime.detection.KeywordDetector``: softmax, moving average over
``--smoothing`` hops, the best keyword's smoothed posterior ≥ threshold, refractory period.

Scoring (``sdk.runtime.keyword_spotter.score_events``): an event is a hit when it names a
keyword said in the stream and fires between 0.1 s after its start and 1 s after its end; any
other event is a false alarm. Recall is over the keyword streams; false alarms per hour are
counted on the keyword-free streams (hours of audio, pauses included), the figure wake-word
benchmarks quote. Sweeping the threshold gives the DET curve (``--plot FILE.png``). Of those
false alarms, the ones on exact homophones are also counted apart: "no" inside (or up to 1 s
after) a keyword-free sentence holding "know", "right" on "write", which espeak-ng says with
the keywords' phonemes (sentences replayed from the streams' seeds, cached;
``--no-homophone-count`` skips it).

Operating point: ``--choose`` (on the validation split) picks, for each false-alarm target of
``--target-fa-per-h`` (default 0.1 and 1 per hour), the smoothing window (``--smoothing``, one
or several values) and the lowest threshold whose false alarms per hour on every validation
condition are ≤ the target, the pair with the highest mean validation recall, and stores them
with the model (``stream_operating_points`` in ``<model>.json``, one per target;
``stream_operating_point``, the one the demo uses, is the first target's); on the test split
the stored points are reported, never re-tuned. ``--per-keyword`` also chooses, per target, one
threshold per keyword (KeywordDetector's per-keyword thresholds): greedily, the keyword whose
lower threshold buys the most validation hits per added false alarm, until every validation
curve is at the target (the choice counts bursts of each keyword's smoothed posterior; the
stored figures are the exact count, and the budget shrinks until that meets the target);
stored as ``"<target> per keyword"``, beside the single-threshold points; the demo's point
stays the first target's single threshold (per-keyword thresholds fitted on 10 h of
validation speech fell under the single-threshold DET curve on the test streams: see
samples/kws/models/README.md).

The logits of each (checkpoint, stream file, precision) are cached under
``<data>/<config>/logits/`` (keyed by the checkpoint's bytes; ``--no-cache`` skips the cache), so
trying other smoothing windows, or reporting the test split again at new stored points, costs
the sweep only.

Usage::

    python tools/kws_stream_eval.py samples/kws/models/kws_lmuformer_nonspiking.npz \\
        --split val --choose
    python tools/kws_stream_eval.py samples/kws/models/kws_lmuformer_nonspiking.npz \\
        --split test --precision float int --plot det.png --json out.json
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
import kws_stream_data

from sdk.models import LMUFormerWeights, build_step_onnx, initial_state, lmuformer_step
from sdk.runtime.keyword_spotter import FEATURE_SCALE, SPEECH_COMMANDS_12

KEYWORDS = list(SPEECH_COMMANDS_12[:10])
HOP_S = 0.01
THRESHOLDS = np.unique(np.round(np.concatenate([
    np.linspace(0.05, 0.95, 19), 1.0 - np.logspace(-1.3, -6, 48)]), 8))


def stream_features(data: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Per stream, model input ``[T, n_mels]`` float32 (Q8 log2 / 256)."""
    off = data["offsets"]
    return [data["feats"][off[i]:off[i + 1]] for i in range(len(off) - 1)]


def float_logits(model: LMUFormerWeights, streams: list[np.ndarray], batch: int = 64
                 ) -> list[np.ndarray]:
    """Frame logits of each stream, streams stepped side by side (NumPy float32 step); the
    stream head's (``stream_logits``) when the model has one."""
    head = "stream" if model.config.stream_head else "clip"
    out = []
    for b0 in range(0, len(streams), batch):
        group = streams[b0:b0 + batch]
        t_max = max(len(s) for s in group)
        x = np.zeros((t_max, len(group), group[0].shape[1]), np.float32)
        for j, s in enumerate(group):
            x[:len(s), j] = s.astype(np.float32) * np.float32(FEATURE_SCALE)
        state = initial_state(model.config, batch=len(group))
        rows = np.empty((t_max, len(group), model.config.n_classes), np.float32)
        for t in range(t_max):
            rows[t], state, _ = lmuformer_step(model, x[t], state, head)
        out += [rows[:len(s), j] for j, s in enumerate(group)]
    return out


def compile_integer(model: LMUFormerWeights, calib_streams: list[np.ndarray],
                    hops: int = 6000):
    """The step graph compiled to integers, calibrated on every feed the float model sees
    while streaming the first ``hops`` hops of each calibration stream."""
    from sdk.compile import compile_model
    from sdk.models import step_calibration_data

    t = min(hops, min(len(s) for s in calib_streams))
    feats = np.stack([s[:t] for s in calib_streams]).astype(np.float32) * np.float32(
        FEATURE_SCALE)
    feeds = step_calibration_data(model, feats)
    return compile_model(build_step_onnx(model), feeds)


def logit_cache_path(folder: Path, model_path: str, name: str, precision: str,
                     streams: list[np.ndarray]) -> Path:
    """Where the logits of ``model_path`` on the streams of file ``name`` are cached: keyed by
    the checkpoint's bytes, the precision and the streams' lengths (the integer model is
    calibrated on the first validation keyword streams, fixed by the same folder)."""
    import hashlib

    h = hashlib.sha256(Path(model_path).read_bytes())
    h.update(f"{precision} {name} {[len(x) for x in streams]}".encode())
    return folder / "logits" / f"{name}.{precision}.{h.hexdigest()[:16]}.npz"


def save_logits(path: Path, logits: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, z=np.concatenate(logits), offsets=np.cumsum([0] + [len(x) for x in logits]))
    tmp.rename(path)


def load_logits(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        z, off = f["z"], f["offsets"]
    return [z[off[i]:off[i + 1]] for i in range(len(off) - 1)]


def integer_logits(bundle, streams: list[np.ndarray], batch: int = 64) -> list[np.ndarray]:
    """Dequantized frame logits of the integer model, ``batch`` streams side by side: the
    bundle's graph with its batch dimension widened (every kernel works row by row, so each
    stream gets the bits it would get alone; tests/streaming checks this); the stream
    head's (``stream_logits``) when the graph has one."""
    from sdk.runtime.streaming import StreamingSession

    out = []
    sessions: dict[int, StreamingSession] = {}
    for b0 in range(0, len(streams), batch):
        group = streams[b0:b0 + batch]
        n = len(group)
        if n not in sessions:
            g = bundle.graph.copy()
            for t in g.tensors.values():
                if t.data is None and t.shape is not None and len(t.shape) >= 2 \
                        and t.shape[0] == 1:
                    t.shape = (n, *t.shape[1:])
            sessions[n] = StreamingSession(g, fast=True)
        sess = sessions[n]
        sess.reset()
        t_max = max(len(s) for s in group)
        x = np.zeros((t_max, n, group[0].shape[1]), np.float32)
        for j, s in enumerate(group):
            x[:len(s), j] = s.astype(np.float32) * np.float32(FEATURE_SCALE)
        outs = sess.steps(x)
        rows = outs["stream_logits"] if "stream_logits" in outs else outs["logits"]
        out += [np.asarray(rows[:len(s), j], np.float32) for j, s in enumerate(group)]
    return out


def keyword_posteriors(logits: np.ndarray, smoothing: int, logit_window: int = 0
                       ) -> np.ndarray:
    """Per hop every keyword's moving-average posterior ``[T, 10]`` (float64, as
    KeywordDetector).

    ``logit_window`` > 0: first average the logits over the last that many hops (the clip
    models are trained on the mean logit of a 1 s clip), then softmax and smooth."""
    z = logits.astype(np.float64)
    if logit_window > 0:
        cz = np.cumsum(np.vstack([np.zeros((1, z.shape[1])), z]), axis=0)
        lo = np.maximum(np.arange(1, len(z) + 1) - logit_window, 0)
        z = (cz[1:] - cz[lo]) / (np.arange(1, len(z) + 1) - lo)[:, None]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    c = np.cumsum(np.vstack([np.zeros((1, p.shape[1])), p]), axis=0)
    lo = np.maximum(np.arange(1, len(p) + 1) - smoothing, 0)
    return ((c[1:] - c[lo]) / smoothing)[:, :len(KEYWORDS)]


def smoothed_keyword_scores(logits: np.ndarray, smoothing: int, logit_window: int = 0
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Per hop the best keyword's moving-average posterior and its index (KeywordDetector
    with one threshold for every keyword)."""
    return best_keyword(keyword_posteriors(logits, smoothing, logit_window))


def best_keyword(kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per hop the largest of :func:`keyword_posteriors` and its keyword index."""
    best = kw.argmax(axis=1)
    return kw[np.arange(len(kw)), best], best.astype(np.int8)


def over_thresholds(kw: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KeywordDetector with one threshold per keyword: per hop the best score among the
    keywords at or over their own threshold and its index; −1 where none is (so
    :func:`detect` at threshold 0 fires as the detector does)."""
    over = np.where(kw >= np.asarray(thresholds, np.float64)[None, :], kw, -1.0)
    best = over.argmax(axis=1)
    return over[np.arange(len(over)), best], best.astype(np.int8)


def detect(score: np.ndarray, best: np.ndarray, threshold: float, refractory_hops: int
           ) -> list[tuple[int, float]]:
    """Events ``(keyword index, time s)`` as KeywordDetector fires them (hop h ends at h·10 ms)."""
    events = []
    last = -(1 << 62)
    for i in np.nonzero(score >= threshold)[0]:
        hop = int(i) + 1
        if hop - last >= refractory_hops:
            last = hop
            events.append((int(best[i]), hop * HOP_S))
    return events


def score_stream(events: list[tuple[int, float]], truth: list[tuple[int, float, float]],
                 early_s: float = 0.1, late_s: float = 1.0) -> tuple[int, int]:
    """(hits, false alarms) as sdk.runtime.keyword_spotter.score_events counts them."""
    hit: set[int] = set()
    fa = 0
    for w, t in events:
        k = next((k for k, (kw, a, b) in enumerate(truth) if k not in hit and kw == w
                  and a + early_s <= t <= b + late_s), None)
        if k is None:
            fa += 1
        else:
            hit.add(k)
    return len(hit), fa


def homophone_alarms(events: list[tuple[int, float]], spans: list[tuple[int, float, float]],
                     late_s: float = 1.0) -> int:
    """How many of a keyword-free stream's events name the keyword a sentence's homophone
    sounds like (``spans``: ``(keyword index, start s, end s)``, e.g. "no" in a sentence holding
    "know") and fire inside that sentence or up to ``late_s`` after it."""
    return sum(any(w == k and a <= t <= b + late_s for k, a, b in spans) for w, t in events)


def count(events_kw: list[list[tuple[int, float]]], events_free: list[list[tuple[int, float]]],
          truth: list[list], hours_free: float, hours_kw: float,
          homophones: list[list[tuple[int, float, float]]] | None = None) -> dict:
    """One DET point from the events of every keyword stream and keyword-free stream."""
    n_kw = sum(len(t) for t in truth)
    hits = fa_kw = 0
    for ev, tr in zip(events_kw, truth):
        h, f = score_stream(ev, tr)
        hits += h
        fa_kw += f
    fa_free = n_homo = 0
    for i, ev in enumerate(events_free):
        fa_free += len(ev)
        if homophones is not None and ev and homophones[i]:
            n_homo += homophone_alarms(ev, homophones[i])
    return {"recall": hits / max(n_kw, 1), "hits": hits, "keywords": n_kw,
            "false_alarms_free": fa_free, "fa_per_hour": fa_free / hours_free,
            "false_alarms_kw_streams": fa_kw, "fa_per_hour_kw_streams": fa_kw / hours_kw,
            **({"false_alarms_homophone": n_homo,
                "fa_per_hour_acoustic": (fa_free - n_homo) / hours_free}
               if homophones is not None else {})}


def sweep(scores: dict[str, list], truth: list[list], hours_free: float, hours_kw: float,
          refractory_hops: int, thresholds: np.ndarray = THRESHOLDS,
          homophones: list[list[tuple[int, float, float]]] | None = None) -> list[dict]:
    """Recall (kw streams), false alarms per hour (free streams), per threshold.

    ``homophones`` (per free stream, see :func:`homophone_alarms`): also count the false alarms
    that are a keyword's exact homophone ("no" on "know", "right" on "write"), and the rate
    without them (``fa_per_hour_acoustic``)."""
    return [{"threshold": float(th), **count(
        [detect(s, b, th, refractory_hops) for s, b in scores["kw"]],
        [detect(s, b, th, refractory_hops) for s, b in scores["free"]],
        truth, hours_free, hours_kw, homophones)} for th in thresholds]


def at_thresholds(kw_scores: dict[str, list[np.ndarray]], thresholds: np.ndarray,
                  truth: list[list], hours_free: float, hours_kw: float, refractory_hops: int,
                  homophones: list[list[tuple[int, float, float]]] | None = None) -> dict:
    """The DET point of one threshold per keyword (``kw_scores``: per stream
    :func:`keyword_posteriors`), counted exactly as :func:`sweep` counts one threshold."""
    ev = {k: [detect(*over_thresholds(x, thresholds), 0.0, refractory_hops) for x in v]
          for k, v in kw_scores.items()}
    return {"thresholds": dict(zip(KEYWORDS, map(float, thresholds))),
            **count(ev["kw"], ev["free"], truth, hours_free, hours_kw, homophones)}


def at_threshold(rows: list[dict], th: float) -> dict:
    """The sweep row of the threshold closest to ``th`` from above (``th`` is on the grid
    when it was chosen by ``--choose``)."""
    ok = [r for r in rows if r["threshold"] >= th - 1e-9]
    return ok[0] if ok else rows[-1]


def best_at_fa(rows: list[dict], fa_per_h: float, key: str = "fa_per_hour") -> dict | None:
    """The highest-recall row with false alarms per hour (``key``) ≤ ``fa_per_h``."""
    ok = [r for r in rows if r[key] <= fa_per_h + 1e-12]
    return max(ok, key=lambda r: (r["recall"], -r["threshold"])) if ok else None


def plot(curves: dict[str, list[dict]], path: str, title: str,
         marks: dict[str, list[tuple[str, dict]]] | None = None) -> None:
    """DET curves (miss rate against false alarms per hour); ``marks``: per curve name, points
    off the single-threshold curve (``(label, row)``, e.g. stored per-keyword thresholds)
    drawn as crosses in the curve's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for name, rows in curves.items():
        fa = [max(r["fa_per_hour"], 1e-3) for r in rows]
        miss = [100.0 * (1 - r["recall"]) for r in rows]
        line, = ax.plot(fa, miss, marker=".", label=name)
        for label, r in (marks or {}).get(name, []):
            ax.plot([max(r["fa_per_hour"], 1e-3)], [100.0 * (1 - r["recall"])], marker="x",
                    ms=9, mew=2, ls="none", color=line.get_color())
            ax.annotate(label, (max(r["fa_per_hour"], 1e-3), 100.0 * (1 - r["recall"])),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axvline(0.1, color="grey", ls="--", lw=0.8)
    ax.axhline(5.0, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour of keyword-free speech (0 drawn at 1e-3)")
    ax.set_ylabel("miss rate % (100 − recall)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="checkpoint .npz (tools/train_kws.py)")
    ap.add_argument("--data", default="data/kws_stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--conditions", nargs="+", default=["clean", "snr10"])
    ap.add_argument("--precision", nargs="+", default=["float", "int"],
                    choices=["float", "int"])
    ap.add_argument("--smoothing", type=int, nargs="+", default=None,
                    help="moving-average hops (default: the stored operating point's, else "
                         "30); with --choose, several values are tried on validation")
    ap.add_argument("--refractory", type=float, default=1.0)
    ap.add_argument("--logit-window", type=int, default=0,
                    help="average the logits over this many hops before the softmax (0: off)")
    ap.add_argument("--max-free-hours", type=float, default=None,
                    help="use only this many hours of keyword-free streams (quick runs)")
    ap.add_argument("--partial", action="store_true",
                    help="use the streams generated so far while a split is still being made")
    ap.add_argument("--choose", action="store_true",
                    help="choose the operating point here (val split) and store it with the "
                         "model")
    ap.add_argument("--per-keyword", action="store_true",
                    help="with --choose, also choose one threshold per keyword for each "
                         "target (stored as '<target> per keyword', beside the "
                         "single-threshold points, which the demo keeps using)")
    ap.add_argument("--target-fa-per-h", type=float, nargs="+", default=[0.1, 1.0],
                    help="false alarms per hour of the operating points (--choose stores one "
                         "per target; the first is the demo's)")
    ap.add_argument("--no-cache", action="store_true",
                    help="do not read or write the model's logits cached beside the streams "
                         "(<data>/<config>/logits/, keyed by the checkpoint's bytes)")
    ap.add_argument("--no-homophone-count", action="store_true",
                    help="skip the count of false alarms on exact homophones ('know', 'write'; "
                         "it replays the keyword-free streams' sentences once, cached)")
    ap.add_argument("--plot", help="write the DET curve(s) to this PNG")
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args(argv)
    if a.choose and a.split != "val":
        ap.error("--choose picks the operating point on validation streams; use --split val")
    if a.per_keyword and not a.choose:
        ap.error("--per-keyword is a way to --choose the operating points (on --split val); "
                 "stored per-keyword points are reported without it")
    model = LMUFormerWeights.load(a.model)
    meta_path = Path(a.model).with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    stored = stored_points(meta)
    if a.smoothing is None:
        grid = sorted({p["smoothing_hops"] for p in stored.values()}) or [30]
    else:
        grid = sorted(set(a.smoothing))
    if not a.choose and a.smoothing is not None and len(grid) > 1:
        ap.error("several --smoothing values are for --choose (validation) only")
    refr = int(np.ceil(a.refractory / HOP_S - 1e-9))
    cfg = kws_stream_data.StreamConfig(seed=a.seed)
    folder = Path(a.data) / cfg.key()
    report: dict = {"model": a.model, "split": a.split, "smoothing_grid": grid,
                    "logit_window": a.logit_window,
                    "refractory_s": a.refractory, "curves": {}, "summary": {}}
    bundle = None
    free_hours: dict[str, float] = {}
    # curves[smoothing][name] = sweep rows
    curves: dict[int, dict[str, list[dict]]] = {sm: {} for sm in grid}
    kept: dict[str, tuple] = {}  # per curve: logits, truth, hours free / kw, homophones
    for cond in a.conditions:
        data = {k: kws_stream_data.load(folder, a.split, k, cond, partial=a.partial)
                for k in ("kw", "free")}
        streams = {k: stream_features(d) for k, d in data.items()}
        if a.max_free_hours is not None:
            keep, total = [], 0.0
            for s in streams["free"]:
                if total >= a.max_free_hours:
                    break
                keep.append(s)
                total += len(s) * HOP_S / 3600
            streams["free"] = keep
        hours = {k: sum(len(s) for s in v) * HOP_S / 3600 for k, v in streams.items()}
        free_hours[cond] = hours["free"]
        homo = None
        if not a.no_homophone_count:
            try:
                sp = kws_stream_data.spans(folder, a.split, "free")
            except FileNotFoundError:  # streams not made by kws_stream_data: no specs
                print(f"{folder} has no meta.json to replay its sentences from: false alarms "
                      "on homophones are not counted apart")
                a.no_homophone_count = True
            else:
                homo = [[] for _ in streams["free"]]
                for sid, word, s0, s1 in kws_stream_data.homophone_spans(sp):
                    if sid < len(homo):
                        homo[sid].append((KEYWORDS.index(word), s0, s1))
        d = data["kw"]
        truth = [[] for _ in streams["kw"]]
        for i, w, s0, s1 in zip(d["ev_stream"], d["ev_word"], d["ev_start"], d["ev_end"]):
            truth[int(i)].append((int(w), float(s0), float(s1)))
        for prec in a.precision:
            t0 = time.perf_counter()
            logit = {}
            for k, v in streams.items():
                cache = None if a.no_cache else logit_cache_path(
                    folder, a.model, f"{a.split}_{k}_{cond}", prec, v)
                if cache is not None and cache.is_file():
                    logit[k] = load_logits(cache)
                    continue
                if prec == "float":
                    logit[k] = float_logits(model, v)
                else:
                    if bundle is None:
                        cal = kws_stream_data.load(folder, "val", "kw", "snr10")
                        bundle = compile_integer(model, stream_features(cal)[:8])
                    logit[k] = integer_logits(bundle, v)
                if cache is not None:
                    save_logits(cache, logit[k])
            run_s = time.perf_counter() - t0
            name = f"{prec} {cond}"
            if a.per_keyword:
                kept[name] = (logit, truth, hours["free"], hours["kw"], homo)
            for sm in grid:
                post = {k: [keyword_posteriors(z, sm, a.logit_window) for z in v]
                        for k, v in logit.items()}
                scores = {k: [best_keyword(x) for x in v] for k, v in post.items()}
                rows = sweep(scores, truth, hours["free"], hours["kw"], refr,
                             homophones=homo)
                curves[sm][name] = rows
                summ = {"hours_free": hours["free"], "hours_kw": hours["kw"],
                        "keywords": rows[0]["keywords"], "model_seconds": run_s,
                        "smoothing_hops": sm, "best_on_this_split": {}, "at_stored": {}}
                msg = (f"{name:12s} smoothing {sm:3d}: {hours['free']:.2f} h keyword-free, "
                       f"{rows[0]['keywords']} keywords in {hours['kw']:.2f} h; model "
                       f"{run_s:.0f} s")
                for target in a.target_fa_per_h:
                    best = best_at_fa(rows, target)
                    summ["best_on_this_split"][str(target)] = best
                    msg += (f"\n{'':14s}best recall with ≤ {target:g} FA/h (threshold chosen "
                            "ON THIS SPLIT, an upper bound): " + (
                                f"{best['recall'] * 100:.1f}% at {best['fa_per_hour']:.3f} "
                                f"FA/h (threshold {best['threshold']:.6f})" if best else "none"))
                    if homo is not None:
                        ac = best_at_fa(rows, target, "fa_per_hour_acoustic")
                        summ.setdefault("best_on_this_split_acoustic", {})[str(target)] = ac
                        msg += (f"\n{'':14s}  not counting 'no' on 'know', 'right' on 'write': "
                                + (f"{ac['recall'] * 100:.1f}% at "
                                   f"{ac['fa_per_hour_acoustic']:.3f} FA/h (threshold "
                                   f"{ac['threshold']:.6f})" if ac else "none"))
                if not a.choose:
                    for key, point in stored.items():
                        if point["smoothing_hops"] != sm:
                            continue
                        if "thresholds" in point:
                            th = np.array([point["thresholds"][k] for k in KEYWORDS])
                            r = at_thresholds(post, th, truth, hours["free"], hours["kw"], refr,
                                              homo)
                            said = "per-keyword thresholds " + " ".join(
                                f"{k} {v:.6g}" for k, v in point["thresholds"].items())
                        else:
                            r = at_threshold(rows, point["threshold"])
                            said = f"threshold {point['threshold']:.6f}"
                        summ["at_stored"][key] = r
                        msg += (f"\n{'':14s}stored operating point ≤ {key.split()[0]} FA/h "
                                f"({said}, "
                                f"smoothing {sm}, from validation): "
                                f"recall {r['recall'] * 100:.1f}% ({r['hits']}/{r['keywords']}),"
                                f" {r['false_alarms_free']} false alarms in {hours['free']:.2f}"
                                f" h = {r['fa_per_hour']:.3f}/h (keyword streams: "
                                f"{r['fa_per_hour_kw_streams']:.2f}/h)"
                                + (f"; {r['false_alarms_homophone']} of them 'no'/'right' on "
                                   "'know'/'write'" if homo is not None else ""))
                report["summary"][f"{name} s{sm}"] = summ
                del post, scores
                print(msg, flush=True)
    report["curves"] = {f"{n} s{sm}": c for sm, cs in curves.items() for n, c in cs.items()}
    for sm, cs in curves.items():
        print(f"\nsmoothing {sm}\nthreshold  " + "  ".join(f"{n:>22s}" for n in cs))
        for i, th in enumerate(THRESHOLDS):
            if i % 3 and i != len(THRESHOLDS) - 1:
                continue
            print(f"{th:9.4f}  " + "  ".join(
                f"{c[i]['recall'] * 100:6.1f}% {c[i]['fa_per_hour']:8.2f} FA/h" for c in
                cs.values()))
    if a.choose:
        points = choose_points(curves, a.target_fa_per_h, a.refractory)
        if a.per_keyword:
            points.update(choose_per_keyword_points(kept, grid, a.target_fa_per_h,
                                                    a.refractory))
        if not points:
            print(f"no threshold keeps every validation curve ≤ {a.target_fa_per_h} FA/h; "
                  "nothing stored")
            return 1
        for point in points.values():  # how fine the false-alarm rates it was chosen on are
            point["validation_hours_free"] = {c: round(h, 3) for c, h in free_hours.items()}
        meta["stream_operating_points"] = points
        first = f"{a.target_fa_per_h[0]:g}"
        meta["stream_operating_point"] = points.get(first) or points.get(
            f"{first} per keyword") or next(iter(points.values()))
        meta_path.write_text(json.dumps(meta, indent=1))
        report["operating_points"] = points
        for key, point in points.items():
            said = ("per-keyword thresholds " + " ".join(
                f"{k} {v:.6g}" for k, v in point["thresholds"].items()) if "thresholds" in point
                else f"threshold {point['threshold']:.6f}")
            print(f"operating point ≤ {key.split()[0]} FA/h"
                  f"{' (per keyword)' if 'thresholds' in point else ''} stored in {meta_path}: "
                  f"{said}, smoothing "
                  f"{point['smoothing_hops']}: "
                  + ", ".join(f"{n} recall {v['recall'] * 100:.1f}% / "
                              f"{v['fa_per_hour']:.3f} FA/h"
                              for n, v in point["validation"].items()))
        missing = [t for t in a.target_fa_per_h if f"{t:g}" not in points]
        if missing:
            print(f"no operating point for ≤ {missing} FA/h (no threshold keeps every "
                  "validation curve under it)")
    if a.plot:
        sm0 = (next(iter(stored.values()))["smoothing_hops"] if stored and not a.choose
               else grid[0])
        marks = {}
        for key, s_ in report["summary"].items():
            name, sm_ = key.rsplit(" s", 1)
            for pk, r in s_.get("at_stored", {}).items():
                if "thresholds" in r:  # per-keyword points are off the one-threshold curve
                    marks.setdefault(name, []).append(
                        (f"≤{pk.split()[0]}/h per kw (s{sm_})", r))
        plot(curves[sm0] if sm0 in curves else curves[grid[0]], a.plot,
             f"{Path(a.model).name}, {a.split} streams (held-out voices), smoothing {sm0}"
             + ("; ×: per-keyword thresholds" if marks else ""), marks)
        print(f"DET curve: {a.plot}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


def stored_points(meta: dict) -> dict[str, dict]:
    """The operating points stored with a model, by false-alarm target (``"0.1"``, ``"1"``);
    a model with only ``stream_operating_point`` (one point) gives that one."""
    points = meta.get("stream_operating_points")
    if points:
        return dict(points)
    one = meta.get("stream_operating_point")
    if one:
        return {f"{one.get('target_fa_per_hour', 0.1):g}": {"smoothing_hops": 30, **one}}
    return {}


def choose_points(curves: dict[int, dict[str, list[dict]]], targets: list[float],
                  refractory_s: float) -> dict[str, dict]:
    """Per false-alarm target: over every smoothing window, the lowest threshold of the grid
    with every validation curve at or under the target; of those, the (smoothing, threshold)
    with the highest mean validation recall (ties: the smaller window)."""
    points: dict[str, dict] = {}
    for target in targets:
        best = None
        for sm in sorted(curves):
            cs = curves[sm]
            for th_i, th in enumerate(THRESHOLDS):
                if all(c[th_i]["fa_per_hour"] <= target for c in cs.values()):
                    mean = float(np.mean([c[th_i]["recall"] for c in cs.values()]))
                    if best is None or mean > best[0] + 1e-12:
                        best = (mean, sm, th_i, th)
                    break
        if best is None:
            continue
        _, sm, th_i, th = best
        cs = curves[sm]
        points[f"{target:g}"] = {
            "threshold": float(th), "smoothing_hops": int(sm), "refractory_s": refractory_s,
            "target_fa_per_hour": target,
            "chosen_on": f"validation streams ({', '.join(cs)}), smoothing window and lowest "
                         f"threshold with every curve at or under {target:g} FA/h, best mean "
                         "recall",
            "validation": {n: {"recall": c[th_i]["recall"],
                               "fa_per_hour": c[th_i]["fa_per_hour"]} for n, c in cs.items()}}
    return points


#: the lowest per-keyword threshold :func:`choose_per_keyword` considers (its false-alarm
#: counts are bursts of hops over this)
PER_KEYWORD_FLOOR = 0.5


def keyword_stats(kw_scores: dict[str, list[np.ndarray]], truth: list[list],
                  refractory_hops: int, floor: float = PER_KEYWORD_FLOOR
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per keyword, each said keyword's best smoothed posterior inside its hit window (the
    highest threshold that finds it, when no other keyword's event gets in the way), and
    each false-alarm burst's peak on the keyword-free streams (hops at or over ``floor``, a
    gap of at least the refractory period starts a new burst: at a threshold under the
    peak, the one event it raises when the refractory period covers it)."""
    peaks: list[list[float]] = [[] for _ in KEYWORDS]
    for x, tr in zip(kw_scores["kw"], truth):
        for w, a, b in tr:
            lo = max(int(np.ceil((a + 0.1) / HOP_S - 1e-9)) - 1, 0)
            hi = min(int(np.floor((b + 1.0) / HOP_S + 1e-9)), len(x))
            peaks[w].append(float(x[lo:hi, w].max()) if hi > lo else 0.0)
    bursts: list[list[np.ndarray]] = [[] for _ in KEYWORDS]
    for x in kw_scores["free"]:
        for k in range(len(KEYWORDS)):
            idx = np.nonzero(x[:, k] >= floor)[0]
            if len(idx):
                starts = np.concatenate([[0], np.nonzero(np.diff(idx) >= refractory_hops)[0]
                                         + 1])
                bursts[k].append(np.maximum.reduceat(x[idx, k], starts))
    return ([np.array(v) for v in peaks],
            [np.concatenate(v) if v else np.zeros(0) for v in bursts])


def choose_per_keyword(stats: dict[str, tuple[list[np.ndarray], list[np.ndarray], float]],
                       budget: float, floor: float = PER_KEYWORD_FLOOR) -> np.ndarray:
    """One threshold per keyword (from :data:`THRESHOLDS` ≥ ``floor``, or 1.0: off) for the
    most keywords found (mean over the curves) with every curve's false alarms per hour at
    most ``budget``: greedily lower the threshold that buys the most hits per false alarm
    (``stats``: per curve :func:`keyword_stats` and the curve's keyword-free hours)."""
    grid = np.concatenate([THRESHOLDS[THRESHOLDS >= floor], [1.0]])
    names = list(stats)
    n_k, n_g = len(KEYWORDS), len(grid)
    hits = np.zeros((len(names), n_k, n_g))
    fa = np.zeros((len(names), n_k, n_g))
    for c, n in enumerate(names):
        peaks, bursts, hours = stats[n]
        for k in range(n_k):
            hits[c, k] = (peaks[k][None, :] >= grid[:, None]).sum(axis=1)
            fa[c, k] = (bursts[k][None, :] >= grid[:, None]).sum(axis=1) / hours
    idx = np.full(n_k, n_g - 1)
    while True:
        tot = fa[:, np.arange(n_k), idx].sum(axis=1)
        best = None
        for k in range(n_k):
            for j in range(idx[k] - 1, -1, -1):
                new = tot - fa[:, k, idx[k]] + fa[:, k, j]
                if new.max() > budget + 1e-12:
                    break  # lower thresholds only add false alarms
                gain = float((hits[:, k, j] - hits[:, k, idx[k]]).mean())
                if gain <= 0:
                    continue
                rate = gain / (max(new.max() - tot.max(), 0.0) + 1e-6)
                if best is None or (rate, gain) > best[:2]:
                    best = (rate, gain, k, j)
        if best is None:
            return grid[idx]
        idx[best[2]] = best[3]


def choose_per_keyword_points(kept: dict[str, tuple], grid: list[int], targets: list[float],
                              refractory_s: float, log=print) -> dict[str, dict]:
    """Per false-alarm target and smoothing window, :func:`choose_per_keyword` on the
    validation curves, then the exact count (:func:`at_thresholds`); while a curve is over the
    target, the budget shrinks by a fifth and it chooses again. Of the windows, the one with
    the best mean validation recall. ``kept``: per curve ``(logits, truth, hours free, hours
    kw, homophones)``."""
    refr = int(np.ceil(refractory_s / HOP_S - 1e-9))
    found: dict[float, tuple] = {}
    for sm in grid:
        scores = {n: {k: [keyword_posteriors(z, sm) for z in v] for k, v in lg.items()}
                  for n, (lg, *_) in kept.items()}
        stats = {n: (*keyword_stats(scores[n], kept[n][1], refr), kept[n][2]) for n in kept}
        for target in targets:
            budget = target
            for _ in range(20):
                th = choose_per_keyword(stats, budget)
                rows = {n: at_thresholds(scores[n], th, kept[n][1], kept[n][2], kept[n][3],
                                         refr, kept[n][4]) for n in kept}
                if all(r["fa_per_hour"] <= target + 1e-12 for r in rows.values()):
                    break
                budget *= 0.8
            else:
                continue
            mean = float(np.mean([r["recall"] for r in rows.values()]))
            log(f"per-keyword thresholds ≤ {target:g} FA/h, smoothing {sm}: mean validation "
                f"recall {mean * 100:.1f}% (" + ", ".join(
                    f"{n} {r['recall'] * 100:.1f}% / {r['fa_per_hour']:.2f} FA/h"
                    for n, r in rows.items()) + ")")
            if target not in found or mean > found[target][0] + 1e-12:
                found[target] = (mean, sm, th, rows)
    points = {}
    for target in targets:
        if target not in found:
            continue
        _, sm, th, rows = found[target]
        points[f"{target:g} per keyword"] = {
            "thresholds": dict(zip(KEYWORDS, map(float, th))), "smoothing_hops": int(sm),
            "refractory_s": refractory_s, "target_fa_per_hour": target,
            "chosen_on": f"validation streams ({', '.join(rows)}), smoothing window and one "
                         f"threshold per keyword with every curve at or under {target:g} FA/h, "
                         "best mean recall",
            "validation": {n: {"recall": r["recall"], "fa_per_hour": r["fa_per_hour"]}
                           for n, r in rows.items()}}
    return points


if __name__ == "__main__":
    raise SystemExit(main())
