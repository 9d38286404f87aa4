"""Small generated step graphs with explicit state, for the streaming tests.

``recurrent_step``: a tanh RNN cell with a causal frame buffer (the shape of a streaming KWS
model: conv window state + recurrent state):

    window = [buf ; x]                 buf' = window[:, F:]       (2 past frames, Concat/Slice)
    h'     = tanh(h·A + window·B + b)                              (MatMul, Add, Tanh)
    y      = h'·C + c                                              (Gemm)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FEATURES = 6
HIDDEN = 8
CLASSES = 4
PAST = 2


def recurrent_step(seed: int = 0, state_suffix: str = "_next") -> onnx.ModelProto:
    """The step graph above with fixed-seed random weights; state outputs are named
    ``<input><state_suffix>``."""
    rng = np.random.default_rng(seed)
    f, h, k = FEATURES, HIDDEN, CLASSES
    inits = [
        numpy_helper.from_array((rng.standard_normal((h, h)) * 0.4).astype(np.float32), "A"),
        numpy_helper.from_array((rng.standard_normal(((PAST + 1) * f, h)) * 0.3)
                                .astype(np.float32), "B"),
        numpy_helper.from_array((rng.standard_normal(h) * 0.1).astype(np.float32), "b"),
        numpy_helper.from_array((rng.standard_normal((k, h))).astype(np.float32), "C"),
        numpy_helper.from_array((rng.standard_normal(k) * 0.1).astype(np.float32), "c"),
        numpy_helper.from_array(np.array([f], np.int64), "start"),
        numpy_helper.from_array(np.array([(PAST + 1) * f], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Concat", ["buf", "x"], ["window"], axis=1),
        helper.make_node("Slice", ["window", "start", "end", "axis1"], ["buf" + state_suffix]),
        helper.make_node("MatMul", ["h", "A"], ["ha"]),
        helper.make_node("MatMul", ["window", "B"], ["wb"]),
        helper.make_node("Add", ["ha", "wb"], ["pre0"]),
        helper.make_node("Add", ["pre0", "b"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["h" + state_suffix]),
        helper.make_node("Gemm", ["h" + state_suffix, "C", "c"], ["y"], transB=1),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "recurrent_step",
        [vi("x", TensorProto.FLOAT, [1, f]), vi("buf", TensorProto.FLOAT, [1, PAST * f]),
         vi("h", TensorProto.FLOAT, [1, h])],
        [vi("y", TensorProto.FLOAT, [1, k]), vi("buf" + state_suffix, TensorProto.FLOAT,
                                                [1, PAST * f]),
         vi("h" + state_suffix, TensorProto.FLOAT, [1, h])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def numpy_reference(model_seed: int, xs: np.ndarray) -> np.ndarray:
    """The same recurrence written directly in float32 NumPy, for the float graph."""
    m = recurrent_step(model_seed)
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    buf = np.zeros((1, PAST * FEATURES), np.float32)
    h = np.zeros((1, HIDDEN), np.float32)
    ys = []
    for x in xs:
        window = np.concatenate([buf, x.reshape(1, -1).astype(np.float32)], axis=1)
        buf = window[:, FEATURES:]
        h = np.tanh(h @ w["A"] + window @ w["B"] + w["b"])
        ys.append(h @ w["C"].T + w["c"])
    return np.stack(ys)


def frames(n: int, seed: int) -> np.ndarray:
    """``n`` input frames ``[n, 1, FEATURES]``: a slow sinusoid plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    x = np.sin(t / 7.0 + np.arange(FEATURES)[None, :]) + 0.3 * rng.standard_normal((n, FEATURES))
    return x.astype(np.float32)[:, None, :]


def calibration(model_seed: int, n: int = 200, seed: int = 5) -> dict[str, np.ndarray]:
    """Calibration feeds (inputs and visited states) from streaming the float graph."""
    m = recurrent_step(model_seed)
    w = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    xs = frames(n, seed)
    buf = np.zeros((1, PAST * FEATURES), np.float32)
    h = np.zeros((1, HIDDEN), np.float32)
    data: dict[str, list[np.ndarray]] = {"x": [], "buf": [], "h": []}
    for x in xs:
        data["x"].append(x)
        data["buf"].append(buf)
        data["h"].append(h)
        window = np.concatenate([buf, x], axis=1)
        buf = window[:, FEATURES:]
        h = np.tanh(h @ w["A"] + window @ w["B"] + w["b"]).astype(np.float32)
    return {k: np.stack(v) for k, v in data.items()}
