"""Threshold calibration: sweep the exit thresholds on held-out labelled data and pick the
operating point that saves the most compute within the accuracy the user gives up.

    bundle = compile_model("digits_exits.onnx", {"x": xs})
    bundle = add_exits(bundle, {"x": xs_heldout}, labels, max_accuracy_drop=0.5)

The integer graph runs once per calibration sample (every exit's integer logits); the sweep
itself is integer comparisons over the cached scores, so any number of candidate thresholds
costs nothing more to run. Accuracy is in percentage points; the drop is measured against
the same integer model without exits (its last exit) on the same samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sdk.errors import CalibrationError, InputError
from sdk.exits.plan import ExitPlan, ExitSpec, ancestors, integer_tensor, split_stages, subgraph
from sdk.exits.rules import (
    RULES,
    EntropyTable,
    argmax_int,
    patience_scores,
)
from sdk.ops.cost import graph_macs

#: at most this many candidate thresholds per exit; a full grid up to GRID_LIMIT points
MAX_CANDIDATES = 48
GRID_LIMIT = 20000
CRITERIA = ("consistency", "accuracy", "miou")
#: The segmentation (``miou``) criterion picks its threshold grid and a safety margin by
#: repeated K-fold cross-validation inside the calibration scenes (see
#: :func:`select_segmentation`): gate levels per exit tried, margins as fractions of the drop,
#: folds, repeats and the shuffle seed.
SEG_LEVELS = (4, 8, 16)
SEG_MARGINS = tuple(i / 10 for i in range(11))
SEG_FOLDS = 5
SEG_REPEATS = 3
SEG_SEED = 0


@dataclass
class OperatingPoint:
    thresholds: list[int]
    accuracy: float       #: percent, on the calibration set
    mean_macs: float
    exit_counts: list[int]

    def to_json(self) -> dict:
        return {"thresholds": self.thresholds, "accuracy": round(self.accuracy, 4),
                "mean_macs": round(self.mean_macs, 1), "exit_counts": self.exit_counts}


def check_drop(max_accuracy_drop: float) -> float:
    try:
        d = float(max_accuracy_drop)
    except (TypeError, ValueError):
        d = math.nan
    if not (math.isfinite(d) and 0 <= d <= 100):
        raise InputError(f"--max-accuracy-drop must be accuracy points in [0, 100] (e.g. 0.5), "
                         f"got {max_accuracy_drop!r}")
    return d


def exit_scores(rule: str, logits: Sequence[np.ndarray], specs: Sequence[ExitSpec],
                gate: np.ndarray | None = None, fast: bool = False) -> np.ndarray:
    """Integer scores [N, K-1] of the K-1 early exits under ``rule`` (NumPy spec, or the
    Numba twins with ``fast``)."""
    if fast:
        from sdk.exits import fast as impl
    else:
        from sdk.exits import rules as impl
    k = len(logits) - 1
    if rule == "margin":
        cols = [impl.margin_scores(logits[i]) for i in range(k)]
    elif rule == "entropy":
        cols = [impl.entropy_scores(logits[i], specs[i].table) for i in range(k)]
    elif rule == "patience":
        am = np.stack([impl.argmax_int(q) for q in logits], 1)
        cols = [c for c in patience_scores(am)[:, :k].T]
    elif rule == "gate":
        if gate is None or gate.shape[1] < k:
            raise InputError(f"the gate rule needs a gating output with >= {k} columns")
        cols = [gate[:, i].astype(np.int64) for i in range(k)]
    else:
        raise InputError(f"unknown exit rule {rule!r}; choose one of {', '.join(RULES)}")
    return np.stack([np.asarray(c, np.int64) for c in cols], 1)


def _candidates(col: np.ndarray) -> np.ndarray:
    u = np.unique(col)
    if len(u) > MAX_CANDIDATES:
        u = np.unique(np.quantile(u, np.linspace(0, 1, MAX_CANDIDATES), method="lower"))
    return np.concatenate([u, [u[-1] + 1]]).astype(np.int64)  # last: never fires


def evaluate(scores: np.ndarray, correct: np.ndarray, cum_macs: Sequence[int],
             thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For threshold rows [G, K-1]: accuracy (%) [G], mean MACs [G], exit counts [G, K]."""
    s = scores[None].astype(np.int64)
    fire = s >= thresholds[:, None, :]
    hit = fire.any(axis=2)
    k_last = scores.shape[1]
    ex = np.where(hit, np.argmax(fire, axis=2), k_last)
    n = np.arange(scores.shape[0])[None]
    acc = correct[n, ex].mean(axis=1) * 100
    macs = np.asarray(cum_macs, np.float64)[ex].mean(axis=1)
    counts = np.stack([(ex == k).sum(axis=1) for k in range(k_last + 1)], 1)
    return acc, macs, counts


def sweep(rule: str, scores: np.ndarray, correct: np.ndarray, cum_macs: Sequence[int]
          ) -> list[OperatingPoint]:
    """Every candidate threshold setting's operating point (a full grid when small enough,
    else one shared quantile level per exit; patience: one shared patience)."""
    k = scores.shape[1]
    if rule == "patience":
        grid = np.array([[p] * k for p in range(1, k + 3)], np.int64)
    else:
        cands = [_candidates(scores[:, i]) for i in range(k)]
        if math.prod(len(c) for c in cands) <= GRID_LIMIT:
            grid = np.array(list(itertools.product(*cands)), np.int64)
        else:
            levels = np.linspace(0, 1, 4 * MAX_CANDIDATES + 1)
            grid = np.stack([np.concatenate([np.quantile(scores[:, i], levels,
                                                         method="lower"),
                                             [scores[:, i].max() + 1]])
                             for i in range(k)], 1).astype(np.int64)
    points = []
    for lo in range(0, len(grid), 512):
        acc, macs, counts = evaluate(scores, correct, cum_macs, grid[lo:lo + 512])
        points += [OperatingPoint([int(v) for v in g], float(a), float(m),
                                  [int(c) for c in cs])
                   for g, a, m, cs in zip(grid[lo:lo + 512], acc, macs, counts)]
    return points


def pareto(points: Sequence[OperatingPoint]) -> list[OperatingPoint]:
    """The accuracy–compute curve: cheapest first, each point more accurate than all cheaper."""
    out: list[OperatingPoint] = []
    for p in sorted(points, key=lambda p: (p.mean_macs, -p.accuracy)):
        if not out or p.accuracy > out[-1].accuracy + 1e-9:
            out.append(p)
    return out


def choose(points: Sequence[OperatingPoint], full_accuracy: float, full_macs: int,
           drop: float, n: int, unit: str = "MACs", consistency: bool = False
           ) -> OperatingPoint:
    """The point with the fewest mean MACs whose accuracy is within ``drop`` points of the
    model without exits; CalibrationError (one line, what was achievable) if it saves nothing.
    With ``consistency`` the points' "accuracy" is their agreement (%) with the model without
    exits and ``full_accuracy`` is 100."""
    ok = [p for p in points if p.accuracy >= full_accuracy - drop - 1e-9]
    best = min(ok, key=lambda p: (p.mean_macs, -p.accuracy)) if ok else None
    if best is not None and best.mean_macs < full_macs:
        return best
    saving = [p for p in points if p.mean_macs < full_macs]
    if not saving:
        raise CalibrationError(f"no exit threshold saves compute on this calibration set "
                               f"({n} samples): every setting costs at least the "
                               f"{full_macs} {unit} of the model without exits")
    need = min(saving, key=lambda p: (full_accuracy - p.accuracy, p.mean_macs))
    d = max(full_accuracy - need.accuracy, 0.0)
    what = ("accuracy points (as disagreement with the model without exits, which bounds "
            "the accuracy lost)" if consistency else "accuracy points")
    base = "" if consistency else f", {full_accuracy:.2f}% without exits"
    raise CalibrationError(
        f"no exit thresholds stay within {drop:g} {what} on this calibration set "
        f"({n} samples{base}, steps of {100 / n:.2f} points): "
        f"the smallest drop that saves compute is {d:.2f} points "
        f"({100 * (1 - need.mean_macs / full_macs):.1f}% fewer {unit}); pass "
        f"--max-accuracy-drop {math.ceil(d * 100) / 100:g} or more, or more calibration data")


def labels_from(arrays: Mapping[str, np.ndarray], n: int, dense: bool = False) -> np.ndarray:
    """The ``label`` (or ``labels``) array of a calibration set, checked: integers, one per
    sample (``dense``: one class map [H, W] per sample, the ``miou`` criterion)."""
    key = next((k for k in ("label", "labels") if k in arrays), None)
    if key is None:
        raise CalibrationError(f"the exit calibration set has no 'label' array (it holds "
                               f"{sorted(arrays)}); add the true class of each sample as "
                               "'label'")
    y = np.asarray(arrays[key])
    if dense:
        if y.dtype.kind not in "iu" or y.ndim < 2 or len(y) != n:
            raise CalibrationError(f"exit calibration '{key}' must be {n} integer class maps "
                                   f"[N, H, W] for the miou criterion, got {y.dtype} "
                                   f"{list(y.shape)}")
        return y.astype(np.int64)
    if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != n:
        raise CalibrationError(f"exit calibration '{key}' must be {n} integer class ids "
                               f"(one per sample), got {y.dtype} {list(y.shape)}")
    return y.astype(np.int64)


def integer_outputs(bundle, feeds: Mapping[str, np.ndarray], tensors: Sequence[str],
                    fast: bool = True) -> list[np.ndarray]:
    """Run the bundle's main graph once per sample (first axis) and stack the integer
    ``tensors`` ([N, ...] each)."""
    exe = bundle.executable(fast)
    names = bundle.graph.inputs
    n = len(next(iter(feeds.values())))
    rows: list[list[np.ndarray]] = [[] for _ in tensors]
    for i in range(n):
        one = bundle.check_feeds({k: np.asarray(feeds[k][i:i + 1]) for k in names})
        res = exe.run(one, list(tensors))
        for j, t in enumerate(tensors):
            rows[j].append(res[t].reshape(-1))
    return [np.stack(r) for r in rows]


def miou_percent(conf: np.ndarray) -> np.ndarray:
    """mIoU (%) of confusion matrices [..., C, C] (rows: label, columns: prediction; classes
    absent from both are left out)."""
    conf = np.asarray(conf, np.float64)
    inter = np.diagonal(conf, axis1=-2, axis2=-1)
    union = conf.sum(-2) + conf.sum(-1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanmean(iou, axis=-1) * 100


def segmentation_confusions(logits: Sequence[np.ndarray], shape: Sequence[int],
                            labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample and exit, the confusion matrix of the integer class map (argmax over the
    class axis 1 of ``shape`` [1, C, H, W], lowest class on ties) against ``labels`` [N, H, W]:
    [N, K, C, C]; and the integer class maps [N, K, H*W]."""
    c = int(shape[1])
    preds = np.stack([np.argmax(q.reshape((len(q), *shape[1:])), axis=1).reshape(len(q), -1)
                      for q in logits], 1)
    y = labels.reshape(len(labels), -1)
    if y.shape[1] != preds.shape[2] or (y < 0).any() or (y >= c).any():
        raise CalibrationError(f"exit calibration labels must be class maps of "
                               f"{list(shape[2:])} with ids in [0, {c}), got "
                               f"{list(labels.shape[1:])} with ids {int(y.min())}..{int(y.max())}")
    conf = np.zeros((len(y), preds.shape[1], c * c), np.int64)
    for k in range(preds.shape[1]):
        idx = y * c + preds[:, k]
        for i in range(len(y)):
            conf[i, k] = np.bincount(idx[i], minlength=c * c)
    return conf.reshape(len(y), preds.shape[1], c, c), preds


def segmentation_grid(scores: np.ndarray, levels: int) -> np.ndarray:
    """Gate threshold rows [G, K-1]: per exit at most ``levels`` quantile levels of its
    scores plus one above the largest (never fires), every combination."""
    cands = []
    for i in range(scores.shape[1]):
        u = np.unique(scores[:, i])
        if len(u) > levels:
            u = np.unique(np.quantile(u, np.linspace(0, 1, levels), method="lower"))
        cands.append(np.concatenate([u, [u[-1] + 1]]).astype(np.int64))
    return np.array(list(itertools.product(*cands)), np.int64)


def _gate_exits(scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The exit every sample takes under each threshold row: [G, N]."""
    k = scores.shape[1]
    ex = np.full((len(grid), len(scores)), k, np.int64)
    for j in range(k - 1, -1, -1):  # the earliest firing exit wins
        ex[scores[None, :, j] >= grid[:, j, None]] = j
    return ex


def _segmentation_arrays(scores: np.ndarray, conf: np.ndarray, cum_macs: Sequence[int],
                         grid: np.ndarray, agree: np.ndarray | None = None):
    """Per threshold row: dataset mIoU (%), mean MACs, and (with ``agree``) exit counts
    [G, K] and pixel agreement (%)."""
    n, k = scores.shape
    c = conf.shape[-1]
    # float32 sums of pixel counts are exact below 2^24 pixels per confusion cell
    exact = conf.sum() < (1 << 24)
    flat = [np.ascontiguousarray(conf[:, j].reshape(n, c * c),
                                 np.float32 if exact else np.float64) for j in range(k + 1)]
    cum = np.asarray(cum_macs, np.float64)
    mi, macs, counts, agr = [], [], [], []
    for lo in range(0, len(grid), 1024):
        ex = _gate_exits(scores, grid[lo:lo + 1024])
        tot = np.zeros((len(ex), c * c), flat[0].dtype)
        for j in range(k + 1):
            tot += (ex == j).astype(tot.dtype) @ flat[j]
        mi.append(miou_percent(tot.reshape(len(ex), c, c)))
        macs.append(cum[ex].mean(axis=1))
        if agree is not None:
            counts.append(np.stack([(ex == j).sum(1) for j in range(k + 1)], 1))
            agr.append(np.take_along_axis(agree, ex.T, axis=1).mean(0) * 100)
    if agree is None:  # the cross-validation needs only mIoU and MACs
        return np.concatenate(mi), np.concatenate(macs), None, None
    return np.concatenate(mi), np.concatenate(macs), np.concatenate(counts), np.concatenate(agr)


def sweep_segmentation(scores: np.ndarray, conf: np.ndarray, agree: np.ndarray,
                       cum_macs: Sequence[int], levels: int = 8) -> list[OperatingPoint]:
    """Gate thresholds [K-1] on :func:`segmentation_grid` (``levels`` per exit): each setting's
    dataset mIoU (the summed confusion of the exit every sample takes), mean MACs, exit
    counts; ``pixel_agreement`` (``agree`` [N, K]: per sample and exit, the share of pixels
    equal to the model without exits) is kept on the point."""
    grid = segmentation_grid(scores, levels)
    mi, macs, counts, agr = _segmentation_arrays(scores, conf, cum_macs, grid, agree)
    points = []
    for row, a, m, cs, p in zip(grid, mi, macs, counts, agr):
        pt = OperatingPoint([int(v) for v in row], float(a), float(m), [int(v) for v in cs])
        pt.pixel_agreement = float(p)
        points.append(pt)
    return points


def cv_splits(n: int, folds: int = SEG_FOLDS, repeats: int = SEG_REPEATS,
              seed: int = SEG_SEED) -> list[list[np.ndarray]]:
    """``repeats`` seeded shuffles of ``range(n)``, each cut into ``min(folds, n)`` folds."""
    rng = np.random.default_rng(seed)
    return [np.array_split(rng.permutation(n), min(folds, n)) for _ in range(repeats)]


def _pick(mi: np.ndarray, macs: np.ndarray, full: float, budget: float,
          full_macs: float) -> int | None:
    """Index of the cheapest row within ``budget`` points of ``full`` (ties: higher mIoU),
    None when none saves compute."""
    ok = np.flatnonzero(mi >= full - budget - 1e-9)
    if not len(ok):
        return None
    best = ok[np.lexsort((-mi[ok], macs[ok]))[0]]
    return int(best) if macs[best] < full_macs else None


def select_segmentation(scores: np.ndarray, conf: np.ndarray, cum_macs: Sequence[int],
                        full_macs: float, drop: float, levels: Sequence[int] = SEG_LEVELS,
                        margins: Sequence[float] = SEG_MARGINS, folds: int = SEG_FOLDS,
                        repeats: int = SEG_REPEATS, seed: int = SEG_SEED) -> dict:
    """The grid resolution and safety margin of the ``miou`` criterion, chosen on the
    calibration scenes alone by repeated K-fold cross-validation.

    Picking the cheapest of thousands of threshold settings whose mIoU is within ``drop`` on
    the calibration scenes is optimistic: the winner is partly the one whose errors happened
    to cancel on those scenes, and the finer the grid the more of that noise it finds (on
    the Segmenter of samples/exits, a point 0.99 below on 200 validation scenes was 1.05
    below on unseen scenes). So the selection rule itself is validated: for each grid
    (``levels`` gate levels per exit) and each stricter internal budget ``drop * (1 -
    margin)``, the scenes are shuffled (seeded) into ``folds`` folds; thresholds are chosen
    on all folds but one (grid built from those scenes' scores) and applied to the held-out
    fold; the held-out folds' confusions are pooled into one out-of-fold mIoU, compared with
    the model without exits on the same scenes. This is repeated ``repeats`` times with new
    shuffles. A (grid, margin) is admissible when its out-of-fold drop is within ``drop`` in
    EVERY repeat (the worst shuffle, not the average, so a lucky split cannot carry it); the
    admissible one with the fewest mean out-of-fold MACs wins (ties: the larger margin, then
    the coarser grid). Nothing here is tuned to one model: the grids, margins, folds and
    seed are fixed constants, and the same rule serves any segmentation model calibrated
    with ``--exit-criterion miou``.

    Returns ``levels``, ``margin`` (points), ``budget`` (points, the drop the final fit on
    all scenes uses), ``cv_drops`` (the out-of-fold drop per repeat), ``cv_saved_macs``,
    ``folds``, ``repeats``, ``seed``, and ``table`` (every candidate's figures).
    CalibrationError (one line) when no candidate is admissible."""
    n = len(scores)
    if n < 2:
        raise CalibrationError(f"the miou criterion needs at least 2 calibration scenes for "
                               f"its cross-validation, got {n}")
    cum = np.asarray(cum_macs, np.float64)
    c = conf.shape[-1]
    splits = cv_splits(n, folds, repeats, seed)
    full_all = float(miou_percent(conf[:, -1].sum(0)))
    margins = [float(m) for m in margins]
    # out-of-fold confusions and MACs per (levels, margin, repeat)
    oof = np.zeros((len(levels), len(margins), repeats, c, c), np.float64)
    oof_macs = np.zeros((len(levels), len(margins), repeats), np.float64)
    for li, lv in enumerate(levels):
        for r, parts in enumerate(splits):
            for hold in parts:
                train = np.setdiff1d(np.arange(n), hold)
                grid = segmentation_grid(scores[train], lv)
                mi, macs, _, _ = _segmentation_arrays(scores[train], conf[train], cum, grid)
                full_t = float(miou_percent(conf[train, -1].sum(0)))
                for mj, m in enumerate(margins):
                    best = _pick(mi, macs, full_t, drop * (1 - m), full_macs)
                    if best is None:  # nothing saves compute: the model without exits
                        ex = np.full(len(hold), scores.shape[1])
                    else:
                        ex = _gate_exits(scores[hold], grid[best:best + 1])[0]
                    oof[li, mj, r] += conf[hold, ex].sum(0)
                    oof_macs[li, mj, r] += cum[ex].sum()
    drops = full_all - miou_percent(oof)  # [L, M, R]
    saved = 1 - oof_macs.mean(2) / n / full_macs  # [L, M]
    table = [{"levels": int(lv), "margin": round(drop * m, 4),
              "cv_drops": [round(float(d), 4) for d in drops[li, mj]],
              "cv_saved_macs": round(float(saved[li, mj]), 4)}
             for li, lv in enumerate(levels) for mj, m in enumerate(margins)]
    ok = [(li, mj) for li in range(len(levels)) for mj in range(len(margins))
          if drops[li, mj].max() <= drop + 1e-9 and saved[li, mj] > 0]
    if not ok:
        worst = np.where(saved[..., None] > 0, drops, np.inf).max(2)
        least = (f"the smallest held-out drop that saves compute was {worst.min():.2f} points"
                 if np.isfinite(worst.min()) else "no setting saved compute on held-out folds")
        raise CalibrationError(
            f"no gate thresholds keep the mIoU within {drop:g} points under {len(splits[0])}-"
            f"fold cross-validation on the {n} calibration scenes ({least}); pass a larger "
            f"--max-accuracy-drop or more calibration scenes")
    li, mj = min(ok, key=lambda t: (-saved[t], -margins[t[1]], levels[t[0]]))
    return {"levels": int(levels[li]), "margin": round(drop * margins[mj], 4),
            "budget": drop * (1 - margins[mj]),
            "cv_drops": [round(float(d), 4) for d in drops[li, mj]],
            "cv_saved_macs": round(float(saved[li, mj]), 4),
            "folds": len(splits[0]), "repeats": repeats, "seed": seed, "table": table}


def add_exits(bundle, data: Mapping[str, np.ndarray], labels: np.ndarray | None = None, *,
              max_accuracy_drop: float = 0.5, rule: str = "margin",
              exit_outputs: Sequence[str] | None = None, gate_output: str | None = None,
              criterion: str = "consistency"):
    """A new bundle: ``bundle``'s main graph (unchanged, entry one) plus one stage entry per
    exit, with the calibrated exit plan in ``manifest["exits"]``.

    ``data``: input name -> held-out samples (first axis), plus ``label`` unless ``labels``
    is given. ``exit_outputs``: the classifier outputs in compute order (default: every
    output shaped like the last one, in order, less the gate). ``gate_output``: the gating
    output (default ``"gate"`` for the gate rule).

    ``criterion``: ``"consistency"`` (default) keeps the early answers equal to the model
    without exits on all but ``max_accuracy_drop`` percent of the samples (CALM's consistency
    criterion: it bounds the accuracy lost, and harmful and lucky exits cannot cancel out, so
    it holds up better on unseen data); ``"accuracy"`` bounds the labelled accuracy drop on
    the calibration set itself."""
    from sdk.compile.bundle import Bundle

    drop = check_drop(max_accuracy_drop)
    if criterion not in CRITERIA:
        raise InputError(f"exit criterion must be one of {', '.join(CRITERIA)}, got "
                         f"{criterion!r}")
    if criterion == "miou" and rule != "gate":
        raise InputError(f"the miou (segmentation) criterion decides the depth per image "
                         f"with the gate rule; got --exit-rule {rule}: pass --exit-rule gate")
    if rule not in RULES:
        raise InputError(f"unknown exit rule {rule!r}; choose one of {', '.join(RULES)}")
    g = bundle.graph
    if rule == "gate" and gate_output is None:
        gate_output = "gate"
    if gate_output is not None and gate_output not in g.outputs:
        raise InputError(f"gate output {gate_output!r} is not a model output; the outputs are "
                         f"{g.outputs}")
    if exit_outputs is None:
        skip = {gate_output, "gate"}
        heads = [o for o in g.outputs if o not in skip]
        last = g.tensor(heads[-1]) if heads else None
        exit_outputs = [o for o in heads if g.tensor(o).shape == last.shape]
    exit_outputs = list(exit_outputs)
    if len(exit_outputs) < 2:
        raise InputError(f"early exit needs at least two classifier outputs; found "
                         f"{exit_outputs} (name them with --exit-outputs)")
    for o in exit_outputs:
        if o not in g.outputs:
            raise InputError(f"exit output {o!r} is not a model output; the outputs are "
                             f"{g.outputs}")
    missing = [i for i in g.inputs if i not in data]
    if missing:
        raise CalibrationError(f"the exit calibration set lacks input {missing[0]!r} (it "
                               f"holds {sorted(data)})")
    n = len(np.asarray(data[g.inputs[0]]))
    dense = criterion == "miou"
    y = labels_from(data, n, dense) if labels is None else \
        labels_from({"label": labels}, n, dense)
    ints = [integer_tensor(g, o) for o in exit_outputs]
    gate_t = integer_tensor(g, gate_output) if gate_output else None
    for t in ints:
        if g.tensor(t).dtype not in ("int8", "int16") or g.tensor(t).quant is None:
            raise InputError(f"exit logits {t!r} are {g.tensor(t).dtype}; early exit needs an "
                             "integer (compiled) model")
    stages = split_stages(g, ints, gate_t if rule == "gate" else None)
    names = list(stages)
    cum, total = [], 0
    for st in stages.values():
        total += graph_macs(st)
        cum.append(total)
    anc = ancestors(ints[-1], g.producers())
    full_macs = graph_macs(subgraph(g, [n_ for n_ in g.nodes if id(n_) in anc], "full",
                                    {ints[-1]}))
    specs = []
    for k, (o, t) in enumerate(zip(exit_outputs, ints)):
        q = g.tensor(t).quant
        scale = float(np.asarray(q.scale).reshape(-1)[0])
        table = None
        if rule == "entropy" and k < len(ints) - 1:
            table = EntropyTable.build(scale, int(np.prod(g.tensor(t).shape)),
                                       255 if g.tensor(t).dtype == "int8" else 65535)
        specs.append(ExitSpec(o, names[k], t, scale,
                              int(np.asarray(q.zero_point).reshape(-1)[0]), cum[k],
                              None, table))
    outs = integer_outputs(bundle, data, ints + ([gate_t] if rule == "gate" else []))
    logits = outs[:len(ints)]
    gate = outs[-1] if rule == "gate" else None
    scores = exit_scores(rule, logits, specs, gate)
    if criterion == "miou":
        return _finish_segmentation(bundle, g, stages, names, specs, scores, logits, y, cum,
                                    full_macs, gate_t, drop, n)
    answers = np.stack([argmax_int(q) for q in logits], 1)
    correct = answers == y[:, None]
    full_acc = float(correct[:, -1].mean() * 100)
    points = sweep(rule, scores, correct, cum)
    if criterion == "consistency":
        agree = sweep(rule, scores, answers == answers[:, -1:], cum)
        pick = choose(agree, 100.0, full_macs, drop, n, consistency=True)
        best = next(p for p in points if p.thresholds == pick.thresholds)
        agreement = pick.accuracy
    else:
        best = choose(points, full_acc, full_macs, drop, n)
        agreement = float(evaluate(scores, answers == answers[:, -1:], cum,
                                   np.array([best.thresholds]))[0][0])
    for spec, t in zip(specs[:-1], best.thresholds):
        spec.threshold = int(t)
    curve = pareto(points)
    plan = ExitPlan(rule, names, specs, g.inputs[0], int(full_macs),
                    gate_t if rule == "gate" else None,
                    {"samples": n, "max_accuracy_drop": drop, "criterion": criterion,
                     "accuracy_full": round(full_acc, 4),
                     "chosen": dict(best.to_json(), agreement=round(agreement, 4)),
                     "saved_macs": round(1 - best.mean_macs / full_macs, 4),
                     "curve": [p.to_json() for p in curve]})
    out = Bundle.from_graphs({next(iter(bundle.entries)): g, **stages}, name=bundle.name)
    out.manifest["quantization"] = dict(bundle.manifest.get("quantization", {}))
    out.manifest["exits"] = plan.to_json()
    return out


def _finish_segmentation(bundle, g, stages, names, specs, scores, logits, y, cum, full_macs,
                         gate_t, drop, n):
    """The ``miou`` criterion: the grid and safety margin chosen by cross-validation on the
    calibration scenes (:func:`select_segmentation`), then on all of them the thresholds
    whose dataset mIoU is within ``drop`` less that margin of the model without exits,
    fewest mean MACs."""
    from sdk.compile.bundle import Bundle

    shape = g.tensor(specs[-1].logits).shape
    if shape is None or len(shape) != 4:
        raise InputError(f"the miou criterion needs segmentation logits [1, C, H, W]; exit "
                         f"{specs[-1].name!r} is {shape}")
    conf, preds = segmentation_confusions(logits, shape, y)
    full = float(miou_percent(conf[:, -1].sum(0)))
    sel = select_segmentation(scores, conf, cum, full_macs, drop)
    points = sweep_segmentation(scores, conf, (preds == preds[:, -1:]).mean(axis=2), cum,
                                sel["levels"])
    best = choose(points, full, full_macs, sel["budget"], n)
    for spec, t in zip(specs[:-1], best.thresholds):
        spec.threshold = int(t)
    plan = ExitPlan("gate", names, specs, g.inputs[0], int(full_macs), gate_t,
                    {"samples": n, "max_accuracy_drop": drop, "criterion": "miou",
                     "metric": "mIoU", "accuracy_full": round(full, 4),
                     "selection": {k: (round(v, 4) if isinstance(v, float) else v)
                                   for k, v in sel.items() if k != "table"},
                     "chosen": dict(best.to_json(),
                                    agreement=round(best.pixel_agreement, 4)),
                     "saved_macs": round(1 - best.mean_macs / full_macs, 4),
                     "curve": [p.to_json() for p in pareto(points)]})
    out = Bundle.from_graphs({next(iter(bundle.entries)): g, **stages}, name=bundle.name)
    out.manifest["quantization"] = dict(bundle.manifest.get("quantization", {}))
    out.manifest["exits"] = plan.to_json()
    return out
