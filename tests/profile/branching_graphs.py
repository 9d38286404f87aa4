"""Random branching int8 graphs of ops every executor runs (QFullyConnected, QClamp, Concat),
for arena placements that differ from TensorFlow Lite Micro's greedy order."""

from __future__ import annotations

import numpy as np

from sdk.graph.ir import Graph, Tensor
from sdk.kernels.requant import quantize_multiplier_array


def branching_int8_graph(rng: np.random.Generator) -> Graph:
    """4-8 nodes, each reading the latest tensor or an older one (long lifetimes)."""
    g = Graph("branching")
    g.add_tensor(Tensor("x", "int8", (1, int(rng.choice([16, 32, 48])))))
    g.inputs, live = ["x"], ["x"]
    for k in range(int(rng.integers(4, 9))):
        a = live[-1] if rng.random() < 0.5 else live[int(rng.integers(len(live)))]
        width = g.tensor(a).shape[1]
        op = str(rng.choice(["QFullyConnected", "QFullyConnected", "QClamp", "Concat"]))
        out = f"t{k}"
        if op == "QFullyConnected":
            n = int(rng.choice([16, 32, 48, 64, 96]))
            g.add_constant(f"w{k}", rng.integers(-127, 128, (n, width)).astype(np.int8))
            m0, shift = quantize_multiplier_array(np.full(n, 0.002))
            g.add_tensor(Tensor(out, "int8", (1, n)))
            g.add_node(op, [a, f"w{k}", ""], [out], x_zp=0, m0=m0, shift=shift, out_zp=0,
                       act_min=-128, act_max=127, dtype="int8")
        elif op == "QClamp":
            g.add_tensor(Tensor(out, "int8", (1, width)))
            g.add_node(op, [a], [out], min=-100, max=100)
        else:
            b = live[int(rng.integers(len(live)))]
            g.add_tensor(Tensor(out, "int8", (1, width + g.tensor(b).shape[1])))
            g.add_node(op, [a, b], [out], axis=1)
        live.append(out)
    g.outputs = [live[-1]]
    return g
