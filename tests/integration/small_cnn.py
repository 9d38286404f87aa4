"""A small float CNN built with onnx.helper, and data to calibrate and run it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT_SHAPE = (1, 3, 16, 16)
CLASSES = 10


def build_small_cnn(seed: int = 0) -> onnx.ModelProto:
    """conv 3→8 + ReLU → max pool 2×2 → conv 8→16 stride 2 + ReLU → flatten → FC → logits."""
    rng = np.random.default_rng(seed)
    inits = []

    def const(name: str, shape: tuple[int, ...], fan_in: int | None = None) -> str:
        scale = np.sqrt(2.0 / fan_in) if fan_in else 0.05
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", const("w1", (8, 3, 3, 3), 27), const("b1", (8,))],
                         ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", const("w2", (16, 8, 3, 3), 72), const("b2", (16,))],
                         ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["flat"]),
        helper.make_node("Gemm", ["flat", const("wf", (CLASSES, 256), 256), const("bf", (CLASSES,))],
                         ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def images(n: int, seed: int) -> np.ndarray:
    """``n`` smooth random images, shape (n, *INPUT_SHAPE): the calibration layout (first
    axis = samples)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, 1, 3, 4, 4)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=3), 4, axis=4) + \
        0.1 * rng.standard_normal((n, *INPUT_SHAPE)).astype(np.float32)
