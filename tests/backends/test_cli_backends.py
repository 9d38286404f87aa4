"""`edge compile MODEL --target NAME` prints the plan and enforces limits;
`edge run ... --backend NAME --target NAME` runs on that backend."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_backends")
    onnx.save(build_demo_cnn(), d / "cnn.onnx")
    np.savez(d / "calib.npz", x=synthetic_images(16, seed=1))
    np.save(d / "in.npy", synthetic_images(1, seed=9)[0])
    return d


def test_compile_with_target_prints_the_plan(files, capsys) -> None:
    rc = main(["compile", str(files / "cnn.onnx"), "--calib", str(files / "calib.npz"),
               "-o", str(files / "cnn.edge"), "--target", "raspberry-pi-4"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "fits raspberry-pi-4: arena" in out
    assert "backend 'litert'" in out and "QGlobalAvgPool" in out and "fallback" in out


def test_model_that_does_not_fit_fails_at_compile_time(files, capsys, tmp_path, monkeypatch) -> None:
    toml = (ROOT / "targets" / "stm32h7.toml").read_text()
    toml = re.sub(r'(?m)^name = "stm32h7"', 'name = "tiny-mcu"', toml)
    toml = re.sub(r"(?m)^ram_bytes = \d+", "ram_bytes = 8192", toml)
    (tmp_path / "tiny-mcu.toml").write_text(toml)
    monkeypatch.setenv("EDGE_TARGETS_PATH", str(tmp_path))
    out_path = tmp_path / "never.edge"
    rc = main(["compile", str(files / "cnn.onnx"), "--calib", str(files / "calib.npz"),
               "-o", str(out_path), "--target", "tiny-mcu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert re.search(r"needs \d+\.\d KiB of arena; target tiny-mcu has 8\.0 KiB of RAM", err)
    assert not out_path.exists()


@pytest.mark.parametrize("backend", ["litert", "onnxruntime", "litert-ref"])
def test_run_with_backend_matches_reference_within_one_lsb(files, capsys, backend) -> None:
    edge = files / "cnn.edge"
    if not edge.exists():
        assert main(["compile", str(files / "cnn.onnx"), "--calib", str(files / "calib.npz"),
                     "-o", str(edge)]) == 0
    assert main(["run", str(edge), "--input", str(files / "in.npy"),
                 "-o", str(files / "ref.npz")]) == 0
    assert main(["run", str(edge), "--input", str(files / "in.npy"), "--backend", backend,
                 "--target", "raspberry-pi-4", "-o", str(files / f"{backend}.npz")]) == 0
    out = capsys.readouterr().out
    assert f"backend '{backend}'" in out
    ref = np.load(files / "ref.npz")["logits"]
    got = np.load(files / f"{backend}.npz")["logits"]
    from sdk.compile import load_bundle

    scale = float(load_bundle(edge).manifest["outputs"][0]["quant"]["scale"])
    # ORT / LiteRT round requantization differently: 1 LSB of the output scale
    assert np.abs(got - ref).max() <= scale * 1.0001
