"""A step graph runs on the device hop by hop with its state kept on the device, bit-exact
with the reference backend fed the state explicitly; state can be read, written and reset."""

from __future__ import annotations

import numpy as np

from firmware_bridge.image import pack_image
from firmware_bridge.session import DeviceModel
from sdk.backends.reference.executor import run_graph
from sdk.backends.sample_graphs import random_feeds, step_graph


def test_step_graph_hop_by_hop(device):
    graph = step_graph()
    model = DeviceModel(device, pack_image(graph))
    model.reset()
    assert [io.name for io in model.packed.inputs] == ["x_t"]       # h_prev stays on the device
    h = np.full(graph.tensor("h_prev").shape, graph.tensor("h_prev").quant.zero_point,
                graph.tensor("h_prev").dtype)
    assert np.array_equal(model.get_state()[0], h)                  # reset = zero point
    for hop in range(12):
        x = random_feeds(graph, seed=hop)["x_t"]
        ref = run_graph(graph, {"x_t": x, "h_prev": h}, fast=False)
        got = model.run({"x_t": x})
        assert np.array_equal(got["y_t"], ref["y_t"]), hop
        assert np.array_equal(got["h_t"], ref["h_t"]), hop
        h = ref["h_t"]
        assert np.array_equal(model.get_state()[0], h)


def test_state_can_be_saved_and_restored(device):
    graph = step_graph()
    model = DeviceModel(device, pack_image(graph))
    model.reset()
    xs = [random_feeds(graph, seed=100 + k)["x_t"] for k in range(4)]
    for x in xs[:2]:
        model.run({"x_t": x})
    saved = model.get_state()
    first = [model.run({"x_t": x})["y_t"] for x in xs[2:]]
    model.set_state(saved)
    again = [model.run({"x_t": x})["y_t"] for x in xs[2:]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
