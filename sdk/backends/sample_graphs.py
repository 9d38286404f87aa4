"""Small hand-built integer graphs that every backend must agree on.

They are built directly in the IR (no quantizer involved) with random int8 weights and the
multipliers TFLite would derive from the same scales, so the identical model can be written
to .tflite, exported to ONNX and run on the reference kernels:

* :func:`fc_graph`, :func:`conv_graph`, :func:`add_graph` — one op each (TFLite Micro checks);
* :func:`cnn_graph` — conv + ReLU, depthwise stride 2 with explicit pads, 1×1 conv, residual
  add, max pool, flatten, fully-connected;
* :func:`attention_graph` — a transformer-ish block: Q/K/V projections, QKᵀ, Shiftmax,
  P·V, output projection, residual add, a LUT non-linearity, a feed-forward layer;
* :func:`step_graph` — a stateful recurrent step: ``h_t = relu(W_x·x_t + W_h·h_{t−1})``,
  ``y_t = W_y·h_t`` with state in → state out.
"""

from __future__ import annotations

import math

import numpy as np

from sdk.frontends import tflite_format as tf
from sdk.graph.ir import Graph, QuantParams, Tensor
from sdk.kernels.requant import quantize_multiplier


class _Builder:
    def __init__(self, name: str, seed: int) -> None:
        self.g = Graph(name)
        self.rng = np.random.default_rng(seed)

    def act(self, name: str, shape: tuple[int, ...], scale: float, zp: int,
            dtype: str = "int8") -> str:
        self.g.add_tensor(Tensor(name, dtype, shape, QuantParams(np.float32(scale), zp)))
        return name

    def weights(self, name: str, shape: tuple[int, ...]) -> tuple[str, np.ndarray]:
        w = self.rng.integers(-127, 128, shape).astype(np.int8)
        s = self.rng.uniform(0.002, 0.01, shape[0]).astype(np.float32)
        self.g.add_constant(name, w, QuantParams(s, np.zeros(shape[0], np.int32), 0))
        return name, s

    def bias(self, name: str, n: int) -> str:
        self.g.add_constant(name, self.rng.integers(-3000, 3000, n).astype(np.int32))
        return name

    def q(self, name: str) -> tuple[float, int]:
        qp = self.g.tensor(name).quant
        return float(qp.scale), int(qp.zero_point)

    def clamp(self, out: str, relu: bool) -> dict[str, int]:
        s, z = self.q(out)
        lo, hi = tf.activation_range(tf.ACT_RELU if relu else tf.ACT_NONE, s, z, "int8")
        return {"act_min": lo, "act_max": hi}

    def fc(self, x: str, n_out: int, out: str, scale: float, zp: int, relu: bool = False) -> str:
        shape = self.g.tensor(x).shape
        w, s_w = self.weights(f"{out}_w", (n_out, shape[-1]))
        b = self.bias(f"{out}_b", n_out)
        self.act(out, shape[:-1] + (n_out,), scale, zp)
        s_x, z_x = self.q(x)
        m0, sh = tf.fc_multipliers(s_x, s_w, scale)
        self.g.add_node("QFullyConnected", [x, w, b], [out], name=out, x_zp=z_x, m0=m0, shift=sh,
                        out_zp=zp, dtype="int8", **self.clamp(out, relu))
        return out

    def conv(self, x: str, c_out: int, k: int, out: str, scale: float, zp: int, stride: int = 1,
             pads: tuple[int, int, int, int] = (0, 0, 0, 0), depthwise: bool = False,
             relu: bool = False) -> str:
        n, c, h, w_ = self.g.tensor(x).shape
        wshape = (c_out, 1, k, k) if depthwise else (c_out, c, k, k)
        w, s_w = self.weights(f"{out}_w", wshape)
        b = self.bias(f"{out}_b", c_out)
        ho = (h + pads[0] + pads[2] - k) // stride + 1
        wo = (w_ + pads[1] + pads[3] - k) // stride + 1
        self.act(out, (n, c_out, ho, wo), scale, zp)
        s_x, z_x = self.q(x)
        m0, sh = tf.conv_multipliers(s_x, s_w, scale)
        self.g.add_node("QDepthwiseConv2d" if depthwise else "QConv2d", [x, w, b], [out],
                        name=out, strides=[stride, stride], pads=list(pads), dilations=[1, 1],
                        group=c if depthwise else 1, x_zp=z_x, m0=m0, shift=sh, out_zp=zp,
                        dtype="int8", **self.clamp(out, relu))
        return out

    def add(self, a: str, b: str, out: str, scale: float, zp: int, relu: bool = False) -> str:
        self.act(out, self.g.tensor(a).shape, scale, zp)
        (s_a, z_a), (s_b, z_b) = self.q(a), self.q(b)
        self.g.add_node("QAdd", [a, b], [out], name=out, a_zp=z_a, b_zp=z_b, out_zp=zp,
                        dtype="int8", **tf.add_params(s_a, s_b, scale), **self.clamp(out, relu))
        return out

    def matmul(self, a: str, b: str, out: str, scale: float, zp: int) -> str:
        sa, sb = self.g.tensor(a).shape, self.g.tensor(b).shape
        self.act(out, sa[:-1] + sb[-1:], scale, zp)
        (s_a, z_a), (s_b, z_b) = self.q(a), self.q(b)
        m0, sh = tf.matmul_multiplier(s_a, s_b, scale)
        self.g.add_node("QMatMul", [a, b], [out], name=out, a_zp=z_a, b_zp=z_b, m0=m0, shift=sh,
                        out_zp=zp, act_min=-128, act_max=127, dtype="int8")
        return out


def fc_graph(batch: int = 4, k: int = 32, n: int = 16, seed: int = 0) -> Graph:
    """x int8 [batch, k] → QFullyConnected (per-channel weights, int32 bias) → y int8 [batch, n]."""
    b = _Builder("fc", seed)
    b.act("x", (batch, k), 0.05, 3)
    b.fc("x", n, "y", 0.25, -5)
    b.g.inputs, b.g.outputs = ["x"], ["y"]
    return b.g


def conv_graph(seed: int = 0) -> Graph:
    """x int8 [1, 4, 10, 10] → QConv2d 3×3, 8 channels, SAME pads, fused ReLU → y."""
    b = _Builder("conv", seed)
    b.act("x", (1, 4, 10, 10), 0.04, -7)
    b.conv("x", 8, 3, "y", 0.2, -20, pads=(1, 1, 1, 1), relu=True)
    b.g.inputs, b.g.outputs = ["x"], ["y"]
    return b.g


def add_graph(shape: tuple[int, ...] = (2, 3, 5, 7), seed: int = 0) -> Graph:
    """a, b int8 → QAdd (TFLite's integer add with rescaling) → y int8."""
    b = _Builder("add", seed)
    b.act("a", shape, 0.03, 10)
    b.act("b", shape, 0.11, -3)
    b.add("a", "b", "y", 0.09, 4)
    b.g.inputs, b.g.outputs = ["a", "b"], ["y"]
    return b.g


def cnn_graph(seed: int = 1, hw: int = 16, width: int = 8) -> Graph:
    """A small image classifier over x int8 [1, 3, hw, hw] → logits int8 [1, 10]."""
    b = _Builder("cnn", seed)
    b.act("x", (1, 3, hw, hw), 0.02, -10)
    b.conv("x", width, 3, "c1", 0.05, -128, pads=(1, 1, 1, 1), relu=True)
    b.conv("c1", width, 3, "dw", 0.08, -30, stride=2, pads=(1, 1, 1, 1), depthwise=True)
    b.conv("dw", width, 1, "pw", 0.07, 5)
    b.add("dw", "pw", "res", 0.1, -2, relu=True)
    q = hw // 4
    b.act("pool", (1, width, q, q), 0.1, -2)
    b.g.add_node("QMaxPool2d", ["res"], ["pool"], name="pool", kernel=[2, 2], strides=[2, 2],
                 pads=[0, 0, 0, 0], dilations=[1, 1])
    b.g.add_constant("flat_shape", np.array([1, width * q * q], np.int64))
    b.act("flat", (1, width * q * q), 0.1, -2)
    b.g.add_node("Reshape", ["pool", "flat_shape"], ["flat"], name="flat")
    b.fc("flat", 10, "logits", 0.3, 0)
    b.g.inputs, b.g.outputs = ["x"], ["logits"]
    return b.g


def segmentation_graph(seed: int = 4) -> Graph:
    """x int8 [1, 4, 8, 8] → Pad (zero point) → 3×3 conv + ReLU → nearest 2× upsampling →
    1×1 conv → per-pixel class logits int8 [1, 3, 16, 16]."""
    b = _Builder("segmentation", seed)
    g = b.g
    b.act("x", (1, 4, 8, 8), 0.03, 5)
    b.act("xp", (1, 4, 10, 10), 0.03, 5)
    g.add_constant("xp_pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    g.add_node("Pad", ["x", "xp_pads"], ["xp"], name="xp", mode="constant", value=5)
    b.conv("xp", 8, 3, "feat", 0.06, -128, relu=True)
    b.act("up", (1, 8, 16, 16), 0.06, -128)
    g.add_node("ResizeNearest", ["feat"], ["up"], name="up", sizes=[1, 8, 16, 16])
    b.conv("up", 3, 1, "logits", 0.1, 0)
    g.inputs, g.outputs = ["x"], ["logits"]
    return g


def _lut_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 → int8 table of tanh (built at compile time, as the quantizer's LUT ops are)."""
    q = np.arange(-128, 128)
    y = np.tanh(in_scale * (q - in_zp))
    return np.clip(np.round(y / out_scale) + out_zp, -128, 127).astype(np.int8)


def attention_graph(t: int = 8, d: int = 16, seed: int = 2) -> Graph:
    """A transformer-ish block over x int8 [t, d] (single head) → y int8 [t, d]."""
    b = _Builder("attention", seed)
    g = b.g
    b.act("x", (t, d), 0.05, 0)
    b.fc("x", d, "q", 0.08, 0)
    b.fc("x", d, "k", 0.08, 0)
    b.fc("x", d, "v", 0.08, 0)
    b.act("kT", (d, t), 0.08, 0)
    g.add_node("Transpose", ["k"], ["kT"], name="kT", perm=[1, 0])
    b.matmul("q", "kT", "scores", 0.1, 0)
    s_scores = 0.1
    g.add_tensor(Tensor("probs16", "int16", (t, t), QuantParams(np.float32(2.0 ** -15), 0)))
    g.add_node("Shiftmax", ["scores"], ["probs16"], name="softmax", axis=-1,
               x0=math.floor(-1.0 / s_scores), n=15, out_bits=16)
    b.act("probs", (t, t), 2.0 ** -8, -128)
    m0, sh = quantize_multiplier(2.0 ** -15 / 2.0 ** -8)
    g.add_node("Requantize", ["probs16"], ["probs"], name="probs", in_zp=0, m0=m0, shift=sh,
               out_zp=-128, act_min=-128, act_max=127, dtype="int8")
    b.matmul("probs", "v", "ctx", 0.06, 0)
    b.fc("ctx", d, "attn_out", 0.06, 0)
    b.add("x", "attn_out", "res", 0.07, 0)
    b.act("act", (t, d), 1.0 / 127, 0)
    g.add_constant("tanh_table", _lut_table(0.07, 0, 1.0 / 127, 0))
    g.add_node("QLut", ["res", "tanh_table"], ["act"], name="tanh")
    b.fc("act", d, "y", 0.05, 0)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def step_graph(n_in: int = 8, n_state: int = 16, n_out: int = 4, seed: int = 3) -> Graph:
    """One recurrent step: inputs (x_t, h_prev), outputs (y_t, h_t); feed h_t back next call."""
    b = _Builder("rnn_step", seed)
    b.act("x_t", (1, n_in), 0.05, 0)
    b.act("h_prev", (1, n_state), 0.05, -128)
    b.fc("x_t", n_state, "wx", 0.1, 0)
    b.fc("h_prev", n_state, "wh", 0.1, 0)
    b.add("wx", "wh", "h_t", 0.05, -128, relu=True)
    b.fc("h_t", n_out, "y_t", 0.2, 0)
    b.g.inputs, b.g.outputs = ["x_t", "h_prev"], ["y_t", "h_t"]
    b.g.metadata["state"] = {"h_prev": "h_t"}
    return b.g


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform random integer feeds over each input's full range."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        info = np.iinfo(t.dtype)
        out[name] = rng.integers(info.min, info.max + 1, t.shape).astype(t.dtype)
    return out
