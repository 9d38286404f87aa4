"""Fault injection on the link: corrupted, dropped and duplicated frames (1% each, both
directions). Every command still completes with the right answer (retries with the same
sequence number; the firmware replays its cached reply instead of running a command twice),
and an image whose bytes are wrong is never activated."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from firmware_bridge.client import DeviceClient, DeviceStatusError
from firmware_bridge.faults import FaultyLink
from firmware_bridge.image import pack_image
from firmware_bridge.protocol import Command, Status
from firmware_bridge.session import DeviceModel
from sdk.kernels import elementwise

from .models import accumulator, reference, small_cnn

RUNS = {"host": 150, "m4": 30}
RATE = {"host": 0.01, "m4": 0.02}   # fewer m4 runs: a higher rate so each fault occurs


def test_commands_survive_a_faulty_link(device, request):
    kind = request.node.callspec.params["device"]
    r = RATE[kind]
    link = FaultyLink(device.port, corrupt=r, drop=r, duplicate=r, seed=7)
    faulty = DeviceClient(port=link, timeout=device.timeout, retries=15)
    faulty.url = device.url
    graph = small_cnn(11)
    model = DeviceModel(faulty, pack_image(graph), load=False)
    model.load(force=True)
    rng = np.random.default_rng(3)
    for _ in range(RUNS[kind]):
        x = rng.integers(-128, 128, (1, 2, 8, 8)).astype(np.int8)
        assert np.array_equal(model.run({"x": x})["y"], reference(graph, x))
    s = link.stats
    assert s.corrupted > 0 and s.dropped > 0 and s.duplicated > 0, s


def test_duplicated_invoke_runs_once(device):
    """Every request duplicated: a streaming model's state must advance once per INVOKE."""
    graph, attrs = accumulator()
    model = DeviceModel(device, pack_image(graph))
    model.reset()
    link = FaultyLink(device.port, corrupt=0, drop=0, duplicate=1.0, seed=1)
    dup = DeviceClient(port=link, timeout=device.timeout)
    dup.url = device.url
    model_dup = DeviceModel(dup, model.packed, load=False)
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, 16)
    state = np.zeros((1, 16), np.int8)
    for _ in range(4):
        state = elementwise.add(x, state, **attrs)
        assert np.array_equal(model_dup.run({"x": x})["y"], state)
    assert np.array_equal(model.get_state()[0], state)
    assert link.stats.duplicated >= 4 * 3


def _load_raw(client: DeviceClient, image: bytes, slot: int) -> None:
    crc = struct.unpack_from("<I", image, 8)[0]
    client.request(Command.LOAD_BEGIN, struct.pack("<BxxxII", slot, len(image), crc))
    step = client.info.max_body - 12
    for off in range(0, len(image), step):
        client.request(Command.LOAD_CHUNK, struct.pack("<BxxxI", slot, off) + image[off:off + step])
    client.request(Command.LOAD_COMMIT, struct.pack("<B", slot))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "wrong header crc"])
def test_corrupted_image_is_never_activated(device, damage):
    good_graph = small_cnn(21)
    good = DeviceModel(device, pack_image(good_graph))
    good.load(force=True)
    info = device.hello()
    image = bytearray(pack_image(small_cnn(22)).data)
    if damage == "flipped byte":
        image[len(image) // 2] ^= 0x40
    elif damage == "truncated":
        image = image[:-100]
    else:
        image[8] ^= 1
    with pytest.raises(DeviceStatusError) as err:
        _load_raw(device, bytes(image), 1 - info.active_slot)
    assert err.value.status == Status.CRC_MISMATCH
    after = device.hello()
    assert after.active_slot == info.active_slot
    assert after.slot_crc[after.active_slot] == good.packed.crc32
    x = np.arange(128, dtype=np.int64).reshape(1, 2, 8, 8).astype(np.int8)
    assert np.array_equal(good.run({"x": x})["y"], reference(good_graph, x))


def test_loading_into_the_active_slot_is_refused(host_device):
    model = DeviceModel(host_device, pack_image(small_cnn(31)))
    model.load(force=True)
    active = host_device.hello().active_slot
    with pytest.raises(DeviceStatusError, match="SLOT_ACTIVE"):
        host_device.load_image(model.packed.data, slot=active)
