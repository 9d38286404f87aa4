"""Calibration: run the float graph over the user's samples and observe every activation.

The user passes ``data``: a dict input name → array whose first axis is the sample axis.
A sample is either a whole model input (``array.shape[1:] == input shape``) or one row of the
model's batch (``array.shape[1:] == input shape[1:]``); both are accepted.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator, Mapping

import numpy as np

from sdk.errors import CalibrationError, CalibrationWarning
from sdk.graph import Graph
from sdk.quant.observers import Observer, make_observer
from sdk.quant.trace import trace

_ALLOW_ZERO_INPUTS = contextvars.ContextVar("allow_zero_calibration_inputs", default=False)
MAX_NAMED = 8  # degenerate tensors warned about one by one; the rest in one summary warning


@contextlib.contextmanager
def allow_zero_calibration_inputs(allow: bool = True) -> Iterator[None]:
    """Within this block an all-zero calibration array for a graph input is accepted (with
    a :class:`~sdk.errors.CalibrationWarning`) instead of refused: what ``edge compile
    --force-calibration`` does, for callers of ``compile_model`` / ``quantize``."""
    token = _ALLOW_ZERO_INPUTS.set(bool(allow))
    try:
        yield
    finally:
        _ALLOW_ZERO_INPUTS.reset(token)


def check_zero_inputs(graph: Graph, data: Mapping[str, np.ndarray],
                      allow: bool | None = None) -> None:
    """An all-zero calibration array for a float graph input calibrates nothing (every scale
    downstream is a guess): CalibrationError naming it, unless allowed (argument, or the
    :func:`allow_zero_calibration_inputs` block)."""
    allow = _ALLOW_ZERO_INPUTS.get() if allow is None else allow
    for name in graph.inputs:
        arr = np.asarray(data[name])
        if arr.dtype.kind != "f" or arr.size == 0 or np.any(arr):
            continue
        if not allow:
            raise CalibrationError(
                f"calibration data for input {name!r} is all zero ({arr.shape[0]} samples): "
                f"the quantization scales would be guesses; give representative inputs (or "
                f"force it: edge compile --force-calibration)")
        warnings.warn(f"calibration data for input {name!r} is all zero (forced)",
                      CalibrationWarning, stacklevel=3)


def warn_degenerate(observers: Mapping[str, Observer], graph: Graph | None = None) -> list[str]:
    """A :class:`~sdk.errors.CalibrationWarning` for each observed tensor whose calibration
    values were all one constant (all zero included): its scale is a default, not a measured
    range. Returns the names."""
    bad = [(n, o.lo) for n, o in observers.items() if o.constant]
    for name, v in bad[:MAX_NAMED]:
        kind = "graph input" if graph is not None and name in graph.inputs else "tensor"
        what = "all zero" if v == 0 else f"the constant {v:g}"
        warnings.warn(f"calibration: {kind} {name!r} is {what} over every sample; its "
                      f"quantization scale is a default, not a measured range",
                      CalibrationWarning, stacklevel=3)
    if len(bad) > MAX_NAMED:
        rest = [n for n, _ in bad[MAX_NAMED:]]
        warnings.warn(f"calibration: {len(rest)} more constant tensors: "
                      f"{', '.join(repr(n) for n in rest[:20])}"
                      f"{' ...' if len(rest) > 20 else ''}", CalibrationWarning, stacklevel=3)
    return [n for n, _ in bad]


def _fits(sample: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(sample) == len(shape) and all(d < 0 or d == e for d, e in zip(shape, sample))


def check_calibration_data(graph: Graph, data: Mapping[str, np.ndarray]) -> int:
    """Validate ``data`` against the graph's inputs; returns the number of samples."""
    missing = [n for n in graph.inputs if n not in data]
    if missing:
        raise CalibrationError(f"calibration data has no array for input(s) {missing}; "
                               f"it has {sorted(data)}: key the arrays by input name")
    counts = set()
    for name in graph.inputs:
        arr = np.asarray(data[name])
        if arr.ndim == 0 or arr.shape[0] == 0 or arr.size == 0:
            raise CalibrationError(f"calibration data for input {name!r} is empty "
                                   f"(shape {arr.shape}); give at least one sample along axis 0")
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise CalibrationError(f"calibration data for input {name!r} has {bad} NaN/inf "
                                   "value(s); remove or replace them before calibrating")
        shape = graph.tensor(name).shape
        if shape is not None and not (_fits(arr.shape[1:], shape) or _fits(arr.shape[1:], shape[1:])):
            raise CalibrationError(f"calibration data for input {name!r} has samples of shape "
                                   f"{tuple(arr.shape[1:])}; the model takes {tuple(shape)} "
                                   f"(-1 = any): give [N, *{tuple(shape)}] or [N, *{tuple(shape[1:])}]")
        counts.add(arr.shape[0])
    if len(counts) > 1:
        raise CalibrationError(f"calibration arrays have different sample counts {sorted(counts)}; "
                               "every input needs the same number of samples")
    return counts.pop()


def sample_batches(graph: Graph, data: Mapping[str, np.ndarray], batch: int = 16):
    """Yield feed dicts covering all samples, shaped as the model's inputs expect."""
    n = check_calibration_data(graph, data)
    whole = {}
    for name in graph.inputs:
        shape = graph.tensor(name).shape
        arr = np.asarray(data[name])
        # a sample is a full model input when its rank equals the input's rank
        whole[name] = shape is not None and arr.ndim == len(shape) + 1
    if any(whole.values()):
        for i in range(n):
            yield {k: np.asarray(data[k][i]) if whole[k] else np.asarray(data[k][i:i + 1])
                   for k in graph.inputs}
        return
    fixed_batch = any(graph.tensor(k).shape and graph.tensor(k).shape[0] == 1
                      for k in graph.inputs)
    step = 1 if fixed_batch else batch
    yield {k: np.asarray(data[k][:1]) for k in graph.inputs}  # first alone: batch-1 shapes
    for i in range(1, n, step):
        yield {k: np.asarray(data[k][i:i + step]) for k in graph.inputs}


def float_feeds(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast feeds to the dtype each graph input declares."""
    return {k: np.asarray(v).astype(graph.tensor(k).dtype) for k, v in feeds.items()}


def calibrate(graph: Graph, data: Mapping[str, np.ndarray], observer: str = "minmax",
              batch: int = 16, *, allow_zero_inputs: bool | None = None
              ) -> dict[str, Observer]:
    """Observe every float activation of ``graph`` over the calibration set.

    Returns name → observer for graph inputs and node outputs. Also fills in the shape of
    every tensor whose shape the graph did not know (from the first sample's run).
    An all-zero array for a float graph input is a CalibrationError unless
    ``allow_zero_inputs`` (or :func:`allow_zero_calibration_inputs`); every tensor that
    stays constant over the set gets a CalibrationWarning naming it.
    """
    check_calibration_data(graph, data)
    check_zero_inputs(graph, data, allow_zero_inputs)
    observers: dict[str, Observer] = {}
    first = True
    for feeds in sample_batches(graph, data, batch):
        values = trace(graph, float_feeds(graph, feeds))
        for name, val in values.items():
            t = graph.tensors.get(name)
            if t is None or t.is_constant or val.dtype.kind != "f":
                continue
            if not np.all(np.isfinite(val)):
                raise CalibrationError(f"tensor {name!r} becomes NaN/inf during calibration; "
                                       "check the model's weights and the input value range")
            observers.setdefault(name, make_observer(observer)).update(val)
            if first and (t.shape is None or any(d < 0 for d in t.shape)):
                t.shape = tuple(val.shape)
        first = False
    warn_degenerate(observers, graph)
    return observers
