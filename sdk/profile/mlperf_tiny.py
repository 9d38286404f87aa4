"""MLPerf Tiny's four reference models, rebuilt from their published layer lists with random
weights (cost depends on shapes, not on trained values), and the published measurements on
the two STM32 boards they were measured on.

Architectures (MLPerf Tiny v0.5 reference models, Banbury et al., "MLPerf Tiny Benchmark",
NeurIPS Datasets and Benchmarks 2021; mlcommons/tiny ``benchmark/training``):

* **kws** — DS-CNN: 49x10 MFCC input, conv 10x4 stride 2 (64) + ReLU, 4 x (depthwise 3x3 +
  ReLU, pointwise 64 + ReLU), global average pool, FC 12. 2.66 M MACs.
* **vww** — MobileNetV1 α=0.25, 96x96x3: conv 3x3 s2 (8), 13 depthwise-separable blocks
  (16, 32 s2, 32, 64 s2, 64, 128 s2, 5 x 128, 256 s2, 256), global average pool, FC 2.
* **ic** — ResNet-8, 32x32x3: conv 3x3 (16), three residual stacks (16, 32 s2, 64 s2; two
  3x3 convs each, a 1x1 stride-2 projection on the shortcut of the last two), global
  average pool, FC 10.
* **ad** — FC autoencoder, 640 inputs: 4 x FC 128 + ReLU, FC 8 + ReLU, 4 x FC 128 + ReLU,
  FC 640. Batch norms of the trained models fold into the layers and are left out.

:data:`PUBLISHED` holds the measurements each board's submission published (median
latency = 1 / median throughput; median energy per inference), with the results file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODELS = ("kws", "vww", "ic", "ad")
INPUTS = {"kws": (1, 1, 49, 10), "vww": (1, 3, 96, 96), "ic": (1, 3, 32, 32), "ad": (1, 640)}
NAMES = {"kws": "DS-CNN keyword spotting", "vww": "MobileNetV1 0.25 visual wake words",
         "ic": "ResNet-8 image classification", "ad": "FC autoencoder anomaly detection"}


@dataclass(frozen=True)
class Published:
    model: str
    board: str            # our target name
    stack: str            # "tflm-reference" or "x-cube-ai"
    latency_ms: float
    energy_uj: float
    source: str


_V05 = "mlcommons/tiny_results_v0.5 closed/reference/results/Nucleo-L4R5ZI/{m}/"
_V07L4 = "mlcommons/tiny_results_v0.7 closed/STMicroelectronics/results/NUCLEO_L4R5ZI/{m}/"
_V07H7 = "mlcommons/tiny_results_v0.7 closed/STMicroelectronics/results/NUCLEO-H7A3ZI-Q/{m}/"

PUBLISHED: tuple[Published, ...] = (
    # TFLite Micro reference kernels, NUCLEO-L4R5ZI @ 120 MHz (MLPerf Tiny v0.5 reference)
    # latency from performance/results.txt, energy from energy/results.txt
    Published("kws", "nucleo-l4r5zi", "tflm-reference", 1e3 / 5.497, 7373.704,
              _V05.format(m="kws")),
    Published("vww", "nucleo-l4r5zi", "tflm-reference", 1e3 / 1.665, 24312.648,
              _V05.format(m="vww")),
    Published("ic", "nucleo-l4r5zi", "tflm-reference", 1e3 / 1.420, 29207.010,
              _V05.format(m="ic")),
    Published("ad", "nucleo-l4r5zi", "tflm-reference", 1e3 / 99.487, 416.312,
              _V05.format(m="ad")),
    # X-CUBE-AI (ST), MLPerf Tiny v0.7; latency = 1 / median throughput of the energy run
    Published("kws", "nucleo-l4r5zi", "x-cube-ai", 1e3 / 10.298, 4635.681,
              _V07L4.format(m="kws")),
    Published("vww", "nucleo-l4r5zi", "x-cube-ai", 1e3 / 3.930, 12293.282,
              _V07L4.format(m="vww")),
    Published("ic", "nucleo-l4r5zi", "x-cube-ai", 1e3 / 3.962, 12298.289,
              _V07L4.format(m="ic")),
    Published("ad", "nucleo-l4r5zi", "x-cube-ai", 1e3 / 103.632, 431.211,
              _V07L4.format(m="ad")),
    Published("kws", "nucleo-h7a3zi", "x-cube-ai", 1e3 / 44.863, 3713.191,
              _V07H7.format(m="kws")),
    Published("vww", "nucleo-h7a3zi", "x-cube-ai", 1e3 / 15.522, 10487.668,
              _V07H7.format(m="vww")),
    Published("ic", "nucleo-h7a3zi", "x-cube-ai", 1e3 / 14.197, 11200.203,
              _V07H7.format(m="ic")),
    Published("ad", "nucleo-h7a3zi", "x-cube-ai", 1e3 / 437.867, 349.026,
              _V07H7.format(m="ad")),
)


def published(model: str, board: str, stack: str) -> Published | None:
    for p in PUBLISHED:
        if (p.model, p.board, p.stack) == (model, board, stack):
            return p
    return None


class _Builder:
    """Float ONNX graph in NCHW with random He-scaled weights."""

    def __init__(self, name: str, shape: tuple[int, ...], seed: int) -> None:
        from onnx import TensorProto, helper

        self.h, self.tp = helper, TensorProto
        self.name, self.shape = name, shape
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.k = 0

    def _const(self, arr: np.ndarray) -> str:
        from onnx import numpy_helper

        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def _out(self) -> str:
        self.k += 1
        return f"t{self.k}"

    def conv(self, x: str, cin: int, cout: int, kh: int, kw: int, stride: int,
             pads: list[int], group: int = 1, relu: bool = True) -> str:
        fan_in = (cin // group) * kh * kw
        w = self.rng.standard_normal((cout, cin // group, kh, kw)) * np.sqrt(2.0 / fan_in)
        b = self.rng.standard_normal(cout) * 0.05
        y = self._out()
        self.nodes.append(self.h.make_node(
            "Conv", [x, self._const(w), self._const(b)], [y], kernel_shape=[kh, kw],
            strides=[stride, stride], pads=pads, group=group, name=f"conv{self.k}"))
        return self.relu(y) if relu else y

    def relu(self, x: str) -> str:
        y = self._out()
        self.nodes.append(self.h.make_node("Relu", [x], [y], name=f"relu{self.k}"))
        return y

    def add(self, a: str, b: str) -> str:
        y = self._out()
        self.nodes.append(self.h.make_node("Add", [a, b], [y], name=f"add{self.k}"))
        return y

    def gap_flatten(self, x: str) -> str:
        p, f = self._out(), self._out()
        self.nodes.append(self.h.make_node("GlobalAveragePool", [x], [p], name=f"gap{self.k}"))
        self.nodes.append(self.h.make_node("Flatten", [p], [f], axis=1, name=f"flat{self.k}"))
        return f

    def fc(self, x: str, n_in: int, n_out: int, relu: bool) -> str:
        w = self.rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
        b = self.rng.standard_normal(n_out) * 0.05
        m, y = self._out(), self._out()
        self.nodes.append(self.h.make_node("MatMul", [x, self._const(w)], [m],
                                           name=f"fc{self.k}"))
        self.nodes.append(self.h.make_node("Add", [m, self._const(b)], [y],
                                           name=f"bias{self.k}"))
        return self.relu(y) if relu else y

    def model(self, out: str, out_shape: list[int]):
        g = self.h.make_graph(
            self.nodes, self.name,
            [self.h.make_tensor_value_info("x", self.tp.FLOAT, list(self.shape))],
            [self.h.make_tensor_value_info(out, self.tp.FLOAT, out_shape)], self.inits)
        m = self.h.make_model(g, opset_imports=[self.h.make_opsetid("", 17)])
        m.ir_version = 8
        return m


def _same(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one axis."""
    out = -(-size // s)
    total = max(0, (out - 1) * s + k - size)
    return total // 2, total - total // 2


def _pads(h: int, w: int, kh: int, kw: int, s: int) -> list[int]:
    (t, b), (left, r) = _same(h, kh, s), _same(w, kw, s)
    return [t, left, b, r]


def build_onnx(name: str, seed: int = 0):
    """The float ONNX model (``onnx.ModelProto``) of ``name`` (one of :data:`MODELS`)."""
    if name not in MODELS:
        raise ValueError(f"unknown MLPerf Tiny model {name!r}; known: {MODELS}")
    b = _Builder(f"mlperf_{name}", INPUTS[name], seed)
    if name == "kws":
        x = b.conv("x", 1, 64, 10, 4, 2, _pads(49, 10, 10, 4, 2))
        for _ in range(4):
            x = b.conv(x, 64, 64, 3, 3, 1, [1, 1, 1, 1], group=64)
            x = b.conv(x, 64, 64, 1, 1, 1, [0, 0, 0, 0])
        return b.model(b.fc(b.gap_flatten(x), 64, 12, relu=False), [1, 12])
    if name == "vww":
        size, ch = 96, 8
        x = b.conv("x", 3, ch, 3, 3, 2, _pads(size, size, 3, 3, 2))
        size //= 2
        for cout, s in [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1),
                        (128, 1), (128, 1), (128, 1), (128, 1), (256, 2), (256, 1)]:
            x = b.conv(x, ch, ch, 3, 3, s, _pads(size, size, 3, 3, s), group=ch)
            size = -(-size // s)
            x = b.conv(x, ch, cout, 1, 1, 1, [0, 0, 0, 0])
            ch = cout
        return b.model(b.fc(b.gap_flatten(x), 256, 2, relu=False), [1, 2])
    if name == "ic":
        x = b.conv("x", 3, 16, 3, 3, 1, [1, 1, 1, 1])
        ch, size = 16, 32
        for cout, s in [(16, 1), (32, 2), (64, 2)]:
            y = b.conv(x, ch, cout, 3, 3, s, _pads(size, size, 3, 3, s))
            y = b.conv(y, cout, cout, 3, 3, 1, [1, 1, 1, 1], relu=False)
            short = x if s == 1 and ch == cout else b.conv(x, ch, cout, 1, 1, s, [0, 0, 0, 0],
                                                           relu=False)
            x = b.relu(b.add(y, short))
            ch, size = cout, -(-size // s)
        return b.model(b.fc(b.gap_flatten(x), 64, 10, relu=False), [1, 10])
    x = "x"
    dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    for i in range(len(dims) - 1):
        x = b.fc(x, dims[i], dims[i + 1], relu=i < len(dims) - 2)
    return b.model(x, [1, 640])


def build_integer(name: str, seed: int = 0, calib_samples: int = 4):
    """The model compiled to the SDK's integer graph (calibrated on random inputs) and its
    device part (integer I/O): returns ``(bundle, integer_core_graph, raw_feeds)``."""
    import tempfile
    from pathlib import Path

    import onnx

    from sdk.compile.pipeline import compile_model
    from sdk.profile.stream import integer_core

    rng = np.random.default_rng(seed + 1)
    shape = INPUTS[name]
    calib = {"x": rng.standard_normal((calib_samples, *shape[1:])).astype(np.float32)}
    with tempfile.TemporaryDirectory(prefix="edge-mlperf-") as tmp:
        path = Path(tmp) / f"{name}.onnx"
        onnx.save(build_onnx(name, seed), path)
        bundle = compile_model(path, calib)
    core = integer_core(bundle.graph)
    feeds = {}
    for n in core.inputs:
        t = core.tensor(n)
        lo, hi = (-128, 127) if t.dtype == "int8" else (0, 255)
        feeds[n] = rng.integers(lo, hi + 1, t.shape).astype(t.dtype)
    return bundle, core, feeds


def reference_outputs(core, feeds) -> dict[str, np.ndarray]:
    """The integer graph's outputs from the SDK's reference interpreter (what the device's
    outputs are checked against, bit for bit)."""
    from sdk.ops.interpreter import Interpreter

    return Interpreter(core).run(dict(feeds), outputs=list(core.outputs))
