"""`edge profile MODEL --target NAME [--json FILE] [--plot FILE.png]` on real model files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

EDGE = [sys.executable, "-m", "sdk.cli.main"]


def mlp_onnx(path: Path) -> None:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((32, 64)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 10])],
                          [w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_profile_onnx_with_json_and_plot(tmp_path: Path) -> None:
    model = tmp_path / "mlp.onnx"
    mlp_onnx(model)
    out = subprocess.run(check=False, args=[*EDGE, "profile", str(model), "--target", "raspberry-pi-4",
                          "--runs", "3", "--json", str(tmp_path / "p.json"),
                          "--plot", str(tmp_path / "p.png")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "fc1" in out.stdout and "raspberry-pi-4" in out.stdout and "horowitz-45nm" in out.stdout
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["totals"]["macs"] == 4 * 32 * 64 + 4 * 64 * 10
    assert d["sensor"].startswith("no sensor")
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_profile_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "model.txt"
    bad.write_text("hello")
    out = subprocess.run(check=False, args=[*EDGE, "profile", str(bad)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "expected a .edge bundle or an .onnx model" in out.stderr


def test_profile_edge_bundle_on_a_microcontroller(tmp_path: Path) -> None:
    from kws_dscnn import dscnn_bundle, dscnn_macs

    path = tmp_path / "kws.edge"
    dscnn_bundle(tmp_path).save(path)
    out = subprocess.run(check=False, args=[*EDGE, "profile", str(path), "--target", "stm32h7",
                                            "--runs", "2", "--json", str(tmp_path / "k.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads((tmp_path / "k.json").read_text())
    assert d["totals"]["macs"] == dscnn_macs()
    assert d["fits"] and d["peak_arena_bytes"] < 1 << 20
    assert all(r["measured_s"] > 0 for r in d["rows"])
    assert "pw3" in out.stdout


def test_profile_step_graph_per_inference_of_hops(tmp_path: Path) -> None:
    """--hops N: a streaming step graph's figures scaled to one N-hop inference, from the
    same per-node totals the table prints."""
    from profile_graphs import spiking_lmuformer

    from sdk.models import build_step_onnx

    model, _ = spiking_lmuformer()
    onnx.save(build_step_onnx(model), tmp_path / "step.onnx")
    out = subprocess.run(check=False, args=[*EDGE, "profile", str(tmp_path / "step.onnx"),
                                            "--target", "mps2-an386", "--no-run", "--hops",
                                            "100", "--front-end", "--json",
                                            str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "one inference = 100 steps + log-mel front end" in out.stdout
    d = json.loads((tmp_path / "s.json").read_text())
    p = d["per_inference"]
    hop_j = sum(r["energy_j"] for r in d["rows"])
    assert p["hops_per_inference"] == 100
    assert p["graph_inference_energy_uj"] == pytest.approx(100 * hop_j * 1e6)
    assert p["inference_energy_uj"] == pytest.approx(
        100 * (hop_j * 1e6 + p["front_end_energy_uj_per_hop"]))
    assert p["inferences_per_s"] == pytest.approx(
        1 / (100 * (d["totals"]["modeled_s"] + p["front_end_modeled_s_per_hop"])))
    bad = subprocess.run(check=False, args=[*EDGE, "profile", str(tmp_path / "step.onnx"),
                                            "--no-run", "--front-end"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--front-end needs --hops" in bad.stderr


def test_profile_of_a_truncated_onnx_is_one_line_error(tmp_path, capsys):
    from sdk.cli.main import main

    bad = tmp_path / "cut.onnx"
    src = Path(__file__).resolve().parents[2] / "samples/kws/models/kws_lmuformer_nonspiking.onnx"
    bad.write_bytes(src.read_bytes()[:500])
    assert main(["profile", str(bad), "--no-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a readable ONNX model" in err
    assert "\n" not in err and "Traceback" not in err
