"""Small float ONNX models built with onnx.helper (fixed-seed random weights) for the tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.k = 0

    def const(self, value: np.ndarray, name: str | None = None) -> str:
        self.k += 1
        name = name or f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, *shape: int, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        s = scale if scale is not None else 1.0 / np.sqrt(fan_in)
        return self.const((self.rng.standard_normal(shape) * s).astype(np.float32))

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        self.k += 1
        out = f"{op.lower()}_{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.k}", **attrs))
        return out

    def model(self, name: str, inputs: list[tuple[str, list[int]]], out: str,
              out_shape: list[int], opset: int = OPSET) -> onnx.ModelProto:
        self.nodes[-1].output[0] = "y"
        for n in self.nodes[:-1]:
            for i, x in enumerate(n.input):
                if x == out:
                    n.input[i] = "y"
        g = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
            self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def small_cnn(seed: int = 0, batchnorm: bool = True, depthwise: bool = True) -> onnx.ModelProto:
    """Conv(+BN)+ReLU → MaxPool → depthwise Conv+ReLU → 1×1 Conv+Clip(0,6) → residual Add →
    GlobalAveragePool → Flatten → Gemm. Input ``x [1, 3, 16, 16]``, output ``y [1, 10]``."""
    b = _Builder(seed)
    h = b.node("Conv", ["x", b.weight(8, 3, 3, 3), b.weight(8, scale=0.1)], pads=[1, 1, 1, 1])
    if batchnorm:
        h = b.node("BatchNormalization", [
            h, b.const(b.rng.uniform(0.5, 1.5, 8).astype(np.float32)),
            b.const(b.rng.normal(0, 0.1, 8).astype(np.float32)),
            b.const(b.rng.normal(0, 0.1, 8).astype(np.float32)),
            b.const(b.rng.uniform(0.5, 1.5, 8).astype(np.float32))], epsilon=1e-5)
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    if depthwise:
        d = b.node("Conv", [h, b.weight(8, 1, 3, 3), b.weight(8, scale=0.1)], pads=[1, 1, 1, 1],
                   group=8)
    else:
        d = b.node("Conv", [h, b.weight(8, 8, 3, 3), b.weight(8, scale=0.1)], pads=[1, 1, 1, 1])
    d = b.node("Relu", [d])
    r = b.node("Add", [h, d])
    p = b.node("Conv", [r, b.weight(16, 8, 1, 1), b.weight(16, scale=0.1)])
    p = b.node("Clip", [p, b.const(np.float32(0.0)), b.const(np.float32(6.0))])
    g = b.node("GlobalAveragePool", [p])
    f = b.node("Flatten", [g])
    y = b.node("Gemm", [f, b.weight(10, 16), b.weight(10, scale=0.1)], transB=1)
    return b.model("small_cnn", [("x", [1, 3, 16, 16])], y, [1, 10])


def small_mlp(seed: int = 0) -> onnx.ModelProto:
    """MatMul+Add → ReLU → Gemm → Sigmoid... kept QDQ-friendly: ``x [4, 20]`` → ``y [4, 5]``."""
    b = _Builder(seed)
    h = b.node("MatMul", ["x", b.weight(20, 32, scale=0.3)])
    h = b.node("Add", [h, b.weight(32, scale=0.1)])
    h = b.node("Relu", [h])
    h = b.node("Gemm", [h, b.weight(24, 32), b.weight(24, scale=0.1)], transB=1)
    h = b.node("Relu", [h])
    y = b.node("Gemm", [h, b.weight(24, 5, scale=0.3), b.weight(5, scale=0.1)])
    return b.model("small_mlp", [("x", [4, 20])], y, [4, 5])


def encoder_block(seed: int = 0, t: int = 8, d: int = 32, heads: int = 4,
                  ff: int = 64) -> onnx.ModelProto:
    """Pre-LN transformer encoder block: LN → multi-head self-attention → residual → LN →
    MLP with torch's Erf GELU → residual. Input ``x [1, T, D]``, output ``y [1, T, D]``."""
    b = _Builder(seed)
    dh = d // heads

    def ln(x: str) -> str:
        return b.node("LayerNormalization", [
            x, b.const(b.rng.uniform(0.8, 1.2, d).astype(np.float32)),
            b.const(b.rng.normal(0, 0.05, d).astype(np.float32))], axis=-1, epsilon=1e-5)

    def linear(x: str, n_in: int, n_out: int) -> str:
        return b.node("Add", [b.node("MatMul", [x, b.weight(n_in, n_out)]),
                              b.weight(n_out, scale=0.05)])

    def heads_of(x: str, perm: list[int]) -> str:
        r = b.node("Reshape", [x, b.const(np.array([1, t, heads, dh], np.int64))])
        return b.node("Transpose", [r], perm=perm)

    h = ln("x")
    q = heads_of(linear(h, d, d), [0, 2, 1, 3])
    k = heads_of(linear(h, d, d), [0, 2, 3, 1])
    v = heads_of(linear(h, d, d), [0, 2, 1, 3])
    s = b.node("Div", [b.node("MatMul", [q, k]), b.const(np.float32(np.sqrt(dh)))])
    p = b.node("Softmax", [s], axis=-1)
    a = b.node("Transpose", [b.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
    a = b.node("Reshape", [a, b.const(np.array([1, t, d], np.int64))])
    x1 = b.node("Add", ["x", linear(a, d, d)])
    u = linear(ln(x1), d, ff)
    e = b.node("Erf", [b.node("Div", [u, b.const(np.float32(np.sqrt(2.0)))])])
    e = b.node("Add", [e, b.const(np.float32(1.0))])
    g = b.node("Mul", [b.node("Mul", [u, e]), b.const(np.float32(0.5))])
    y = b.node("Add", [x1, linear(g, ff, d)])
    return b.model("encoder_block", [("x", [1, t, d])], y, [1, t, d])


def misc_cnn(seed: int = 0) -> onnx.ModelProto:
    """Exercises the remaining lowerings: Sigmoid/Tanh (QLut), Concat with different scales,
    AveragePool, nearest Resize, Sub, Transpose/Reshape. ``x [1, 4, 8, 8]`` → ``y [1, 256]``."""
    b = _Builder(seed)
    c = b.node("Conv", ["x", b.weight(4, 4, 3, 3), b.weight(4, scale=0.1)], pads=[1, 1, 1, 1])
    s = b.node("Sigmoid", [c])
    t = b.node("Tanh", [b.node("Mul", [c, b.const(np.float32(0.5))])])
    cat = b.node("Concat", [s, t, "x"], axis=1)
    p = b.node("AveragePool", [cat], kernel_shape=[2, 2], strides=[2, 2])
    r = b.node("Resize", [p, "", b.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    d = b.node("Sub", [r, b.node("Relu", [cat])])
    tr = b.node("Transpose", [d], perm=[0, 2, 3, 1])
    y = b.node("Reshape", [b.node("Conv", [b.node("Transpose", [tr], perm=[0, 3, 1, 2]),
                                          b.weight(4, 12, 1, 1)]),
                           b.const(np.array([1, -1], np.int64))])
    return b.model("misc_cnn", [("x", [1, 4, 8, 8])], y, [1, 256])


def with_unsupported_ops(seed: int = 0) -> onnx.ModelProto:
    """A float model the integer lowering cannot take: ReduceMean and Sqrt after a Conv."""
    b = _Builder(seed)
    c = b.node("Conv", ["x", b.weight(2, 1, 3, 3)])
    e = b.node("ReduceMean", [c], axes=[1], keepdims=1)
    y = b.node("Sqrt", [b.node("Relu", [e])])
    return b.model("unsupported", [("x", [1, 1, 6, 6])], y, [1, 1, 4, 4])


def conv1d_layout(seed: int = 0) -> onnx.ModelProto:
    """Conv1d + ReLU, then the layout ops the integer graph keeps: Pad, Slice, Unsqueeze,
    Squeeze, Split, Concat, Gather, Flatten; head MatMul + Add. ``x [1, 4, 16]`` → ``y [1, 6]``.
    GELU in the ``x·Φ`` form with ``Mul(x, 1/√2)``."""
    b = _Builder(seed)
    c = b.node("Relu", [b.node("Conv", ["x", b.weight(6, 4, 3), b.weight(6, scale=0.1)],
                               pads=[1, 1])])
    p = b.node("Pad", [c, b.const(np.array([0, 0, 1, 0, 0, 1], np.int64))])
    s = b.node("Slice", [p, b.const(np.array([1], np.int64)), b.const(np.array([17], np.int64)),
                         b.const(np.array([2], np.int64))])
    u = b.node("Squeeze", [b.node("Unsqueeze", [s, b.const(np.array([2], np.int64))]),
                           b.const(np.array([2], np.int64))])
    b.k += 1
    s0, s1 = f"split_a_{b.k}", f"split_b_{b.k}"
    b.nodes.append(helper.make_node("Split", [u, b.const(np.array([3, 3], np.int64))],
                                    [s0, s1], axis=1))
    cat = b.node("Concat", [s1, s0], axis=1)
    gth = b.node("Gather", [cat, b.const(np.array([0, 5, 10, 15], np.int64))], axis=2)
    f = b.node("Flatten", [gth])
    h = b.node("Add", [b.node("MatMul", [f, b.weight(24, 12)]), b.weight(12, scale=0.1)])
    e = b.node("Erf", [b.node("Mul", [h, b.const(np.float32(1 / np.sqrt(2.0)))])])
    g = b.node("Mul", [b.node("Mul", [h, b.const(np.float32(0.5))]),
                       b.node("Add", [e, b.const(np.float32(1.0))])])
    y = b.node("Gemm", [g, b.weight(6, 12)], transB=1)
    return b.model("conv1d_layout", [("x", [1, 4, 16])], y, [1, 6])


def embedding_head(seed: int = 0, vocab: int = 50, t: int = 8, d: int = 16) -> onnx.ModelProto:
    """Token ids ``ids [1, T]`` (int64) → embedding Gather → LayerNorm → MatMul → ``y [1, T, 4]``."""
    b = _Builder(seed)
    e = b.node("Gather", [b.weight(vocab, d, scale=1.0), "ids"], axis=0)
    n = b.node("LayerNormalization", [e, b.const(np.ones(d, np.float32)),
                                      b.const(np.zeros(d, np.float32))], axis=-1)
    b.node("MatMul", [n, b.weight(d, 4)])
    b.nodes[-1].output[0] = "y"
    g = helper.make_graph(b.nodes, "embedding_head",
                          [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, t])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, 4])],
                          b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def decomposed_layernorm_mlp(seed: int = 0, t: int = 8, d: int = 32) -> onnx.ModelProto:
    """LayerNorm spelled out in primitives (opset-13 style export), then MatMul + Add."""
    b = _Builder(seed)
    mu = b.node("ReduceMean", ["x"], axes=[-1])
    dv = b.node("Sub", ["x", mu])
    var = b.node("ReduceMean", [b.node("Pow", [dv, b.const(np.float32(2.0))])], axes=[-1])
    sd = b.node("Sqrt", [b.node("Add", [var, b.const(np.float32(1e-5))])])
    n = b.node("Div", [dv, sd])
    n = b.node("Add", [b.node("Mul", [n, b.const(b.rng.uniform(0.8, 1.2, d).astype(np.float32))]),
                       b.const(b.rng.normal(0, 0.1, d).astype(np.float32))])
    y = b.node("Add", [b.node("MatMul", [n, b.weight(d, 16)]), b.weight(16, scale=0.1)])
    return b.model("decomposed_ln", [("x", [1, t, d])], y, [1, t, 16], opset=13)


def batchnorm_after_pool(seed: int = 0) -> onnx.ModelProto:
    """A BatchNormalization with no Conv before it (it cannot fold): ``x [1, 4, 8, 8]``."""
    b = _Builder(seed)
    p = b.node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("BatchNormalization", [
        p, b.const(b.rng.uniform(-1.5, 1.5, 4).astype(np.float32)),
        b.const(b.rng.normal(0, 0.3, 4).astype(np.float32)),
        b.const(b.rng.normal(0, 0.3, 4).astype(np.float32)),
        b.const(b.rng.uniform(0.5, 1.5, 4).astype(np.float32))])
    return b.model("bn_after_pool", [("x", [1, 4, 8, 8])], y, [1, 4, 4, 4])


def recurrent_step(seed: int = 0, suffix: str = "_next", features: int = 4, memory: int = 8,
                   hidden: int = 6, classes: int = 3) -> onnx.ModelProto:
    """One hop of a stream with three kinds of state (outputs named input + ``suffix``):

    * ``m' = m·A + x·B`` — a leaky linear memory (an ``Add`` sets its grid), A diagonal in
      [0.9, 0.97] (exact on the per-channel int8 weight grid, so only activations round);
    * ``buf' = [buf; x][:, F:]`` — a causal frame buffer (``Concat``/``Slice``);
    * ``h' = tanh([x; h]·W)`` — a tanh RNN cell (the LUT's fixed grid).

    ``y = m'·W_m + [buf; x]·W_b + h'·W_h``. Inputs ``x [1, F]``, ``m``, ``buf``, ``h``;
    outputs ``y [1, classes]`` then the three next states.
    """
    b = _Builder(seed)
    a = np.diag(np.linspace(0.9, 0.97, memory)).astype(np.float32)
    m1 = b.node("MatMul", ["m", b.const(a)])
    m2 = b.node("MatMul", ["x", b.weight(features, memory, scale=0.5)])
    b.nodes.append(helper.make_node("Add", [m1, m2], ["m" + suffix], name="memory_update"))
    window = b.node("Concat", ["buf", "x"], axis=1)
    b.nodes.append(helper.make_node(
        "Slice", [window, b.const(np.array([features], np.int64)),
                  b.const(np.array([3 * features], np.int64)),
                  b.const(np.array([1], np.int64))], ["buf" + suffix], name="buffer_shift"))
    xh = b.node("Concat", ["x", "h"], axis=1)
    pre = b.node("MatMul", [xh, b.weight(features + hidden, hidden, scale=0.6)])
    b.nodes.append(helper.make_node("Tanh", [pre], ["h" + suffix], name="cell"))
    y1 = b.node("MatMul", ["m" + suffix, b.weight(memory, classes)])
    y2 = b.node("MatMul", [window, b.weight(3 * features, classes)])
    y3 = b.node("MatMul", ["h" + suffix, b.weight(hidden, classes)])
    y12 = b.node("Add", [y1, y2])
    b.nodes.append(helper.make_node("Add", [y12, y3], ["y"], name="readout"))
    vi = helper.make_tensor_value_info
    shapes = {"m": memory, "buf": 2 * features, "h": hidden}
    g = helper.make_graph(
        b.nodes, "recurrent_step",
        [vi("x", TensorProto.FLOAT, [1, features])]
        + [vi(k, TensorProto.FLOAT, [1, n]) for k, n in shapes.items()],
        [vi("y", TensorProto.FLOAT, [1, classes])]
        + [vi(k + suffix, TensorProto.FLOAT, [1, n]) for k, n in shapes.items()], b.inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
