"""profile_graph: measured per-layer latency on this machine, modelled latency and energy on
the target, memory, JSON export, plot; the sensor says "no sensor" rather than a number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from profile_graphs import attention_graph, conv_graph, float_attention_graph, spiking_lmuformer

from sdk.errors import GraphError
from sdk.profile.profiler import profile_graph


def test_float_graph_is_measured_and_modelled() -> None:
    calls = []
    r = profile_graph(float_attention_graph(), "raspberry-pi-5", runs=3,
                      progress=lambda k, n: calls.append((k, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert [row.name for row in r.rows] == ["q_proj", "k_proj", "v_proj", "k_t", "scores",
                                            "softmax", "context", "o_proj"]
    assert all(row.measured_s is not None and row.measured_s > 0 for row in r.rows)
    assert r.measured_total_s > 0 and r.modeled_total_s > 0
    assert r.total("macs") == 2112
    assert r.energy_table == "horowitz-45nm"
    assert r.sensor.startswith("no sensor") and r.measured_energy_j is None
    assert r.peak_arena_bytes > 0 and r.weight_bytes == 4 * 8 * 8 * 4


def test_integer_graph_models_energy_and_the_fp32_saving() -> None:
    r = profile_graph(attention_graph(), "stm32h7", measure=False)
    t = r.totals()
    assert t["macs"] == 2112 and r.measured_total_s is None
    assert t["fp32_over_int_compute"] > 5
    assert r.energy_j == pytest.approx(t["energy_compute_j"] + t["energy_memory_j"]
                                       + t["energy_static_j"])
    assert "horowitz" in r.render() and "fp32" in r.render()


def test_accelerator_takes_the_ops_it_accepts() -> None:
    r = profile_graph(conv_graph(), "corstone-300-ethos-u55", measure=False)
    assert {row.unit for row in r.rows} == {"Ethos-U55-128"}
    r = profile_graph(attention_graph(), "corstone-300-ethos-u55", measure=False)
    units = {row.name: row.unit for row in r.rows}
    assert units["q_proj"] == "Ethos-U55-128" and units["softmax"] == "cpu"


def test_model_that_does_not_fit_says_so() -> None:

    from sdk.graph.ir import Graph, Tensor
    g = Graph("big")
    g.add_tensor(Tensor("x", "int8", (1, 1024 * 1024)))
    g.add_tensor(Tensor("y", "int8", (1, 1024 * 1024)))
    g.add_node("QClamp", ["x"], ["y"], min=0, max=127)
    g.add_tensor(Tensor("z", "int8", (1, 1024 * 1024)))
    g.add_node("QAdd", ["x", "y"], ["z"])
    g.inputs, g.outputs = ["x"], ["z"]
    r = profile_graph(g, "stm32h7", measure=False)
    assert not r.fits and any("does not fit stm32h7" in n for n in r.notes)


def test_json_and_plot(tmp_path: Path) -> None:
    r = profile_graph(float_attention_graph(), "laptop", runs=2)
    r.save_json(tmp_path / "p.json")
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["target"] == "laptop" and len(d["rows"]) == 8
    assert d["totals"]["macs"] == 2112 and d["energy_table"] == "horowitz-45nm"
    assert d["sensor"] == r.sensor
    if r.measured_energy_j is None:
        assert d["sensor"].startswith("no sensor (rapl:")
    else:
        assert d["measured_energy_j"] > 0
    r.plot(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_host_target_with_a_rapl_tree_reports_its_reading(tmp_path: Path) -> None:
    """A user's host profile whose RAPL root is a sysfs-like tree: the profile reads that
    counter (it does not move here, so the measured energy is 0 J, not an invented value)."""
    import shutil
    root = tmp_path / "powercap"
    fixtures = Path(__file__).resolve().parents[1] / "boards" / "fixtures"
    shutil.copytree(fixtures / "sys/class/powercap", root)
    src = Path(__file__).resolve().parents[2] / "targets" / "laptop.toml"
    text = src.read_text().replace('name = "laptop"', 'name = "lab-host"')
    text = text.replace('root = "/sys/class/powercap"', f'root = "{root}"')
    (tmp_path / "lab-host.toml").write_text(text)
    r = profile_graph(float_attention_graph(), str(tmp_path / "lab-host.toml"), runs=2)
    assert r.sensor == "rapl:package-0" and r.measured_energy_j == 0.0


def test_spiking_lmuformer_step_counts_accumulates_at_the_traced_firing_rate() -> None:
    """The zoo's spiking LMUFormer step graph: LIF spikes are exact-step HardSigmoids, so
    the Gemms they feed accumulate instead of multiplying, at the firing rate of this input."""
    import numpy as np

    from sdk.models import lmuformer as lmu
    from sdk.ops.interpreter import Interpreter

    model, g = spiking_lmuformer()
    cfg, rng = model.config, np.random.default_rng(0)
    feeds = {"x": (rng.standard_normal((1, cfg.n_mels)) * 3).astype(np.float32)}
    feeds.update({f"state_{k}": v for k, v in lmu.initial_state(cfg).items()})
    r = profile_graph(g, "mps2-an386", feeds=feeds, runs=1)
    rows = {row.name: row for row in r.rows}
    values = Interpreter(g).run(feeds, outputs=[t for t in g.tensors
                                                        if not g.tensors[t].is_constant])
    head = next(n for n in reversed(g.nodes) if n.op == "Gemm")   # logits = W_o·spikes
    spikes = values[head.inputs[0]]
    assert set(np.unique(spikes)) <= {0.0, 1.0}
    k, n = g.tensor(head.inputs[1]).shape[1], g.tensor(head.inputs[1]).shape[0]
    rate = np.count_nonzero(spikes) / spikes.size
    assert rows[head.name].macs == 0
    assert rows[head.name].accumulates == pytest.approx(k * n * rate)
    assert any("firing rates" in note for note in r.notes)


def test_spiking_lmuformer_counts_at_firing_rates_measured_over_a_stream() -> None:
    """Rates measured over a streamed clip (state carried hop to hop) go into profile_graph;
    the head's accumulates follow the NumPy model's own spike count over the same hops."""
    import numpy as np

    from sdk.models import lmuformer as lmu
    from sdk.profile import stream_firing_rates

    model, g = spiking_lmuformer()
    cfg = model.config
    feats = (np.random.default_rng(3).standard_normal((30, cfg.n_mels)) * 3).astype(np.float32)
    rates = stream_firing_rates(g, [{"x": f[None]} for f in feats])
    state, fired = lmu.initial_state(cfg), []
    for f in feats:                                   # the NumPy reference model
        _, state, acts = lmu.lmuformer_step(model, f, state)
        fired.append(acts["v_head"])
    numpy_rate = float(np.mean(fired))
    r = profile_graph(g, "mps2-an386", runs=1, firing_rates=rates,
                      feeds={"x": feats[0][None], **{f"state_{k}": v for k, v
                                                     in lmu.initial_state(cfg).items()}})
    head = next(n for n in reversed(g.nodes) if n.op == "Gemm")
    k, n = g.tensor(head.inputs[1]).shape[1], g.tensor(head.inputs[1]).shape[0]
    row = next(row for row in r.rows if row.name == head.name)
    assert 0 < numpy_rate < 1
    assert rates[head.inputs[0]] == pytest.approx(numpy_rate, abs=1 / (k * len(feats)))
    assert row.macs == 0 and row.accumulates == pytest.approx(k * n * rates[head.inputs[0]])
    assert any("given by the caller" in note for note in r.notes)
    with pytest.raises(GraphError, match="not spike tensors"):
        profile_graph(g, "mps2-an386", measure=False, firing_rates={"logits": 0.5})


def test_integer_core_is_what_integer_io_runs(tmp_path: Path) -> None:
    """integer_core drops the float boundary of a compiled graph: raw integer inputs and
    outputs, and the same results as a Session with integer_io=True."""
    import numpy as np
    from kws_dscnn import dscnn_bundle

    from sdk.ops.interpreter import Interpreter
    from sdk.profile import core_input_names, integer_core
    from sdk.runtime import Session

    g = dscnn_bundle(tmp_path).graph
    core = integer_core(g)
    assert {n.op for n in core.nodes} & {"QuantizeLinear", "DequantizeLinear"} == set()
    assert len(core.nodes) == len(g.nodes) - 2
    assert [core.tensor(i).dtype for i in core.inputs] == ["int8"]
    name = core_input_names(g)["mfcc"]
    x = np.random.default_rng(0).integers(-128, 128, (1, 1, 49, 10)).astype(np.int8)
    got = Interpreter(core).run({name: x})
    want = Session(g, integer_io=True).run(None, {"mfcc": x})
    np.testing.assert_array_equal(got[core.outputs[0]], want["logits"])
    assert integer_core(core) is core
