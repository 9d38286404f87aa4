"""Spike detection (sdk.profile.spikes): a tensor is a spike tensor when its producer can only
output 0 or 1 in real units: an exact-step HardSigmoid in float, a two-level QLut in integers."""

from __future__ import annotations

import numpy as np
import pytest
from profile_graphs import spiking_lmuformer

from sdk.graph.ir import Graph, QuantParams, Tensor
from sdk.profile import (
    core_state_pairs,
    count_graph,
    integer_core,
    spike_silent_levels,
    stream_firing_rates,
)
from sdk.profile.spikes import hard_sigmoid_is_step


@pytest.mark.parametrize("threshold", [2.0**-6, 0.25, 0.5, 1.0, 8.0])
def test_the_lmuformer_hard_sigmoid_step_is_recognised(threshold: float) -> None:
    from sdk.kernels.float_ref import hard_sigmoid
    from sdk.models.lmuformer import heaviside_hard_sigmoid

    attrs = heaviside_hard_sigmoid(threshold)
    assert hard_sigmoid_is_step(**attrs)
    below = np.nextafter(np.float32(threshold), np.float32(0))
    h = np.array([below, threshold], np.float32)
    assert hard_sigmoid(h, **attrs).tolist() == [0.0, 1.0]
    # the mirrored step [h <= t] (alpha < 0) is a step too
    assert hard_sigmoid_is_step(-attrs["alpha"], 1.0 - attrs["beta"])


@pytest.mark.parametrize(("alpha", "beta"), [(0.2, 0.5), (2.0**22, 1 - 2.0**22), (1e6, 0.5),
                                             (0.0, 1.0), (float("inf"), 0.0)])
def test_a_hard_sigmoid_with_a_linear_region_is_not_a_spike(alpha: float, beta: float) -> None:
    """ONNX's default, a slope of 2^22 at threshold 1 (float32 values between 1 − 2^−22 and 1
    give fractions) and a steep slope around 0 (where float32 is dense) are not steps."""
    assert not hard_sigmoid_is_step(alpha, beta)


def _lut_graph(table: np.ndarray, scale: float, zp: int) -> Graph:
    g = Graph("lut")
    q = QuantParams(np.float32(0.05), np.int32(0))
    g.add_tensor(Tensor("x", "int8", (1, 8), q))
    g.add_constant("t", table.astype(np.int8))
    g.add_tensor(Tensor("s", "int8", (1, 8), QuantParams(np.float32(scale), np.int32(zp))))
    g.add_constant("w", np.ones((4, 8), np.int8))
    g.add_tensor(Tensor("y", "int8", (1, 4), q))
    g.add_node("QLut", ["x", "t"], ["s"], name="spike")
    g.add_node("QFullyConnected", ["s", "w", ""], ["y"], name="fc", x_zp=zp,
               m0=np.full(4, 1 << 30, np.int32), shift=np.full(4, -7, np.int32), out_zp=0,
               act_min=-128, act_max=127)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_a_qlut_is_a_spike_exactly_when_its_levels_dequantize_to_0_and_1() -> None:
    step = np.where(np.arange(256) >= 140, 127, -128)
    assert spike_silent_levels(_lut_graph(step, 1 / 255, -128)) == {"s": -128}
    assert spike_silent_levels(_lut_graph(np.where(step > 0, 1, 0), 1.0, 0)) == {"s": 0}
    assert "s" not in spike_silent_levels(_lut_graph(step, 2 / 255, -128))     # {0, 2}
    assert "s" not in spike_silent_levels(_lut_graph(step, 1 / 255, -127))     # {-1/255, 1}
    three = np.where(np.arange(256) >= 200, 127, np.where(np.arange(256) >= 100, 0, -128))
    assert "s" not in spike_silent_levels(_lut_graph(three, 1 / 255, -128))
    c = count_graph(_lut_graph(step, 1 / 255, -128), firing_rates={"s": 0.25})[1]
    assert c.macs == 0 and c.accumulates == pytest.approx(8 * 4 * 0.25)
    c = count_graph(_lut_graph(three, 1 / 255, -128), firing_rates={"s": 0.25})[1]
    assert c.macs == 8 * 4 and c.accumulates == 0


def test_compiled_spiking_lmuformer_counts_accumulates_at_streamed_rates() -> None:
    """The spiking step graph compiled by the SDK's quantizer: each exact-step HardSigmoid is a
    QLut with two levels (raw -128 / 127 = real 0 / 1); the integer core's layers fed by them
    accumulate at the firing rates of the raw spikes over a stream, the state carried as the
    StreamingSession carries it."""
    from sdk.compile import compile_model
    from sdk.models import build_step_onnx, step_calibration_data
    from sdk.ops.interpreter import Interpreter
    from sdk.profile import core_input_names, profile_graph
    from sdk.runtime import StreamingSession

    model, _ = spiking_lmuformer()
    cfg = model.config
    rng = np.random.default_rng(5)
    calib = (rng.standard_normal((4, 20, cfg.n_mels)) * 3).astype(np.float32)
    compiled = compile_model(build_step_onnx(model), step_calibration_data(model, calib)).graph
    ss = StreamingSession(compiled, fast=False)
    graph = ss.graph            # the state outputs requantized to the state inputs' grids
    core = integer_core(graph)
    silent = spike_silent_levels(core)
    luts = [n for n in core.nodes if n.op == "QLut"]
    assert len(luts) == 6 and all(silent.get(n.outputs[0]) == -128 for n in luts)
    assert not any(n.op in ("Cast", "GreaterOrEqual", "HardSigmoid") for n in core.nodes)

    feats = (rng.standard_normal((25, cfg.n_mels)) * 3).astype(np.float32)
    recorded = ss.record_feeds(feats[:, None, :])
    names = core_input_names(graph)
    pairs = core_state_pairs(graph)
    hops = [{names[k]: v[t] for k, v in recorded.items()} for t in range(len(feats))]
    rates = stream_firing_rates(core, [{k: v for k, v in h.items() if k not in pairs}
                                       for h in hops],
                                initial_state={k: hops[0][k] for k in pairs},
                                state_pairs=pairs)

    head = next(n for n in reversed(core.topological_order()) if n.op == "QFullyConnected")
    spikes_in = head.inputs[0]
    exe = Interpreter(core)
    seen = np.stack([exe.run(h, outputs=[spikes_in])[spikes_in] for h in hops])
    assert set(np.unique(seen)) <= {-128, 127}          # real 0 and 1
    want = np.count_nonzero(seen == 127) / seen.size
    assert 0 < want < 1 and rates[spikes_in] == pytest.approx(want)

    r = profile_graph(core, "mps2-an386", runs=1, feeds=hops[0], firing_rates=rates)
    rows = {row.name: row for row in r.rows}
    n_out, k = core.tensor(head.inputs[1]).shape
    assert rows[head.name].macs == 0
    assert rows[head.name].accumulates == pytest.approx(n_out * k * want)
    fed = [n for n in core.nodes if n.op == "QFullyConnected" and n.inputs[0] in silent]
    dense = [n for n in core.nodes if n.op == "QFullyConnected" and n.inputs[0] not in silent]
    assert len(fed) == 6 and len(dense) == 3   # w_u b_bar w_a w_1 w_2 w_o / w_embed a_bar w_m
    assert all(rows[n.name].macs == 0 and rows[n.name].accumulates > 0 for n in fed)
    assert all(rows[n.name].macs > 0 and rows[n.name].accumulates == 0 for n in dense)
