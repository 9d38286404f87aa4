"""Firmware devices for the tests: the host build on a pty and the Cortex-M4 build in QEMU.

Both are started once per test session; tests that need a tool that is missing here skip
with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytest puts tests/ first on sys.path, where tests/targets/ would shadow the `targets` package
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path[:1]:
    sys.path.insert(0, ROOT)

from firmware_bridge.build import toolchain_missing
from firmware_bridge.client import DeviceClient
from firmware_bridge.qemu import qemu_missing


@pytest.fixture(scope="session")
def host_device():
    why = toolchain_missing("host")
    if why:
        pytest.skip(f"host firmware cannot be built: {why}")
    from firmware_bridge.host_firmware import HostFirmware

    with HostFirmware() as fw:
        client = DeviceClient(fw.url, timeout=0.1)
        yield client
        client.close()


@pytest.fixture(scope="session")
def m4_device():
    why = toolchain_missing("m4") or qemu_missing()
    if why:
        pytest.skip(f"Cortex-M4 emulation unavailable: {why}")
    from firmware_bridge.qemu import QemuFirmware

    with QemuFirmware() as q:
        client = DeviceClient(q.url, timeout=1.0)
        yield client
        client.close()


@pytest.fixture(params=["host", "m4"])
def device(request) -> DeviceClient:
    return request.getfixturevalue(f"{request.param}_device")
