"""AveragePool lowering vs the float op: with ``count_include_pad=1`` the padded cells are
real 0.0, i.e. the input's zero point on the integer grid (docs/ops.md, QAvgPool2d)."""

import numpy as np
import pytest

from sdk.graph import Graph, Tensor
from sdk.quant import quantize
from sdk.quant.trace import trace


def _avgpool_graph(include: int) -> Graph:
    g = Graph("avgpool")
    g.add_tensor(Tensor("x", "float32", (1, 3, 8, 8)))
    g.add_tensor(Tensor("y", "float32", (1, 3, 8, 8)))
    g.add_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[1, 1],
               pads=[1, 1, 1, 1], count_include_pad=include)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


@pytest.mark.parametrize("include", [0, 1])
def test_avgpool_padding_matches_float_with_a_nonzero_zero_point(include):
    # positive activations (after a ReLU, say): asymmetric int8 puts the zero point at -128
    rng = np.random.default_rng(3)
    x = rng.uniform(0.5, 3.0, (20, 1, 3, 8, 8)).astype(np.float32)
    g = _avgpool_graph(include)
    ig = quantize(g, {"x": x[:16]})
    (node,) = [n for n in ig.nodes if n.op == "QAvgPool2d"]
    qx = ig.tensors[node.inputs[0]].quant
    assert int(qx.zero_point) != 0
    step = float(qx.scale)
    for xi in x[16:]:
        y = trace(ig, {"x": xi})["y"]
        ref = trace(g, {"x": xi})["y"]
        # input rounding (≤ step/2) + the pool's rounding (≤ step/2) + output rounding
        assert np.abs(y - ref).max() <= 1.5 * step + 1e-6
