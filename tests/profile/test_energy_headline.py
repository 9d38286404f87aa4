"""`edge profile` gives ONE energy figure per inference per target, with its source: a
sensor's measurement where one is read, else the board's active power x modelled time; the
op-count table only splits it across layers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_profile_cli import mlp_onnx

from sdk.profile import profile_graph
from targets import load_target

EDGE = [sys.executable, "-m", "sdk.cli.main"]
ENERGY_LINE = re.compile(r"^energy per inference: ([0-9.e+]+) uJ  <- (.*)$", re.MULTILINE)


@pytest.mark.parametrize("target", ["nucleo-l4r5zi", "raspberry-pi-4"])
def test_cli_prints_one_energy_figure_with_its_source(tmp_path: Path, target: str) -> None:
    model = tmp_path / "mlp.onnx"
    mlp_onnx(model)
    out = subprocess.run([*EDGE, "profile", str(model), "--target", target, "--no-run",
                          "--json", str(tmp_path / "p.json")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    found = ENERGY_LINE.findall(out.stdout)
    assert len(found) == 1, out.stdout
    uj, source = float(found[0][0]), found[0][1]
    tgt = load_target(target)
    assert source.startswith(f"modelled: active power {tgt.power.active_w:g} W")
    assert "modelled time" in source and (tgt.power.source or "") in source
    # the three old, disagreeing totals are gone from the text
    for gone in ("arithmetic energy", "active power x modelled time =", "energy uJ"):
        assert gone not in out.stdout
    below_table = out.stdout.split("peak arena")[1]     # no other figure in uJ below the table
    assert len(re.findall(r"\d[\d.,e+]* ?uJ\b", below_table)) == 1, below_table

    d = json.loads((tmp_path / "p.json").read_text())
    e = d["energy"]
    assert e["method"] == "active_power_x_modelled_time"
    assert e["per_inference_uj"] == pytest.approx(
        tgt.power.active_w * d["totals"]["modeled_s"] * 1e6)
    assert e["per_inference_uj"] == pytest.approx(uj, rel=1e-3)
    assert "energy_uj" not in d["totals"] and "energy_j" not in d["totals"]
    shares = [r["energy_share"] for r in d["rows"]]
    assert sum(shares) == pytest.approx(1.0) and all(s >= 0 for s in shares)
    assert sum(r["energy_uj_of_inference"] for r in d["rows"]) == pytest.approx(
        e["per_inference_uj"])


def test_a_sensor_reading_is_the_headline(tmp_path: Path) -> None:
    """A host whose RAPL tree is readable: the measured energy (0 J here: the fixture counter
    does not move) is the figure, named as measured, not the power x time model."""
    from profile_graphs import float_attention_graph

    root = tmp_path / "powercap"
    fixtures = Path(__file__).resolve().parents[1] / "boards" / "fixtures"
    shutil.copytree(fixtures / "sys/class/powercap", root)
    src = Path(__file__).resolve().parents[2] / "targets" / "laptop.toml"
    text = src.read_text().replace('name = "laptop"', 'name = "lab-host"')
    (tmp_path / "lab-host.toml").write_text(
        text.replace('root = "/sys/class/powercap"', f'root = "{root}"'))
    r = profile_graph(float_attention_graph(), str(tmp_path / "lab-host.toml"), runs=2)
    assert r.energy_per_inference_j == 0.0 and r.energy_per_inference_j != (
        r.active_w * r.modeled_total_s)
    assert r.energy_source.startswith("measured by rapl:package-0")
    assert r.to_json()["energy"]["method"] == "measured"
    assert len(ENERGY_LINE.findall(r.render())) == 1


def test_hops_profile_prints_one_figure_per_inference(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "samples/kws/models/kws_lmuformer_nonspiking.onnx"
    out = subprocess.run([*EDGE, "profile", str(src), "--target", "nucleo-l4r5zi", "--no-run",
                          "--hops", "100", "--front-end", "--json", str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "energy per inference" in ln]
    assert len(lines) == 1 and "<- modelled: active power 0.0436 W" in lines[0]
    assert "energy per step:" in out.stdout          # the step graph's own run, labelled
    p = json.loads((tmp_path / "s.json").read_text())["per_inference"]
    assert p["energy_per_inference_uj"] == pytest.approx(
        0.0436 * p["inference_modeled_s"] * 1e6)
    shown = float(re.search(r"energy per inference: ([0-9.e+]+) uJ", lines[0]).group(1))
    assert shown == pytest.approx(p["energy_per_inference_uj"], rel=1e-3)


def test_qemu_cycles_times_the_headline_with_the_cycle_model(tmp_path: Path) -> None:
    """--qemu-cycles: the firmware's instruction mix in QEMU x the Cortex-M4 cycle model
    replaces the roofline time in the one energy figure; a non-MCU target is refused."""
    from kws_dscnn import dscnn_bundle

    from sdk.profile.qemu_mix import mix_unavailable

    path = tmp_path / "kws.edge"
    dscnn_bundle(tmp_path).save(path)
    bad = subprocess.run([*EDGE, "profile", str(path), "--target", "raspberry-pi-4",
                          "--no-run", "--qemu-cycles"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode != 0 and "needs a microcontroller target" in bad.stderr
    if mix_unavailable():
        pytest.skip(f"QEMU mix unavailable: {mix_unavailable()}")
    out = subprocess.run([*EDGE, "profile", str(path), "--target", "nucleo-l4r5zi", "--no-run",
                          "--qemu-cycles", "--json", str(tmp_path / "c.json")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    found = ENERGY_LINE.findall(out.stdout)
    assert len(found) == 1 and "cycle model: QEMU instruction mix" in found[0][1]
    assert "Cortex-M4 timings, 5 flash wait states" in found[0][1]
    d = json.loads((tmp_path / "c.json").read_text())
    c = d["cycle_estimate"]
    assert c["cycles"] > 2_656_768 and c["seconds"] == pytest.approx(c["cycles"] / 120e6)
    assert d["energy"]["per_inference_uj"] == pytest.approx(0.0436 * c["seconds"] * 1e6)
    assert c["roofline_s"] == pytest.approx(d["totals"]["modeled_s"])
