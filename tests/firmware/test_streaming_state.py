"""A step graph runs on the device hop by hop with its state kept on the device, bit-exact
with the reference backend fed the state explicitly; state can be read, written and reset."""

from __future__ import annotations

import numpy as np

from firmware_bridge.image import pack_image
from firmware_bridge.session import DeviceModel
from sdk.backends.sample_graphs import random_feeds, step_graph
from sdk.ops.interpreter import run_graph


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


def test_keyword_spotting_step_graph_hop_by_hop(device):
    """The committed LMUFormer keyword-spotting step graph, compiled to integers, runs on the
    device with its state (causal-conv buffer, LMU memory) kept there between hops, and every
    hop's logits and state equal the reference backend fed the state explicitly."""
    import shutil

    import pytest

    from sdk.graph.state import pair_states

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the keyword model is calibrated on its speech)")
    from sdk.cli.kws_demo import default_model, integer_model

    bundle = integer_model(default_model(), echo=lambda *a: None)
    graph = bundle.graph
    pairs = pair_states(graph.inputs, graph.outputs)
    assert pairs, "the keyword model has no state inputs"
    model = DeviceModel(device, pack_image(graph, state=pairs))
    model.reset()
    assert [io.name for io in model.packed.inputs] == ["x"]
    rng = np.random.default_rng(0)
    state = {k: np.zeros(graph.tensor(k).shape, np.float32) for k in pairs}
    for hop in range(8):
        x = rng.normal(0, 1, graph.tensor("x").shape).astype(np.float32)
        ref = run_graph(graph, {"x": x, **state}, fast=False)
        got = model.run({"x": x})
        assert np.array_equal(got["logits"], ref["logits"]), hop
        for s_out in pairs.values():
            assert np.array_equal(got[s_out], ref[s_out]), (hop, s_out)
        state = {k: ref[v] for k, v in pairs.items()}
