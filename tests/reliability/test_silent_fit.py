"""One fit decision for compile, profile and flash: a model whose packed flash image does not
fit one A/B slot of a small MCU target is refused by `edge compile --target`, `edge profile`
and `edge flash` alike (exit non-zero, one line), with a fix that is not already in force."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from firmware_bridge.image import image_sizes, slot_size_for_flash
from sdk.backends.emulator import fit_report
from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.cli.main import main
from sdk.compile.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[2]


def _toml(name: str, flash: int) -> str:
    text = (ROOT / "targets" / "mps2-an386.toml").read_text()
    text = text.replace('name = "mps2-an386"', f'name = "{name}"')
    return text.replace("flash_bytes = 4194304", f"flash_bytes = {flash}")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    onnx.save(build_demo_cnn(), d / "cnn.onnx")
    np.savez(d / "calib.npz", x=synthetic_images(16, seed=1))
    assert main(["compile", str(d / "cnn.onnx"), "--calib", str(d / "calib.npz"),
                 "-o", str(d / "cnn.edge")]) == 0
    graph = load_bundle(d / "cnn.edge").graph
    image, _ = image_sizes(graph)
    weights = fit_report(graph, "mps2-an386").flash_needed_bytes
    # flash enough for the weights, but one A/B slot of it is smaller than the packed image
    # (the packed kernels widen int8 weights): what compile used to accept and flash refused
    small = ((2 * image) // 4096) * 4096
    assert weights <= small and slot_size_for_flash(small) < image
    tdir = d / "targets"
    tdir.mkdir()
    (tdir / "tiny-slot.toml").write_text(_toml("tiny-slot", small))
    (tdir / "roomy-slot.toml").write_text(_toml("roomy-slot", 4 * image + 65536))
    return d, tdir, small


def _one_line(capsys):
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    return err[0]


def test_compile_target_refuses_what_flash_refuses(model, capsys, monkeypatch):
    d, tdir, _ = model
    monkeypatch.setenv("EDGE_TARGETS_PATH", str(tdir))
    args = ["compile", str(d / "cnn.onnx"), "--calib", str(d / "calib.npz"),
            "-o", str(d / "out.edge")]
    assert main(args + ["--target", "tiny-slot"]) != 0
    line = _one_line(capsys)
    assert "does not fit tiny-slot" in line and "image needs" in line and "A/B slot" in line
    assert "--activation-bits 8" not in line          # already in force: never suggested
    assert main(args + ["--target", "roomy-slot"]) == 0
    capsys.readouterr()


def test_profile_exits_nonzero_when_it_does_not_fit(model, capsys, monkeypatch):
    d, tdir, _ = model
    monkeypatch.setenv("EDGE_TARGETS_PATH", str(tdir))
    assert main(["profile", str(d / "cnn.edge"), "--target", "tiny-slot", "--runs", "1"]) != 0
    cap = capsys.readouterr()
    err = cap.err
    assert "does not fit tiny-slot" in err and "Traceback" not in err
    # the report itself says so too, and why: the packed image, not only arena and weights
    assert "DOES NOT FIT" in cap.out and "image needs" in cap.out
    assert main(["profile", str(d / "cnn.edge"), "--target", "roomy-slot", "--runs", "1"]) == 0


def test_flash_refuses_with_the_same_decision(model, capsys):
    from firmware_bridge.build import toolchain_missing

    why = toolchain_missing("host")
    if why:
        pytest.skip(f"host firmware cannot be built: {why}")
    from firmware_bridge.host_firmware import HostFirmware
    from sdk.backends import mcu

    d, _, small = model
    with HostFirmware(flash_bytes=small) as fw:
        try:
            assert main(["flash", str(d / "cnn.edge"), "--port", fw.url]) != 0
            line = _one_line(capsys)
            assert "does not fit" in line and "image needs" in line
            assert "--activation-bits 8" not in line
            # the device-side check is the same decision: its fix names what is in force
            # (int8 activations and weights already), not "int8 activations"
            assert "int8 activations" not in line and "int8 already" in line
        finally:
            client = mcu._CLIENTS.pop(fw.url, None)
            if client is not None:
                client.close()
