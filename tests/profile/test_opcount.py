"""Op counts equal hand-computed values on small graphs (conv, FC, attention)."""

from __future__ import annotations

import numpy as np
import pytest
from profile_graphs import attention_graph, conv_graph, fc_graph

from sdk.graph.ir import Graph, Tensor
from sdk.profile.opcount import count_graph, count_node


def by_name(g: Graph) -> dict:
    return {c.node: c for c in count_graph(g)}


def test_conv_counts() -> None:
    c = by_name(conv_graph())
    # out [1,4,8,8] = 256 outputs, each 3·3·3 = 27 MACs
    assert c["conv"].macs == 256 * 27 == 6912
    assert c["conv"].adds == 256 and c["conv"].requants == 256
    assert c["conv"].weight_bytes == 4 * 27 + 4 * 4          # int8 weights + int32 bias
    assert c["conv"].activation_read_bytes == 3 * 64
    assert c["conv"].activation_write_bytes == 4 * 64
    # depthwise stride 2: out [1,4,4,4] = 64 outputs, 9 MACs each, no bias
    assert c["dw"].macs == 64 * 9 == 576 and c["dw"].adds == 0
    assert c["dw"].weight_bytes == 36 and c["dw"].arithmetic == "int"


def test_fully_connected_counts() -> None:
    c = by_name(fc_graph())["fc"]
    assert c.macs == 2 * 16 * 10 == 320
    assert c.adds == 20 and c.requants == 20
    assert c.weight_bytes == 160 + 40
    assert (c.activation_read_bytes, c.activation_write_bytes) == (32, 20)


def test_attention_counts() -> None:
    t, d = 6, 8
    c = by_name(attention_graph(t, d))
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert c[proj].macs == t * d * d == 384
    assert c["scores"].macs == t * t * d == 288
    assert c["context"].macs == t * d * t == 288
    assert c["k_t"].macs == 0
    assert sum(x.macs for x in c.values()) == 4 * t * d * d + 2 * t * t * d == 2112
    assert c["softmax"].activation_write_bytes == t * t * 2     # int16 probabilities


def test_spike_driven_layer_accumulates_instead_of_multiplying() -> None:
    g = fc_graph()
    g.metadata["spike_tensors"] = ["x"]
    c = count_graph(g)[0]
    assert c.macs == 0 and c.accumulates == 320 and c.spike_driven
    c = count_graph(g, firing_rates={"x": 0.25})[0]
    assert c.accumulates == 80


def test_spikes_from_a_lif_node_are_detected() -> None:
    g = fc_graph()
    g.add_tensor(Tensor("u", "int8", (2, 16)))
    g.inputs = ["u"]
    g.nodes.insert(0, g.nodes[0].__class__("LIF", ["u"], ["x"], {}, "lif"))
    counts = {c.node: c for c in count_graph(g)}
    assert counts["fc"].accumulates == 320 and counts["fc"].macs == 0


def test_views_move_no_bytes() -> None:
    g = fc_graph()
    g.add_tensor(Tensor("flat", "int8", (20,)))
    g.add_constant("shape", np.array([20], np.int64))
    g.add_node("Reshape", ["y", "shape"], ["flat"], name="flatten")
    c = count_node(g, g.nodes[-1])
    assert c.ops == 0 and c.weight_bytes == 0 and c.activation_read_bytes == 0


def test_unknown_shape_is_a_clear_error() -> None:
    g = fc_graph()
    g.tensors["y"].shape = None
    from sdk.errors import GraphError
    with pytest.raises(GraphError, match="'y' has no known shape"):
        count_graph(g)
