"""A model compiled by the SDK runs on the firmware through the mcu backend and `edge flash`,
bit-exact with the reference backend; a model that does not fit is refused on the host."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.image import pack_image
from firmware_bridge.session import DeviceModel
from sdk.backends.mcu import McuBackend, check_target_fit
from sdk.backends.partition import compile_for
from sdk.cli.main import main
from sdk.compile.pipeline import compile_model
from sdk.errors import TargetError
from sdk.graph.ir import Graph, Tensor
from sdk.ops.interpreter import run_graph

from .onnx_models import small_cnn_onnx


@pytest.fixture(scope="module")
def bundle():
    rng = np.random.default_rng(0)
    return compile_model(small_cnn_onnx(), {"x": rng.normal(0, 1, (16, 3, 12, 12)).astype(np.float32)})


def test_compiled_model_on_device_equals_reference(device, bundle):
    graph = bundle.graph
    exe = compile_for(graph, McuBackend(client=device), None)
    mcu_ops = [a.op for a in exe.plan.assignments if a.backend == "mcu"]
    assert {"QConv2d", "QMaxPool2d", "QFullyConnected"} <= set(mcu_ops)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
        got = exe.run({"x": x})["y"]
        ref = run_graph(graph, {"x": x}, fast=False)["y"]
        assert np.array_equal(got, ref)


def test_profile_reports_per_op_counts(m4_device, bundle):
    exe = McuBackend(client=m4_device).compile(_integer_part(bundle.graph), None)
    x = np.zeros((1, 3, 12, 12), np.int8)
    prof = exe.profile({"x_q": x}, repeats=2)
    assert prof.detail["unit"].startswith("QEMU instructions")
    rows = prof.detail["per_op"]
    assert [r["op"] for r in rows] == ["QConv2d", "QMaxPool2d", "QConv2d", "Flatten",
                                       "QFullyConnected"]
    assert all(r["instructions"] > 0 for r in rows)
    # deterministic: a second run counts the same instructions, up to the timer's phase
    # (one 25 MHz tick = 0.625 instruction at -icount shift=6)
    again = exe.profile({"x_q": x}, repeats=1).detail["per_op"]
    assert all(abs(a["ticks"] - r["ticks"]) <= 1 for a, r in zip(again, rows))


def _integer_part(graph: Graph) -> Graph:
    from firmware_bridge.image import device_subgraph
    return device_subgraph(graph)[0]


def test_edge_flash_cli(host_device, bundle, tmp_path, capsys):
    path = tmp_path / "cnn.edge"
    bundle.save(path)
    from sdk.backends import mcu

    mcu._CLIENTS[host_device.url] = host_device
    try:
        assert main(["flash", str(path), "--port", host_device.url, "--force"]) == 0
        out = capsys.readouterr().out
        assert "flashed" in out and "slot" in out
        assert main(["flash", str(path), "--port", host_device.url]) == 0
        assert "already runs this image" in capsys.readouterr().out
    finally:
        mcu._CLIENTS.pop(host_device.url, None)
    packed = pack_image(bundle.graph)
    info = host_device.hello()
    assert info.slot_crc[info.active_slot] == packed.crc32


def test_model_too_big_is_refused_before_sending(host_device):
    g = Graph("big")
    g.add_tensor(Tensor("x", "int8", (1, 1_200_000)))   # in place: arena = 1.2 MB > 1 MiB
    g.add_tensor(Tensor("y", "int8", (1, 1_200_000)))
    g.add_node("QClamp", ["x"], ["y"], min=-5, max=5)
    g.inputs, g.outputs = ["x"], ["y"]
    packed = pack_image(g)
    before = host_device.hello()
    sends = host_device.sends
    with pytest.raises(TargetError, match=r"RAM: arena needs [\d.]+ KiB of arena; target host has "
                                         r"[\d.]+ KiB of RAM"):
        DeviceModel(host_device, packed)
    assert host_device.sends == sends + 1          # only the HELLO that asked for the sizes
    assert host_device.hello().slot_crc == before.slot_crc
    from targets import load_target

    with pytest.raises(TargetError, match="flash: image needs"):
        check_target_fit(pack_image(_weights_graph(3_000_000)), load_target("mps2-an386"))


def _weights_graph(nbytes: int) -> Graph:
    g = Graph("heavy")
    g.add_tensor(Tensor("x", "int8", (1, 1000)))
    g.add_constant("w", np.ones((nbytes // 1000, 1000), np.int8))
    g.add_tensor(Tensor("z", "int8", (1, nbytes // 1000)))
    g.add_node("QFullyConnected", ["x", "w", ""], ["z"], x_zp=0, m0=1 << 30, shift=0, out_zp=0)
    g.inputs, g.outputs = ["x"], ["z"]
    return g


def test_edge_run_with_backend_mcu(m4_device, bundle, tmp_path, capsys):
    """`edge run MODEL.edge --backend mcu --port URL` equals the reference bit for bit."""
    from sdk.backends import mcu

    path = tmp_path / "cnn.edge"
    bundle.save(path)
    x = np.random.default_rng(9).normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    mcu._CLIENTS[m4_device.url] = m4_device   # QEMU serves one connection: share it
    try:
        assert main(["run", str(path), "--input", str(tmp_path / "in.npz"), "--output",
                     str(tmp_path / "out.npz"), "--backend", "mcu", "--port", m4_device.url]) == 0
    finally:
        mcu._CLIENTS.pop(m4_device.url, None)
    assert "mcu" in capsys.readouterr().out
    got = np.load(tmp_path / "out.npz")["y"]
    assert np.array_equal(got, run_graph(bundle.graph, {"x": x}, fast=False)["y"])


def test_profile_on_device_table(m4_device, bundle):
    from sdk.backends import mcu
    from sdk.backends.mcu import profile_on_device, render_profile

    mcu._CLIENTS[m4_device.url] = m4_device
    try:
        report = profile_on_device(bundle.graph, m4_device.url, runs=2)
    finally:
        mcu._CLIENTS.pop(m4_device.url, None)
    assert report["key"] == "instructions"
    assert report["ops"][0]["op"] == "QConv2d"
    text = render_profile(report)
    assert "QEMU instructions" in text and "QFullyConnected" in text
    assert report["total"] == pytest.approx(sum(r["instructions"] for r in report["ops"]))
