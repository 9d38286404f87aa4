"""tools/report_kws_energy.py: the keyword model's modelled energy per hop and per 1-s
inference beside MLPerf Tiny, consistent with sdk.profile's per-node totals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "samples/kws/models/kws_lmuformer_nonspiking.onnx"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the tool calibrates on its speech)")
    if not MODEL.is_file():
        pytest.skip(f"{MODEL.name} is not there (train it with tools/train_kws.py)")
    out = tmp_path_factory.mktemp("kws") / "energy.json"
    run = subprocess.run(check=False, args=[sys.executable, str(ROOT / "tools/report_kws_energy.py"),
                          "--json", str(out)], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout, json.loads(out.read_text())


def test_output_names_the_table_the_window_and_mlperf(report) -> None:
    text, doc = report
    assert "one inference = one 1-s clip = 100 hops of 10 ms" in text
    assert "MLPerf Tiny KWS (meas.)" in text and "7,374" in text and "5.50" in text
    # one energy figure per inference (power x time), as `edge profile`; the op-count table
    # only splits it (issue 19: no second, unexplained figure beside it)
    assert "energy per inference = the target's active power x modelled" in text
    assert "estimate" in text and "op-count model" not in text
    for t in doc["targets"]:
        assert f"{t['active_power_inference_uj']:.1f}" in text
    assert [t["target"] for t in doc["targets"]] == ["mps2-an386", "stm32h7"]
    assert doc["mlperf"] == {"uj_per_inference": 7374.0, "inferences_per_s": 5.5,
                             "source": doc["mlperf"]["source"]}


def test_figures_follow_the_per_node_totals(report) -> None:
    _, doc = report
    hops = doc["hops_per_inference"]
    for t in doc["targets"]:
        rows = t["profile"]["rows"]
        hop_uj = sum(r["energy_j"] for r in rows) * 1e6
        hop_s = sum(r["modeled_s"] for r in rows)
        assert t["hop_energy_uj"] == pytest.approx(hop_uj, rel=1e-12)
        assert t["hop_modeled_s"] == pytest.approx(hop_s, rel=1e-12)
        assert t["graph_inference_energy_uj"] == pytest.approx(hops * hop_uj)
        assert t["inference_energy_uj"] == pytest.approx(
            hops * (hop_uj + t["front_end_energy_uj_per_hop"]))
        assert t["inferences_per_s"] == pytest.approx(
            1 / (hops * (hop_s + t["front_end_modeled_s_per_hop"])))
        assert t["active_power_inference_uj"] == pytest.approx(
            t["active_power_w"] * t["inference_modeled_s"] * 1e6)
        assert t["front_end_energy_uj_per_hop"] > 0


def test_step_graph_macs_are_the_float_models_matrix_products(report) -> None:
    """Per hop every Gemm / MatMul with a constant ``[K, N]`` weight does ``rows·K·N`` MACs
    (rows: the leading dimensions of its data input, e.g. the 16 LMU units); the compiled
    integer graph must count exactly those."""
    import sdk

    _, doc = report
    g = sdk.load_onnx(str(MODEL))
    want = 0
    for n in g.nodes:
        if n.op in ("Gemm", "MatMul") and g.tensor(n.inputs[1]).is_constant:
            rows = int(np.prod(g.tensor(n.inputs[0]).shape[:-1]))
            want += rows * int(np.prod(g.tensor(n.inputs[1]).shape))
    assert want > 0
    for t in doc["targets"]:
        assert t["profile"]["totals"]["macs"] == want


def test_spiking_step_graph_is_counted_at_the_streamed_spike_rates(tmp_path: Path) -> None:
    """A spiking model (the zoo's, until samples/kws/models has a trained one): its
    spike-driven layers are counted at the rates measured over the streamed clip."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (the tool streams its speech)")
    import onnx
    from profile_graphs import spiking_lmuformer

    from sdk.models import build_step_onnx

    model, _ = spiking_lmuformer()
    onnx.save(build_step_onnx(model), tmp_path / "spiking.onnx")
    run = subprocess.run(check=False, args=[sys.executable, str(ROOT / "tools/report_kws_energy.py"), "--model",
                          str(tmp_path / "spiking.onnx"), "--targets", "mps2-an386",
                          "--json", str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "spike rates measured over the streamed clip" in run.stdout
    doc = json.loads((tmp_path / "s.json").read_text())
    rates = doc["firing_rates"]
    assert rates and all(0 <= v <= 1 for v in rates.values())
    prof = doc["targets"][0]["profile"]
    assert any("given by the caller" in n for n in prof["notes"])
    spiking = [r for r in prof["rows"] if r["accumulates"] > 0]
    assert spiking and all(r["macs"] == 0 for r in spiking)
