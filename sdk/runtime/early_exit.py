"""EarlyExitSession: run an early-exit bundle stage by stage and stop at the first exit whose
integer rule fires.

    sess = EarlyExitSession("digits.edge")                 # Numba kernels, integer rules
    r = sess.run({"x": x})
    r.exit, r.exit_name, r.macs, r.seconds, r.outputs["exit_2"], r.label
    sess = EarlyExitSession("digits.edge", backend="onnxruntime")  # each stage its own graph
    r = sess.run_full({"x": x})                              # the model without exits

The bundle holds the main graph (all exits) and one entry per stage (``stage_1`` ...); its
``manifest["exits"]`` (:class:`sdk.exits.ExitPlan`) names the rule, each exit's integer
logits and threshold. Each stage runs through :class:`~sdk.runtime.session.Session` on that
stage entry (``integer_io=True``: the tensors the next stage resumes from stay integers, never
re-quantized); the rule reads the exit's integer logits (no float decides an exit). The
input is quantized once with the first stage's input scale. ``fast=False`` uses the NumPy
reference kernels and the NumPy rule specification; ``fast=True`` the Numba twins of both
(the same exit, bit for bit).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.errors import InputError, ModelFormatError
from sdk.exits.plan import ExitPlan
from sdk.runtime.session import Session


@dataclass
class ExitResult:
    """One early-exit run: the fired exit's logits (float, dequantized) under its output name,
    which exit fired (0-based ``exit`` and its ``exit_name``), the class it chose (``label``,
    the integer argmax), the MACs spent (every stage run, heads included), the wall time, the
    stages run and each evaluated exit's integer score."""

    outputs: dict[str, np.ndarray]
    exit: int
    exit_name: str
    label: int
    macs: int
    seconds: float
    stages_run: int
    scores: list[int] = field(default_factory=list)


class EarlyExitSession:
    """Stage-by-stage execution of a bundle compiled with exits (``edge compile --exits``).

    ``backend`` / ``target`` / ``fast`` are passed to each stage's :class:`Session` (so
    ``backend="onnxruntime"`` or ``"litert"`` runs every stage as its own graph there);
    ``thresholds`` overrides the calibrated ones (one integer per early exit); ``compiled``
    is passed to each stage's Session (its generated-program fast path)."""

    def __init__(self, source: Any, *, fast: bool = True, backend: str | None = None,
                 target: Any = None, thresholds: Sequence[int] | None = None,
                 compiled: bool | None = None) -> None:
        if isinstance(source, Session):
            source = source.bundle if source.bundle is not None else source.graph
        bundle = _load(source)
        plan = ExitPlan.of(bundle) if bundle is not None else None
        if plan is None:
            raise InputError("this model has no exits; compile it with `edge compile MODEL "
                             "--calib CALIB.npz --exits HELDOUT.npz --max-accuracy-drop 0.5`")
        self.bundle, self.plan, self.fast = bundle, plan, fast
        self.backend = backend
        opts = {"fast": fast, "integer_io": True, "backend": backend, "target": target}
        if compiled is not None:  # Session's generated-program path (default: when hot)
            opts["compiled"] = compiled
        self.stages = [Session(bundle, entry=s, **opts) for s in plan.stages]
        self._main_opts = opts
        self._full: Session | None = None
        if thresholds is not None:
            thresholds = [int(t) for t in thresholds]
            if len(thresholds) != len(plan.exits) - 1:
                raise InputError(f"thresholds: give {len(plan.exits) - 1} integers (one per "
                                 f"early exit), got {len(thresholds)}")
        self.thresholds = thresholds if thresholds is not None else plan.thresholds
        where = f"bundle {bundle.name!r}: its exit plan"
        if len(plan.exits) != len(plan.stages) or any(
                e.entry != s for e, s in zip(plan.exits, plan.stages)):
            raise ModelFormatError(f"{where} lists {len(plan.exits)} exits for stages "
                                   f"{plan.stages}; recompile with --exits")
        for spec, sess in zip(plan.exits, self.stages):
            if spec.logits not in sess.output_names:
                raise ModelFormatError(f"{where} reads {spec.logits!r}, which stage "
                                       f"{spec.entry!r} does not output; recompile with --exits")
        first = self.stages[0]
        info = next((i for i in first.inputs if i.name == plan.input), None)
        if info is None:
            raise ModelFormatError(f"{where} feeds {plan.input!r}, which is not an input of "
                                   f"{first.entry_name!r}; recompile with --exits")
        self._in_info = info
        from sdk.kernels.quantize import quantize_linear

        self._quantize = quantize_linear
        if fast:
            from sdk.exits import fast as impl
        else:
            from sdk.exits import rules as impl
        self._impl = impl
        self._stage_of = {e.entry: k for k, e in enumerate(plan.exits)}

    # -- the rule on one exit's integer logits -------------------------------------------
    def _score(self, k: int, q: np.ndarray, history: list[int]) -> int:
        rule, spec = self.plan.rule, self.plan.exits[k]
        row = np.ascontiguousarray(q.reshape(1, -1))
        if rule == "margin":
            return int(self._impl.margin_scores(row)[0])
        if rule == "entropy":
            return int(self._impl.entropy_scores(row, spec.table)[0])
        if rule == "patience":
            run = 1
            for a, b in zip(history[::-1][1:], history[::-1][:-1]):
                if a != b:
                    break
                run += 1
            return run
        raise InputError(f"rule {rule!r} is decided by the gate, not per exit")

    def _feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        info = self._in_info
        if not isinstance(feeds, Mapping) or set(feeds) != {self.plan.input}:
            raise InputError(f"feeds must be {{{self.plan.input!r}: array}}, got "
                             f"{sorted(feeds) if isinstance(feeds, Mapping) else feeds!r}")
        x = np.asarray(feeds[self.plan.input], np.float32)
        if x.shape != tuple(info.shape):
            raise InputError(f"input {self.plan.input!r}: expected shape {list(info.shape)}, "
                             f"given {list(x.shape)}")
        if info.dtype == "float32" or info.quant is None:
            return {self.plan.input: x}
        q = info.quant
        return {self.plan.input: self._quantize(x, q.scale, q.zero_point, info.dtype, q.axis)}

    def _dequantized(self, k: int, q: np.ndarray) -> dict[str, np.ndarray]:
        spec = self.plan.exits[k]
        return {spec.name: ((q.astype(np.float32) - spec.zero_point) *
                            np.float32(spec.scale)).astype(np.float32)}

    # -- running ----------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, Any]) -> ExitResult:
        """Run stages until an exit fires (the last always does)."""
        t0 = time.perf_counter()
        pool = self._feeds(feeds)
        plan, thr = self.plan, self.thresholds
        last = len(plan.exits) - 1
        target = None
        history: list[int] = []
        scores: list[int] = []
        k = 0
        for k, sess in enumerate(self.stages):
            res = sess.run({n: pool[n] for n in sess.input_names})
            pool.update(res)
            spec = plan.exits[k]
            q = res[spec.logits]
            if k == last:
                break
            if plan.rule == "gate":
                if target is None:
                    g = np.asarray(pool[plan.gate]).reshape(-1)
                    scores = [int(v) for v in g[:last]]
                    target = next((j for j in range(last) if scores[j] >= thr[j]), last)
                if k == target:
                    break
                continue
            history.append(int(self._impl.argmax_int(q.reshape(1, -1))[0]))
            s = self._score(k, q, history)
            scores.append(s)
            if s >= thr[k]:
                break
        spec = plan.exits[k]
        q = pool[spec.logits]
        label = int(self._impl.argmax_int(np.asarray(q).reshape(1, -1))[0])
        out = self._dequantized(k, np.asarray(q))
        return ExitResult(out, k, spec.name, label, spec.macs, time.perf_counter() - t0,
                          k + 1, scores)

    def warm_up(self, feeds: Mapping[str, Any], runs: int = 1) -> None:
        """Run every stage and the main graph ``runs`` times (an executor may compile a
        request on first use or once it is hot), so that timings measure the steady state."""
        for _ in range(runs):
            pool = self._feeds(feeds)
            for sess in self.stages:
                pool.update(sess.run({n: pool[n] for n in sess.input_names}))
            self.run_full(feeds)

    def run_full(self, feeds: Mapping[str, Any]) -> ExitResult:
        """The same model without exits: the main graph's last exit only (what it needs, on
        the reference executors; the whole main graph on another backend)."""
        t0 = time.perf_counter()
        pool = self._feeds(feeds)
        if self._full is None:
            self._full = Session(self.bundle, entry=next(iter(self.bundle.entries)),
                                 **self._main_opts)
        spec = self.plan.exits[-1]
        name = spec.name if spec.name in self._full.output_names else spec.logits
        res = self._full.run([name], {n: pool[n] for n in self._full.input_names
                                      if n in pool})
        q = np.asarray(res[name])
        label = int(self._impl.argmax_int(q.reshape(1, -1))[0])
        last = len(self.plan.exits) - 1
        return ExitResult(self._dequantized(last, q), last, spec.name, label,
                          self.plan.full_macs, time.perf_counter() - t0, len(self.stages))


def _load(source: Any) -> Any:
    if hasattr(source, "entries") and hasattr(source, "manifest"):
        return source
    if isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".edge"):
        from sdk.compile.bundle import load_bundle

        return load_bundle(source)
    return None
