"""The default arena placement, where it differs from TensorFlow Lite Micro's greedy order,
runs unchanged on the C firmware (host build, and the Cortex-M4 build in QEMU): only offsets
differ, and the outputs are bit-exact with the reference executor."""

from __future__ import annotations

import numpy as np
import pytest
from branching_graphs import branching_int8_graph

from sdk.compile.memory_plan import live_bytes_bound, plan_memory
from sdk.ops.interpreter import Interpreter

SEEDS = [s for s in range(200)
         if plan_memory(branching_int8_graph(np.random.default_rng(s))).arena_bytes
         < plan_memory(branching_int8_graph(np.random.default_rng(s)),
                       placement="size-first-fit").arena_bytes][:4]


@pytest.fixture(scope="module", params=["host", "m4"])
def device(request):
    from firmware_bridge.build import toolchain_missing
    from firmware_bridge.client import DeviceClient

    why = toolchain_missing(request.param)
    if request.param == "m4" and not why:
        from firmware_bridge.qemu import qemu_missing
        why = qemu_missing()
    if why:
        pytest.skip(f"{request.param} firmware unavailable: {why}")
    if request.param == "host":
        from firmware_bridge.host_firmware import HostFirmware as Runner
        timeout = 0.1
    else:
        from firmware_bridge.qemu import QemuFirmware as Runner
        timeout = 1.0
    with Runner() as fw:
        client = DeviceClient(fw.url, timeout=timeout)
        yield client
        client.close()


def test_some_graphs_get_a_smaller_arena_than_tflite_micros_order() -> None:
    assert len(SEEDS) == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_smaller_placement_runs_bit_exact_on_the_firmware(device, seed: int) -> None:
    from firmware_bridge.image import pack_image
    from firmware_bridge.session import DeviceModel

    g = branching_int8_graph(np.random.default_rng(seed))
    plan = plan_memory(g)
    assert live_bytes_bound(plan) <= plan.arena_bytes
    packed = pack_image(g)
    assert packed.arena_bytes == plan.arena_bytes       # the image carries this placement
    rng = np.random.default_rng(seed + 1000)
    x = rng.integers(-128, 128, g.tensor("x").shape).astype(np.int8)
    want = Interpreter(g, fast=False).run({"x": x})
    got = DeviceModel(device, packed).run({"x": x})
    for name in g.outputs:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"seed {seed} {name}")
