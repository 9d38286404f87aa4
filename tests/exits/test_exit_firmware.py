"""The MCU firmware evaluates the exit rule in integers (opcodes 30-33) and skips the remaining
stages: the same exit and the same integer logits as the host (NumPy spec and Numba), on the
host build and on the Cortex-M4 build in QEMU; an early exit costs fewer instructions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

from firmware_bridge.build import toolchain_missing
from firmware_bridge.client import DeviceClient
from firmware_bridge.qemu import qemu_missing
from sdk.compile import compile_model
from sdk.exits import add_exits
from sdk.exits.calibrate import integer_outputs
from sdk.exits.device import DeviceExitModel
from sdk.runtime.early_exit import EarlyExitSession

SAMPLES = ROOT / "samples" / "exits"


@pytest.fixture(scope="module")
def base():
    with np.load(SAMPLES / "digits_calib.npz") as z:
        xc, yc = z["x"], z["label"]
    with np.load(SAMPLES / "digits_test.npz") as z:
        xt = z["x"]
    return compile_model(SAMPLES / "digits_exits.onnx", {"x": xc[:64]}), xc, yc, xt


def _device(kind: str):
    if kind == "host":
        why = toolchain_missing("host")
        if why:
            pytest.skip(f"host firmware cannot be built: {why}")
        from firmware_bridge.host_firmware import HostFirmware as Fw
        return Fw(), 0.1
    why = toolchain_missing("m4") or qemu_missing()
    if why:
        pytest.skip(f"Cortex-M4 emulation unavailable: {why}")
    from firmware_bridge.qemu import QemuFirmware as Fw
    return Fw(), 1.0


@pytest.fixture(scope="module")
def host_client():
    fw, timeout = _device("host")
    with fw:
        c = DeviceClient(fw.url, timeout=timeout)
        yield c
        c.close()


def _check_same_exits(client, bundle, xs):
    plan_exits = bundle.manifest["exits"]["exits"]
    dev = DeviceExitModel(client, bundle)
    fast, ref = EarlyExitSession(bundle, fast=True), EarlyExitSession(bundle, fast=False)
    ints = integer_outputs(bundle, {"x": xs}, [e["logits"] for e in plan_exits])
    results = []
    for i, x in enumerate(xs):
        d, a, b = dev.run({"x": x[None]}), fast.run({"x": x[None]}), ref.run({"x": x[None]})
        assert d.exit == a.exit == b.exit and d.label == a.label == b.label
        assert np.array_equal(d.logits, ints[d.exit][i])
        results.append(d)
    return results


@pytest.mark.parametrize("rule", ["margin", "entropy", "patience", "gate"])
def test_device_takes_the_hosts_exit_with_the_hosts_integers(base, host_client, rule):
    bundle0, xc, yc, xt = base
    bundle = add_exits(bundle0, {"x": xc, "label": yc}, rule=rule, max_accuracy_drop=2.0)
    _check_same_exits(host_client, bundle, xt[:12])


def test_a_score_at_the_threshold_fires_on_the_device(base, host_client):
    bundle0, xc, yc, xt = base
    x = xt[3][None]
    host = EarlyExitSession(add_exits(bundle0, {"x": xc, "label": yc}, rule="margin"))
    s = host.run({"x": x}).scores[0]   # the margin of exit 1 for x, as the host computes it
    for thr, want in ((s, 0), (s + 1, 2)):
        b = add_exits(bundle0, {"x": xc, "label": yc}, rule="margin")
        for e in b.manifest["exits"]["exits"][:-1]:
            e["threshold"] = int(thr) if e["name"] == "exit_1" else 1 << 30
        r = DeviceExitModel(host_client, b).run({"x": x})
        assert r.exit == EarlyExitSession(b).run({"x": x}).exit == want


@pytest.fixture(scope="module")
def m4_client():
    fw, timeout = _device("m4")
    with fw:
        c = DeviceClient(fw.url, timeout=timeout)
        yield c
        c.close()


def test_cortex_m4_in_qemu_takes_the_same_exits_and_skips_the_rest(base, m4_client):
    # entropy: the most C of the four rules (tables, 64-bit sums and division); the host
    # build above covers all four, tools/bench_exit.py --mcu N the margin rule in QEMU
    rule = "entropy"
    bundle0, xc, yc, xt = base
    bundle = add_exits(bundle0, {"x": xc, "label": yc}, rule=rule, max_accuracy_drop=0.5)
    host = EarlyExitSession(bundle)
    exits = np.array([host.run({"x": x[None]}).exit for x in xt])
    late = np.flatnonzero(exits > 0)[:1]
    assert len(late) == 1
    xs = np.concatenate([xt[np.flatnonzero(exits == 0)[:2]], xt[late]])
    res = _check_same_exits(m4_client, bundle, xs)
    early = max(r.ticks for r in res if r.exit == 0)
    later = min(r.ticks for r in res if r.exit > 0)
    # stage 1 is about an eighth of the MACs: exiting there runs far fewer instructions
    assert early < 0.6 * later, (early, later)
