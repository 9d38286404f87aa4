"""`edge profile MODEL.edge --backend mcu --port URL [--json FILE]` against the real firmware:
the Cortex-M4 build in QEMU (QEMU instruction counts) and the host build (wall-clock time);
the unit comes from the board the device names in its HELLO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.client import DeviceClient
from firmware_bridge.image import device_subgraph
from firmware_bridge.qemu import ticks_to_instructions
from sdk.backends import mcu
from sdk.backends.mcu import count_unit
from sdk.cli.main import main
from sdk.compile.pipeline import compile_model

from .onnx_models import small_cnn_onnx

DEVICE_OPS = ["QConv2d", "QMaxPool2d", "QConv2d", "Flatten", "QFullyConnected"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    bundle = compile_model(small_cnn_onnx(),
                           {"x": rng.normal(0, 1, (16, 3, 12, 12)).astype(np.float32)})
    path = tmp_path_factory.mktemp("profile-mcu") / "cnn.edge"
    bundle.save(path)
    return path


def _profile_cli(client: DeviceClient, model: Path, *extra: str) -> int:
    """Run the CLI on the fixture's open connection (QEMU's serial port takes one client)."""
    mcu._CLIENTS[client.url] = client
    try:
        return main(["profile", str(model), "--backend", "mcu", "--port", client.url, *extra])
    finally:
        mcu._CLIENTS.pop(client.url, None)


def test_edge_profile_on_emulated_cortex_m4(m4_device, model_path, tmp_path, capsys):
    out_json = tmp_path / "prof.json"
    assert _profile_cli(m4_device, model_path, "--runs", "2", "--json", str(out_json)) == 0
    text = capsys.readouterr().out
    assert "device mps2-an386" in text
    assert "QEMU instructions" in text and "not cycles" in text
    for op in ("QConv2d", "QMaxPool2d", "QFullyConnected"):
        assert op in text
    rep = json.loads(out_json.read_text())
    assert rep["key"] == "instructions" and rep["device"] == "mps2-an386"
    assert [r["op"] for r in rep["ops"]] == DEVICE_OPS
    sub = device_subgraph(_load(model_path))[0]
    assert [r["name"] for r in rep["ops"]] == [n.name for n in sub.topological_order()]
    for r in rep["ops"]:
        assert r["instructions"] == pytest.approx(ticks_to_instructions(r["ticks"]))
        assert r["instructions"] > 0
    assert rep["total"] == pytest.approx(sum(r["instructions"] for r in rep["ops"]))
    # the per-op counts are timed inside the whole INVOKE: they sum to most of it, the rest
    # is the interpreter between ops (up to one timer tick of phase per op either way)
    slack = ticks_to_instructions(len(rep["ops"]))
    assert 0.8 * rep["invoke"] <= rep["total"] <= rep["invoke"] + slack
    # convolutions do real work: at least one instruction per 8 MACs, far from free
    conv = [r for r in rep["ops"] if r["op"] == "QConv2d"]
    assert all(r["instructions"] >= r["macs"] / 8 for r in conv)
    # deterministic instruction clock: a second profile counts the same, up to one tick
    again = tmp_path / "again.json"
    assert _profile_cli(m4_device, model_path, "--runs", "1", "--json", str(again)) == 0
    capsys.readouterr()
    for a, b in zip(json.loads(again.read_text())["ops"], rep["ops"]):
        assert abs(a["ticks"] - b["ticks"]) <= 1


def test_edge_profile_on_host_build_is_wall_clock_time(host_device, model_path, tmp_path,
                                                       capsys):
    out_json = tmp_path / "host.json"
    assert _profile_cli(host_device, model_path, "--runs", "2", "--json", str(out_json)) == 0
    text = capsys.readouterr().out
    assert "device host" in text and "wall-clock time" in text
    assert "QEMU" not in text
    rep = json.loads(out_json.read_text())
    assert rep["key"] == "seconds"
    assert [r["op"] for r in rep["ops"]] == DEVICE_OPS
    for r in rep["ops"]:   # host ticks are CLOCK_MONOTONIC nanoseconds
        assert r["seconds"] == pytest.approx(r["ticks"] * 1e-9)
    # Wall-clock: the per-op figures come from one INVOKE and "invoke" is the median of
    # several, so on a shared host their sum may exceed it; only the deterministic QEMU
    # counts (test above) must nest exactly.
    assert rep["total"] > 0 and rep["invoke"] > 0


def test_model_too_big_for_target_is_refused_before_the_device(host_device, model_path,
                                                               tmp_path, capsys):
    src = (Path(__file__).resolve().parents[2] / "targets" / "mps2-an386.toml").read_text()
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(src.replace('name = "mps2-an386"', 'name = "tiny-m4"', 1)
                    .replace("ram_bytes = 4194304", "ram_bytes = 256", 1))
    sends = host_device.sends
    assert _profile_cli(host_device, model_path, "--target", str(tiny)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model does not fit") and "RAM: arena needs" in err
    assert host_device.sends == sends          # nothing was sent


@pytest.mark.parametrize("argv", [
    ["profile", "{m}", "--backend", "mcu"],
    ["run", "{m}", "--backend", "mcu", "--input", "{i}"],
])
def test_backend_mcu_without_port_is_a_one_line_error(argv, model_path, tmp_path, capsys):
    inp = tmp_path / "in.npz"
    np.savez(inp, x=np.zeros((1, 3, 12, 12), np.float32))
    assert main([a.format(m=model_path, i=inp) for a in argv]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert "\n" not in err and cap.out == ""
    assert "pass --port URL" in err and "edge emulate" in err


def test_profile_rejects_host_only_options_and_other_backends(model_path, capsys):
    assert main(["profile", str(model_path), "--backend", "mcu", "--port", "loop://",
                 "--hops", "10"]) == 2
    assert "--hops" in capsys.readouterr().err
    assert main(["profile", str(model_path), "--backend", "onnxruntime", "--port",
                 "loop://"]) == 2
    assert "supports only 'mcu'" in capsys.readouterr().err


def test_count_unit_follows_the_board_in_hello():
    assert count_unit("mps2-an386", 25_000_000, "socket://127.0.0.1:5000", 6)[0] == \
        "instructions"
    key, label = count_unit("mps2-an386", 25_000_000, "/dev/ttyACM0", None)
    assert key == "cycles" and "25 MHz core clock" in label and "QEMU" not in label
    # a socket that is not a known emulator: cycles on a board, but say what QEMU would mean
    assert "not cycles" in count_unit("mps2-an386", 25_000_000, "socket://h:1", None)[1]
    # the host build is never labelled as QEMU, even behind a stale emulator entry
    assert count_unit("host", 1_000_000_000, "/dev/pts/3", 6)[0] == "seconds"
    assert count_unit("other-board", 1_000_000, "/dev/ttyUSB0", None)[0] == "seconds"


def _load(path: Path):
    from sdk.compile.bundle import load_bundle
    return load_bundle(path).graph
