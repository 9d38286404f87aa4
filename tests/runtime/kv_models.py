"""A float decoder-only transformer block built with onnx.helper, for the KV-cache tests.

Pre-LN block: LayerNorm → Q, K, V projections → heads → scores = Q·Kᵀ/√dh → Softmax → ·V →
output projection → residual → LayerNorm → MLP (ReLU) → residual. Every Reshape copies the
batch and sequence axes (shape entries 0), so the compiled integer graph runs for any number
of tokens T. The tensors a cache needs are named: ``k_rows`` and ``v_rows`` ([1, H, T, dh],
one row per token) and ``scores`` ([1, H, T, T], the Softmax input). The float model has no
causal mask: it is what calibration sees; the cache transform adds the integer mask.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def decoder_block(seed: int = 0, t: int = 16, d: int = 32, heads: int = 4,
                  ff: int = 64) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    counter = [0]
    dh = d // heads

    def const(value: np.ndarray) -> str:
        counter[0] += 1
        name = f"c{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        counter[0] += 1
        out = out or f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{counter[0]}", **attrs))
        return out

    def linear(x: str, n_in: int, n_out: int) -> str:
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.05).astype(np.float32)
        return node("Add", [node("MatMul", [x, const(w)]), const(b)])

    def ln(x: str) -> str:
        return node("LayerNormalization", [
            x, const(rng.uniform(0.8, 1.2, d).astype(np.float32)),
            const(rng.normal(0, 0.05, d).astype(np.float32))], axis=-1, epsilon=1e-5)

    def heads_of(x: str, out: str) -> str:
        r = node("Reshape", [x, const(np.array([0, 0, heads, dh], np.int64))])
        return node("Transpose", [r], out, perm=[0, 2, 1, 3])

    h = ln("x")
    q = heads_of(linear(h, d, d), "q_rows")
    k = heads_of(linear(h, d, d), "k_rows")
    v = heads_of(linear(h, d, d), "v_rows")
    kt = node("Transpose", [k], "k_cols", perm=[0, 1, 3, 2])
    s = node("Div", [node("MatMul", [q, kt]), const(np.float32(np.sqrt(dh)))], "scores")
    p = node("Softmax", [s], "probs", axis=-1)
    a = node("Transpose", [node("MatMul", [p, v])], perm=[0, 2, 1, 3])
    a = node("Reshape", [a, const(np.array([0, 0, d], np.int64))])
    x1 = node("Add", ["x", linear(a, d, d)])
    u = node("Relu", [linear(ln(x1), d, ff)])
    node("Add", [x1, linear(u, ff, d)], "y")
    g = helper.make_graph(
        nodes, "decoder_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, t, d])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def tokens(n: int, t: int, d: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` sequences of ``t`` token embeddings ``[n, 1, t, d]`` (float32)."""
    return np.random.default_rng(seed).standard_normal((n, 1, t, d)).astype(np.float32)
