"""Small integer models for the link and flash tests, with their reference outputs."""

from __future__ import annotations

import numpy as np

from sdk.graph.ir import Graph, Tensor
from sdk.kernels import conv, linear
from sdk.kernels.requant import quantize_multiplier_array


def small_cnn(seed: int, size: int = 8) -> Graph:
    """conv 3x3 (ReLU) -> flatten -> FC; the same I/O for every seed, different weights."""
    rng = np.random.default_rng(seed)
    g = Graph(f"cnn{seed}")
    g.add_tensor(Tensor("x", "int8", (1, 2, size, size)))
    g.add_tensor(Tensor("h", "int8", (1, 4, size, size)))
    g.add_tensor(Tensor("f", "int8", (1, 4 * size * size)))
    g.add_tensor(Tensor("y", "int8", (1, 10)))
    g.add_constant("w1", rng.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8))
    g.add_constant("b1", rng.integers(-2000, 2000, 4).astype(np.int32))
    g.add_constant("w2", rng.integers(-127, 128, (10, 4 * size * size)).astype(np.int8))
    m1, s1 = quantize_multiplier_array(np.full(4, 0.004))
    m2, s2 = quantize_multiplier_array(np.full(10, 0.0008))
    g.add_node("QConv2d", ["x", "w1", "b1"], ["h"], name="conv", strides=[1, 1],
               pads=[1, 1, 1, 1], dilations=[1, 1], group=1, x_zp=-3, m0=m1, shift=s1,
               out_zp=-128, act_min=-128, act_max=127, dtype="int8")
    g.add_node("Flatten", ["h"], ["f"], name="flatten", axis=1)
    g.add_node("QFullyConnected", ["f", "w2", ""], ["y"], name="fc", x_zp=-128, m0=m2,
               shift=s2, out_zp=0, act_min=-128, act_max=127, dtype="int8")
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def reference(g: Graph, x: np.ndarray) -> np.ndarray:
    """The model's output with the NumPy reference kernels."""
    c, f = g.nodes[0], g.nodes[2]
    h = conv.conv2d(x, g.tensor("w1").data, g.tensor("b1").data,
                    **{k: v for k, v in c.attrs.items()})
    return linear.fully_connected(h.reshape(1, -1), g.tensor("w2").data, None, **f.attrs)


def accumulator(seed: int = 0) -> tuple[Graph, dict]:
    """A streaming graph: state s (int8) -> y = QAdd(x, s), and y is the next state.

    Running it twice on the same input gives a different state than running it once, which
    makes a repeated INVOKE visible."""
    g = Graph(f"acc{seed}")
    for name in ("x", "s", "y"):
        g.add_tensor(Tensor(name, "int8", (1, 16)))
    m = quantize_multiplier_array(np.array([0.5, 0.5, 2.0 / 2**20]))
    attrs = {"a_zp": 0, "b_zp": 0, "left_shift": 20, "a_m0": int(m[0][0]), "a_shift": int(m[1][0]),
                 "b_m0": int(m[0][1]), "b_shift": int(m[1][1]), "out_m0": int(m[0][2]),
                 "out_shift": int(m[1][2]), "out_zp": 0, "act_min": -128, "act_max": 127, "dtype": "int8"}
    g.add_node("QAdd", ["x", "s"], ["y"], name="acc", **attrs)
    g.inputs, g.outputs = ["x", "s"], ["y"]
    g.metadata["state"] = [("s", "y")]
    return g, attrs
