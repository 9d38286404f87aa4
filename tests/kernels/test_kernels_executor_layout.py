"""The reference executor runs the Numba layout twins on integer tensors when ``fast=True``;
its outputs equal ``fast=False`` (the NumPy references) and ONNX semantics: negative axes,
negative Gather indices, negative Slice steps."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.graph import Graph, Tensor
from sdk.kernels.fast import layout as flayout
from sdk.ops.interpreter import Interpreter, run_graph


def _layout_graph(dtype: str) -> Graph:
    """x [2,3,5,4] → Transpose(0,2,3,1) [2,5,4,3] → Slice(axes -3,-1; 4:0:-2, 0:3:2) [2,2,4,2]
    → Gather(axis -2, [-1, 0, 2]) [2,2,3,2] → Concat(axis -1) with Gather(axis 0, [1, -2])
    of y [2,2,3,1] → out [2,2,3,3]."""
    g = Graph("layout")
    g.add_tensor(Tensor("x", dtype, (2, 3, 5, 4)))
    g.add_tensor(Tensor("y", dtype, (2, 2, 3, 1)))
    g.add_constant("starts", np.array([4, 0], np.int64))
    g.add_constant("ends", np.array([0, 3], np.int64))
    g.add_constant("axes", np.array([-3, -1], np.int64))
    g.add_constant("steps", np.array([-2, 2], np.int64))
    g.add_constant("idx", np.array([-1, 0, 2], np.int64))
    g.add_constant("rows", np.array([1, -2], np.int64))
    g.add_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1])
    g.add_node("Slice", ["t", "starts", "ends", "axes", "steps"], ["s"])
    g.add_node("Gather", ["s", "idx"], ["gs"], axis=-2)
    g.add_node("Gather", ["y", "rows"], ["gy"], axis=0)
    g.add_node("Concat", ["gs", "gy"], ["out"], axis=-1)
    for name in ("t", "s", "gs", "gy", "out"):
        g.add_tensor(Tensor(name, dtype, None))
    g.inputs, g.outputs = ["x", "y"], ["out"]
    return g


def _numpy_expected(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    t = np.transpose(x, (0, 2, 3, 1))
    s = t[:, 4:0:-2, :, 0:3:2]
    gs = s[:, :, [3, 0, 2], :]          # indices -1, 0, 2 on an axis of size 4
    gy = y[[1, 0]]                      # rows 1, -2 on an axis of size 2
    return np.concatenate([gs, gy], axis=-1)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32"])
def test_fast_layout_ops_match_reference_on_integer_data(dtype, monkeypatch):
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (2, 3, 5, 4), endpoint=True).astype(dtype)
    y = rng.integers(info.min, info.max, (2, 2, 3, 1), endpoint=True).astype(dtype)
    g = _layout_graph(dtype)

    calls: list[str] = []
    for name in ("transpose", "slice_", "gather", "concat"):
        real = getattr(flayout, name)
        monkeypatch.setattr(flayout, name,
                            lambda *a, _f=real, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    # the plain per-node path with fast=True dispatches to the Numba twins ...
    fast = Interpreter(g, fast=True, prepared=False).run({"x": x, "y": y})["out"]
    assert sorted(calls) == ["concat", "gather", "gather", "slice_", "transpose"]
    # ... and the prepared program (the default) gives the same bits
    prepared = run_graph(g, {"x": x, "y": y}, fast=True)["out"]
    np.testing.assert_array_equal(prepared, fast)

    calls.clear()
    ref = run_graph(g, {"x": x, "y": y}, fast=False)["out"]
    assert calls == []
    assert fast.dtype == ref.dtype == np.dtype(dtype) and fast.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(fast, _numpy_expected(x, y))


def test_float_layout_ops_keep_the_numpy_kernels(monkeypatch):
    calls: list[str] = []
    real = flayout.transpose
    monkeypatch.setattr(flayout, "transpose", lambda *a, **k: (calls.append("t"), real(*a, **k))[1])
    x = np.arange(120, dtype=np.float32).reshape(2, 3, 5, 4)
    y = np.zeros((2, 2, 3, 1), np.float32)
    out = run_graph(_layout_graph("float32"), {"x": x, "y": y}, fast=True)["out"]
    assert calls == []
    np.testing.assert_array_equal(out, _numpy_expected(x, y))
