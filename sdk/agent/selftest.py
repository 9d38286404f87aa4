"""The deploy's self-test: inputs and the integer outputs the NumPy reference kernels give for
them, computed on the host; the board must reproduce them.

The file is an ``.npz`` of numeric arrays only: ``names`` (the UTF-8 bytes of a JSON
document: input and output names, case count, who computed it), ``c{i}_in{j}`` and
``c{i}_out{k}``. Inputs and outputs are the raw integer tensors behind the model's
Quantize/DequantizeLinear boundary (``Session(integer_io=True)``), so the check is on the
integers the kernels produce.

On the SDK's own kernels (Numba twins, the NumPy reference) the outputs must be equal bit for
bit. On a delegate backend (ONNX Runtime, LiteRT, an NPU) integer outputs may differ by at most
``tolerance`` LSB (default :data:`DELEGATE_TOLERANCE_LSB`); float outputs (a graph with no
integer boundary) by ``FLOAT_RTOL`` relative.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import sdk
from sdk.errors import EdgeError, InputError

EXACT_BACKENDS = ("reference", "reference-numpy")
DELEGATE_TOLERANCE_LSB = 1
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-6
DEFAULT_CASES = 3
MAX_SELFTEST_BYTES = 64 << 20


@dataclass
class SelfTestResult:
    passed: bool
    cases: int
    reason: str
    seconds: float
    tolerance: int

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "cases": self.cases, "reason": self.reason,
                "seconds": round(self.seconds, 4), "tolerance_lsb": self.tolerance}


def _input_array(info: Any, rng: np.random.Generator) -> np.ndarray:
    shape = [d if d > 0 else 1 for d in (info.shape or ())]
    dt = np.dtype(info.dtype)
    if dt.kind in "iu":
        lim = np.iinfo(dt)
        return rng.integers(lim.min, int(lim.max) + 1, shape).astype(dt)
    return rng.uniform(-1.0, 1.0, shape).astype(dt)


def make_selftest(bundle: Any, cases: int = DEFAULT_CASES, seed: int = 0) -> bytes:
    """Self-test bytes for ``bundle`` (a Bundle or .edge path): ``cases`` random integer inputs
    over each input's full range and the NumPy reference's outputs for them."""
    if cases < 1 or cases > 64:
        raise InputError(f"self-test cases {cases} is outside 1..64")
    sess = sdk.Session(bundle, fast=False, integer_io=True)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    out_names = sess.output_names
    for c in range(cases):
        feeds = {i.name: _input_array(i, rng) for i in sess.inputs}
        try:
            res = sess.run(feeds)
        except EdgeError as exc:
            raise InputError(f"cannot compute the self-test on the reference kernels ({exc}); "
                             "give one with --selftest FILE.npz") from None
        for j, i in enumerate(sess.inputs):
            arrays[f"c{c}_in{j}"] = feeds[i.name]
        for k, name in enumerate(out_names):
            arrays[f"c{c}_out{k}"] = np.asarray(res[name])
    meta = {"inputs": sess.input_names, "outputs": out_names, "cases": cases,
            "computed_by": "numpy reference kernels", "sdk_version": sdk.__version__}
    arrays["names"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_selftest(path: str | Path) -> tuple[dict[str, Any], list[tuple[dict, dict]]]:
    """(meta, [(inputs, expected outputs) per case]) from a self-test file; InputError when it
    is not one."""
    from sdk.cli.arrays import load_arrays

    p = Path(path)
    if p.stat().st_size > MAX_SELFTEST_BYTES:
        raise InputError(f"the self-test holds {p.stat().st_size:,} bytes, over "
                         f"{MAX_SELFTEST_BYTES:,}")
    try:
        meta = json.loads(load_arrays(p, ["names"])["names"].astype(np.uint8).tobytes())
        ins, outs, n = list(meta["inputs"]), list(meta["outputs"]), int(meta["cases"])
    except (ValueError, KeyError, TypeError, EdgeError) as exc:
        raise InputError(f"the self-test is not an edge self-test file ({exc}); let "
                         "`edge deploy` compute one") from None
    if not 1 <= n <= 64 or not all(isinstance(s, str) for s in ins + outs):
        raise InputError("the self-test's names entry is malformed; let `edge deploy` compute one")
    keys = [f"c{c}_in{j}" for c in range(n) for j in range(len(ins))]
    keys += [f"c{c}_out{k}" for c in range(n) for k in range(len(outs))]
    arrays = load_arrays(p, keys)
    cases = [({name: arrays[f"c{c}_in{j}"] for j, name in enumerate(ins)},
              {name: arrays[f"c{c}_out{k}"] for k, name in enumerate(outs)}) for c in range(n)]
    return meta, cases


def _compare(name: str, got: np.ndarray, want: np.ndarray, tolerance: int) -> str:
    """'' when ``got`` matches ``want``; else why not (one clause)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"output {name!r} has shape {list(got.shape)}, the reference {list(want.shape)}"
    if want.dtype.kind in "iu" or got.dtype.kind in "iu":
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        bad = int((diff > tolerance).sum())
        if bad:
            return (f"output {name!r} differs from the reference in {bad} of {diff.size} values "
                    f"(max |diff| {int(diff.max())} LSB, tolerance {tolerance})")
        return ""
    ok = np.isclose(got, want, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    if not ok.all():
        return (f"output {name!r} differs from the reference in {int((~ok).sum())} of "
                f"{ok.size} values (float, rtol {FLOAT_RTOL})")
    return ""


def run_selftest(bundle_path: str | Path, selftest_path: str | Path, backend: str = "reference",
                 tolerance: int | None = None, target: Any = None) -> SelfTestResult:
    """Run the self-test of a deploy on this machine's kernels (``backend``); never raises for
    a model that fails it: the result says why."""
    exact = backend in EXACT_BACKENDS
    tol = 0 if exact else (DELEGATE_TOLERANCE_LSB if tolerance is None else tolerance)
    t0 = time.perf_counter()
    try:
        meta, cases = read_selftest(selftest_path)
        sess = sdk.Session(str(bundle_path), fast=backend != "reference-numpy",
                           integer_io=True,
                           backend=None if exact else backend, target=None if exact else target)
        if sorted(sess.input_names) != sorted(meta["inputs"]) or \
                sorted(sess.output_names) != sorted(meta["outputs"]):
            return SelfTestResult(False, 0, f"the self-test is for inputs {meta['inputs']} / "
                                  f"outputs {meta['outputs']}, the model has "
                                  f"{sess.input_names} / {sess.output_names}",
                                  time.perf_counter() - t0, tol)
        for c, (feeds, expected) in enumerate(cases):
            got = sess.run(feeds)
            for name, want in expected.items():
                why = _compare(name, got[name], want, tol)
                if why:
                    return SelfTestResult(False, c, f"self-test case {c}: {why}",
                                          time.perf_counter() - t0, tol)
    except EdgeError as exc:
        return SelfTestResult(False, 0, f"self-test could not run: {exc}",
                              time.perf_counter() - t0, tol)
    except (ValueError, TypeError, RuntimeError, MemoryError, OSError) as exc:  # a kernel fault
        return SelfTestResult(False, 0, f"self-test crashed: {type(exc).__name__}: {exc}",
                              time.perf_counter() - t0, tol)
    how = "bit-exact" if tol == 0 else f"within {tol} LSB"
    return SelfTestResult(True, len(cases), f"{len(cases)} cases {how} on {backend}",
                          time.perf_counter() - t0, tol)
