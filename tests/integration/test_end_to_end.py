"""End to end through the `edge` CLI in subprocesses, as a user would run it: build a small
CNN in ONNX, compile it for a target, inspect its arena plan, run it on three backends and
profile it for a Raspberry Pi 4."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from small_cnn import build_small_cnn, images

ROOT = Path(__file__).resolve().parents[2]


def edge(*args: object) -> str:
    """Run `edge ARGS...` as `python -m sdk.cli.main`; return stdout (fail with stderr)."""
    proc = subprocess.run([sys.executable, "-m", "sdk.cli.main", *map(str, args)], check=False,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("e2e")
    onnx.save(build_small_cnn(), d / "cnn.onnx")
    np.savez(d / "calib.npz", x=images(32, seed=1))
    np.savez(d / "in.npz", x=images(1, seed=7)[0])
    out = edge("compile", d / "cnn.onnx", "--calib", d / "calib.npz", "-o", d / "cnn.edge",
               "--target", "laptop")
    (d / "compile.txt").write_text(out)
    return d


def test_compile_for_laptop_prints_fit_plan_and_arena(work: Path) -> None:
    out = (work / "compile.txt").read_text()
    assert "fits laptop" in out and "plan for 'small_cnn' on target 'laptop'" in out
    assert "memory: peak arena" in out and "flash" in out
    assert (work / "cnn.edge").stat().st_size > 0


def test_inspect_json_shows_the_stored_arena_plan(work: Path) -> None:
    from sdk import load_bundle, plan_memory

    report = json.loads(edge("inspect", work / "cnn.edge", "--json"))
    mem = report["memory"]
    assert mem["planned"] is True
    # the plan stored at compile time equals a fresh plan of the loaded graph
    fresh = plan_memory(load_bundle(work / "cnn.edge").graph)
    assert (mem["peak_arena_bytes"], mem["weight_bytes"], mem["flash_bytes"]) == \
        (fresh.arena_bytes, fresh.weight_bytes, fresh.flash_bytes)
    # the conv 3→8 on 16×16 input and its output are live together: 768 + 2048 int8 bytes
    assert 768 + 2048 <= mem["peak_arena_bytes"] < mem["unplanned_bytes"]
    assert mem["weight_bytes"] == report["total_param_bytes"]
    assert mem["flash_bytes"] >= mem["weight_bytes"]
    placed = [r for r in report["nodes"] if r["arena_offset"] is not None]
    assert len(placed) == len(report["nodes"])


def test_reference_litert_and_onnxruntime_agree_within_one_lsb(work: Path) -> None:
    outs = {}
    for backend in ("reference", "litert", "onnxruntime"):
        path = work / f"out_{backend}.npz"
        text = edge("run", work / "cnn.edge", "--input", work / "in.npz", "--output", path,
                    "--backend", backend, "--target", "laptop")
        assert f"backend '{backend}'" in text and f"node(s) on {backend}" in text
        outs[backend] = np.load(path)["logits"]
    manifest = json.loads(edge("inspect", work / "cnn.edge", "--json"))
    lsb = float(manifest["outputs"][0]["quant"]["scale"])
    assert outs["reference"].shape == (1, 10)
    # ORT (float requantize, half to even) and LiteRT+XNNPACK (float32 multiply) round
    # differently from the integer reference: up to 1 LSB of the output scale (docs/backends.md)
    for backend in ("litert", "onnxruntime"):
        assert np.abs(outs[backend] - outs["reference"]).max() <= lsb * 1.0001, backend
    # and the integer model tracks the float model it came from
    float_out = work / "out_float.npz"
    edge("run", work / "cnn.onnx", "--input", work / "in.npz", "--output", float_out)
    f = np.load(float_out)["logits"].ravel()
    q = outs["reference"].ravel()
    assert float(q @ f / np.linalg.norm(q) / np.linalg.norm(f)) > 0.98


def test_profile_for_raspberry_pi_4_writes_a_json_report(work: Path) -> None:
    path = work / "profile.json"
    text = edge("profile", work / "cnn.edge", "--target", "raspberry-pi-4", "--runs", "2",
                "--json", path)
    assert "raspberry-pi-4" in text
    report = json.loads(path.read_text())
    assert report["target"] == "raspberry-pi-4"
    ops = [r["op"] for r in report["rows"]]
    assert ops.count("QConv2d") == 2 and "QFullyConnected" in ops
    assert report["totals"]["macs"] == 16 * 16 * 8 * 27 + 4 * 4 * 16 * 72 + 256 * 10
    inspect = json.loads(edge("inspect", work / "cnn.edge", "--json"))["memory"]
    assert report["peak_arena_bytes"] == inspect["peak_arena_bytes"]
    assert report["flash_bytes"] == inspect["flash_bytes"]
