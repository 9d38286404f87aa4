"""Every C kernel is bit-exact with the NumPy reference on random inputs, on the host build
and on the Cortex-M4 build in QEMU. Each case packs a one-op graph into a flash image, loads
it over the serial protocol, runs it on the device and compares every output element."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.image import pack_image
from firmware_bridge.session import DeviceModel

from .cases import CASES

SEEDS = {"host": range(25), "m4": range(6)}


@pytest.mark.parametrize("op", list(CASES))
def test_kernel_bit_exact(device, op, request):
    kind = request.node.callspec.params["device"]
    for seed in SEEDS[kind]:
        rng = np.random.default_rng([seed, sum(map(ord, op))])
        graph, feeds, expected = CASES[op](rng)
        model = DeviceModel(device, pack_image(graph))
        got = model.run(feeds)
        for name, ref in expected.items():
            assert got[name].dtype == ref.dtype, (op, seed)
            assert got[name].shape == ref.shape, (op, seed)
            mismatches = int(np.count_nonzero(got[name] != ref))
            assert mismatches == 0, f"{op} seed {seed}: {mismatches} of {ref.size} differ"
