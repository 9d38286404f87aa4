"""Calibration observers: each watches one float tensor over the calibration set and proposes
the real range ``[lo, hi]`` that the tensor's integer grid should cover.

* ``minmax``: the observed extremes.
* ``percentile``: the ``p``-th and ``(100 − p)``-th percentiles (clips rare outliers).
* ``entropy``: the threshold on ``|x|`` whose quantized histogram is closest in KL
  divergence to the observed one.
* ``mse``: the clipping threshold that minimises the mean squared quantization error
  ``E[(x − s·(clamp(round(x/s) + z) − z))²]`` over a grid of candidate ranges (shrinking the
  observed range by factors in ``(0, 1]``), evaluated for the target integer type.

Observers keep exact extremes and a bounded, deterministic sample of the values (every
``k``-th element once the sample is full), so memory stays bounded on large calibration sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sdk.errors import CalibrationError
from sdk.graph import QuantParams, qrange

SAMPLE_CAP = 1 << 20


@dataclass
class Observer:
    """Base observer: exact min/max plus a bounded value sample."""

    lo: float = float("inf")
    hi: float = float("-inf")
    _chunks: list[np.ndarray] = field(default_factory=list)
    _count: int = 0

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size == 0:
            return
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        if self._count + x.size > SAMPLE_CAP:
            step = int(np.ceil((self._count + x.size) / SAMPLE_CAP))
            x = x[::step]
            if self._count > SAMPLE_CAP // 2:
                self._chunks = [np.concatenate(self._chunks)[::2]]
                self._count = self._chunks[0].size
        self._chunks.append(x.copy())
        self._count += x.size

    @property
    def seen(self) -> bool:
        return self.lo <= self.hi

    @property
    def constant(self) -> bool:
        """Every observed value was the same (all zero included): no range was measured."""
        return self.seen and self.lo == self.hi

    def values(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)

    def range(self, dtype: str, symmetric: bool) -> tuple[float, float]:
        """The real range ``[lo, hi]`` to cover; subclasses override."""
        return self.lo, self.hi


class MinMaxObserver(Observer):
    """Covers the observed minimum and maximum exactly."""


@dataclass
class PercentileObserver(Observer):
    """Covers the ``percentile``-th / ``(100 − percentile)``-th percentiles of the values."""

    percentile: float = 99.99

    def range(self, dtype: str, symmetric: bool) -> tuple[float, float]:
        v = self.values()
        if symmetric:
            a = float(np.percentile(np.abs(v), self.percentile))
            return -a, a
        return (float(np.percentile(v, 100.0 - self.percentile)),
                float(np.percentile(v, self.percentile)))


class MSEObserver(Observer):
    """Picks the range (a shrink of the observed one) with the least quantization MSE."""

    def range(self, dtype: str, symmetric: bool) -> tuple[float, float]:
        v = self.values()
        if v.size > 65536:  # the search needs only a representative subset
            v = v[:: int(np.ceil(v.size / 65536))]
        best, best_err = (self.lo, self.hi), np.inf
        for f in np.linspace(0.3, 1.0, 36):
            lo, hi = self.lo * f, self.hi * f
            qp = params_for_range(lo, hi, dtype, symmetric)
            err = float(np.mean((fake_quantize(v, qp, dtype) - v) ** 2))
            if err < best_err:
                best, best_err = (lo, hi), err
        return best


class EntropyObserver(Observer):
    """Picks the clipping threshold ``T`` on ``|x|`` whose quantized histogram stays closest
    to the observed one in KL divergence (the TensorRT calibration recipe): the 2048-bin
    histogram ``P`` of ``|x|`` is cut at ``T`` (the tail folded into the last bin), merged into
    the integer grid's levels and spread back to ``Q``; ``T`` minimises ``KL(P‖Q)``. Tensors
    with fewer than ``16·BINS`` observed values keep their min/max (too sparse a histogram)."""

    BINS = 2048

    def range(self, dtype: str, symmetric: bool) -> tuple[float, float]:
        v = np.abs(self.values())
        top = float(v.max()) if v.size else 0.0
        if top <= 0 or v.size < 16 * self.BINS:  # too few values for a stable histogram
            return self.lo, self.hi
        hist, edges = np.histogram(v, bins=self.BINS, range=(0.0, top))
        hist = hist.astype(np.float64)
        qmin, qmax = qrange(dtype)
        # levels available to |x|: the whole grid for one-sided data, half of it otherwise
        levels = qmax - qmin + 1 if (self.lo >= 0 and not symmetric) else qmax + 1
        best_i, best_kl = self.BINS, np.inf
        for i in range(min(levels, self.BINS), self.BINS + 1, 16):
            p = hist[:i].copy()
            p[-1] += hist[i:].sum()
            chunks = np.array_split(np.arange(i), levels)
            q = np.zeros(i)
            for c in chunks:
                nz = hist[c] > 0
                if nz.any():
                    q[c[nz]] = hist[c].sum() / nz.sum()
            mask = p > 0
            ps, qs = p[mask] / p.sum(), np.maximum(q[mask], 1e-12) / q.sum()
            kl = float(np.sum(ps * np.log(ps / qs)))
            if kl < best_kl:
                best_i, best_kl = i, kl
        t = float(edges[best_i])
        return max(self.lo, -t), min(self.hi, t)


OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}


def make_observer(name: str) -> Observer:
    """An observer by name (``minmax``, ``percentile``, ``mse``, ``entropy``)."""
    try:
        return OBSERVERS[name]()
    except KeyError:
        raise CalibrationError(f"unknown calibration observer {name!r}; "
                               f"choose one of {sorted(OBSERVERS)}") from None


def as_kind(obs: Observer, kind: str) -> Observer:
    """An observer of ``kind`` over the same observed values as ``obs`` (no new pass over
    the calibration data): per-tensor observer choice after one calibration run."""
    new = make_observer(kind)
    new.lo, new.hi, new._count = obs.lo, obs.hi, obs._count
    new._chunks = list(obs._chunks)
    return new


def outlier_ratio(obs: Observer, q: float = 99.9) -> float:
    """``max|x| / percentile_q(|x|)``: how far the extremes sit above the bulk (1 = none)."""
    v = np.abs(obs.values())
    if v.size == 0:
        return 1.0
    p = float(np.percentile(v, q))
    top = max(abs(obs.lo), abs(obs.hi))
    return top / p if p > 0 else float("inf") if top > 0 else 1.0


def params_for_range(lo: float, hi: float, dtype: str, symmetric: bool) -> QuantParams:
    """Affine parameters whose grid covers ``[lo, hi]`` (widened to include 0).

    Asymmetric: ``s = (hi − lo)/(qmax − qmin)``, ``z = round(qmin − lo/s)``.
    Symmetric: ``s = max(|lo|, |hi|)/qmax``, ``z = 0``.
    """
    qmin, qmax = qrange(dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        a = max(-lo, hi)
        scale = a / qmax if a > 0 else 1.0 / qmax
        return QuantParams(np.float32(scale), np.int32(0))
    if hi - lo <= 0:
        return QuantParams(np.float32(1.0 / qmax), np.int32(0))
    scale = np.float32((hi - lo) / (qmax - qmin))
    zp = int(np.clip(np.round(qmin - lo / float(scale)), qmin, qmax))
    return QuantParams(scale, np.int32(zp))


def fake_quantize(x: np.ndarray, qp: QuantParams, dtype: str) -> np.ndarray:
    """``s·(clamp(round(x/s) + z) − z)``: what the integer grid can represent of ``x``."""
    qmin, qmax = qrange(dtype)
    s, z = float(qp.scale), int(qp.zero_point)
    q = np.clip(np.round(x / s) + z, qmin, qmax)
    return ((q - z) * s).astype(np.float32)
