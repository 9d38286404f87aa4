"""Small hand-built graphs for the profiler tests (shapes set by hand, as a compiler would)."""

from __future__ import annotations

import numpy as np

from sdk.graph.ir import Graph, Tensor

REQ = {"m0": 1 << 30, "shift": -7, "out_zp": 0, "act_min": -128, "act_max": 127}


def conv_graph() -> Graph:
    """x[1,3,8,8] -QConv2d 3x3 pad 1-> a[1,4,8,8] -QDepthwiseConv2d 3x3 s2 pad 1-> b[1,4,4,4]"""
    rng = np.random.default_rng(0)
    g = Graph("conv")
    g.add_tensor(Tensor("x", "int8", (1, 3, 8, 8)))
    g.add_constant("w1", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8))
    g.add_constant("b1", np.zeros(4, np.int32))
    g.add_constant("w2", rng.integers(-127, 128, (4, 1, 3, 3)).astype(np.int8))
    g.add_tensor(Tensor("a", "int8", (1, 4, 8, 8)))
    g.add_tensor(Tensor("b", "int8", (1, 4, 4, 4)))
    g.add_node("QConv2d", ["x", "w1", "b1"], ["a"], name="conv", strides=[1, 1],
               pads=[1, 1, 1, 1], dilations=[1, 1], group=1, x_zp=0,
               **{**REQ, "m0": np.full(4, 1 << 30, np.int32), "shift": np.full(4, -7, np.int32)})
    g.add_node("QDepthwiseConv2d", ["a", "w2", ""], ["b"], name="dw", strides=[2, 2],
               pads=[1, 1, 1, 1], dilations=[1, 1], group=4, x_zp=0,
               **{**REQ, "m0": np.full(4, 1 << 30, np.int32), "shift": np.full(4, -7, np.int32)})
    g.inputs, g.outputs = ["x"], ["b"]
    return g


def fc_graph() -> Graph:
    """x[2,16] -QFullyConnected-> y[2,10] with bias."""
    rng = np.random.default_rng(1)
    g = Graph("fc")
    g.add_tensor(Tensor("x", "int8", (2, 16)))
    g.add_constant("w", rng.integers(-127, 128, (10, 16)).astype(np.int8))
    g.add_constant("bias", rng.integers(-500, 500, 10).astype(np.int32))
    g.add_tensor(Tensor("y", "int8", (2, 10)))
    g.add_node("QFullyConnected", ["x", "w", "bias"], ["y"], name="fc", x_zp=0,
               **{**REQ, "m0": np.full(10, 1 << 30, np.int32),
                  "shift": np.full(10, -7, np.int32)})
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def attention_graph(tokens: int = 6, dim: int = 8) -> Graph:
    """Single-head integer attention: Q, K, V, O projections, Q·Kᵀ, Shiftmax, P·V."""
    rng = np.random.default_rng(2)
    t, d = tokens, dim
    g = Graph("attention")
    g.add_tensor(Tensor("x", "int8", (t, d)))
    for p in "qkvo":
        g.add_constant(f"w{p}", rng.integers(-127, 128, (d, d)).astype(np.int8))
    for name, shape, dt in (("q", (t, d), "int8"), ("k", (t, d), "int8"), ("v", (t, d), "int8"),
                            ("kt", (d, t), "int8"), ("s", (t, t), "int8"),
                            ("p", (t, t), "int16"), ("ctx", (t, d), "int8"),
                            ("y", (t, d), "int8")):
        g.add_tensor(Tensor(name, dt, shape))
    fc = dict(x_zp=0, **{**REQ, "m0": np.full(d, 1 << 30, np.int32),
                         "shift": np.full(d, -7, np.int32)})
    mm = dict(a_zp=0, b_zp=0, **REQ)
    g.add_node("QFullyConnected", ["x", "wq", ""], ["q"], name="q_proj", **fc)
    g.add_node("QFullyConnected", ["x", "wk", ""], ["k"], name="k_proj", **fc)
    g.add_node("QFullyConnected", ["x", "wv", ""], ["v"], name="v_proj", **fc)
    g.add_node("Transpose", ["k"], ["kt"], name="k_t", perm=[1, 0])
    g.add_node("QMatMul", ["q", "kt"], ["s"], name="scores", **mm)
    g.add_node("Shiftmax", ["s"], ["p"], name="softmax", axis=-1, x0=-10, n=15, out_bits=16)
    g.add_node("QMatMul", ["p", "v"], ["ctx"], name="context", **mm)
    g.add_node("QFullyConnected", ["ctx", "wo", ""], ["y"], name="o_proj", **fc)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def float_attention_graph(tokens: int = 6, dim: int = 8) -> Graph:
    """The same attention in fp32 with ONNX ops (runs on the reference float kernels)."""
    rng = np.random.default_rng(3)
    t, d = tokens, dim
    g = Graph("float_attention")
    g.add_tensor(Tensor("x", "float32", (t, d)))
    for p in "qkvo":
        g.add_constant(f"w{p}", rng.standard_normal((d, d)).astype(np.float32) / d)
    for name, shape in (("q", (t, d)), ("k", (t, d)), ("v", (t, d)), ("kt", (d, t)),
                        ("s", (t, t)), ("p", (t, t)), ("ctx", (t, d)), ("y", (t, d))):
        g.add_tensor(Tensor(name, "float32", shape))
    g.add_node("MatMul", ["x", "wq"], ["q"], name="q_proj")
    g.add_node("MatMul", ["x", "wk"], ["k"], name="k_proj")
    g.add_node("MatMul", ["x", "wv"], ["v"], name="v_proj")
    g.add_node("Transpose", ["k"], ["kt"], name="k_t", perm=[1, 0])
    g.add_node("MatMul", ["q", "kt"], ["s"], name="scores")
    g.add_node("Softmax", ["s"], ["p"], name="softmax", axis=-1)
    g.add_node("MatMul", ["p", "v"], ["ctx"], name="context")
    g.add_node("MatMul", ["ctx", "wo"], ["y"], name="o_proj")
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def spiking_lmuformer(seed: int = 0):
    """The zoo's spiking LMUFormer with random weights: ``(LMUFormerWeights, step Graph)``."""
    from sdk.frontends import load_onnx
    from sdk.models import lmuformer as lmu

    cfg = lmu.LMUFormerConfig(spiking=True)
    rng = np.random.default_rng(seed)
    w = {k: (rng.standard_normal(s) * 0.5).astype(np.float32)
         for k, s in lmu.weight_shapes(cfg).items()}
    a_bar, b_bar = lmu.lmu_matrices(cfg.lmu_order, cfg.lmu_theta)
    w["a_bar"], w["b_bar"] = a_bar.astype(np.float32), b_bar.astype(np.float32)
    model = lmu.LMUFormerWeights(cfg, w)
    return model, load_onnx(lmu.build_step_onnx(model))
