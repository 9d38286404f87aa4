"""The MLPerf Tiny keyword-spotting architecture (DS-CNN, small), built as a float ONNX model
with random weights and compiled to an integer bundle by the SDK's own pipeline.

Input: 49 frames × 10 MFCC. Conv 64 filters 10×4 stride 2 (TFLite SAME padding), four
depthwise-separable blocks (3×3 depthwise + 1×1 pointwise, 64 channels), ReLU after each conv,
average pool over 25×5, fully-connected to 12 classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS = 64


def dscnn_onnx(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(name: str, x: str, cin: int, cout: int, k: tuple[int, int], stride: int,
             pads: list[int], group: int = 1) -> str:
        fan_in = cin // group * k[0] * k[1]
        w = (rng.standard_normal((cout, cin // group, *k)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.05).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}_w"),
                      numpy_helper.from_array(b, f"{name}_b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"],
                                      name=name, kernel_shape=list(k), strides=[stride, stride],
                                      pads=pads, group=group))
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [name], name=f"{name}_relu"))
        return name

    # SAME padding for 49×10 input, 10×4 kernel, stride 2: H pads 4 / 5, W pads 1 / 1
    x = conv("conv1", "mfcc", 1, CHANNELS, (10, 4), 2, [4, 1, 5, 1])
    for i in range(4):
        x = conv(f"dw{i}", x, CHANNELS, CHANNELS, (3, 3), 1, [1, 1, 1, 1], group=CHANNELS)
        x = conv(f"pw{i}", x, CHANNELS, CHANNELS, (1, 1), 1, [0, 0, 0, 0])
    nodes.append(helper.make_node("AveragePool", [x], ["pool"], name="pool",
                                  kernel_shape=[25, 5]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1))
    w = (rng.standard_normal((12, CHANNELS)) / 8).astype(np.float32)
    inits += [numpy_helper.from_array(w, "fc_w"),
              numpy_helper.from_array(np.zeros(12, np.float32), "fc_b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc",
                                  transB=1))
    graph = helper.make_graph(
        nodes, "kws_dscnn",
        [helper.make_tensor_value_info("mfcc", TensorProto.FLOAT, [1, 1, 49, 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 12])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def dscnn_bundle(tmp: Path, seed: int = 0):
    from sdk.compile.pipeline import compile_model

    rng = np.random.default_rng(seed + 1)
    calib = {"mfcc": rng.standard_normal((16, 1, 49, 10)).astype(np.float32)}
    return compile_model(dscnn_onnx(tmp / "kws_dscnn.onnx", seed), calib)


def dscnn_macs() -> int:
    """Hand count: conv1 25·5·64·(10·4) + 4 × (dw 25·5·64·9 + pw 25·5·64·64) + fc 64·12."""
    return 125 * 64 * 40 + 4 * (125 * 64 * 9 + 125 * 64 * 64) + 64 * 12
