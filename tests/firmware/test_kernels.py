"""Every C kernel is bit-exact with the NumPy reference on random inputs, on the host build
and on the Cortex-M4 build in QEMU. Each case packs a one-op graph into a flash image, loads
it over the serial protocol, runs it on the device and compares every output element.

int8 fully-connected and group-1 convolutions have two C kernels each: the SMLAD ("packed")
kernels that ``pack_image`` picks by default, and the plain kernels the firmware falls back
to (``packed_kernels=False``, or weights too large for the packing scratch). Both are checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.image import pack_image
from firmware_bridge.session import DeviceModel

from .cases import CASES

SEEDS = {"host": range(25), "m4": range(6)}
PLAIN_SEEDS = {"host": range(12), "m4": range(4)}
#: cases whose op has an SMLAD twin; with packed_kernels=False they run the plain C kernel
HAS_PACKED_TWIN = ["QFullyConnected", "QConv2d", "QConv1d", "Flatten+QFullyConnected"]


def _check(device, op: str, seeds: range, packed_kernels: bool) -> None:
    for seed in seeds:
        rng = np.random.default_rng([seed, sum(map(ord, op))])
        graph, feeds, expected = CASES[op](rng)
        model = DeviceModel(device, pack_image(graph, packed_kernels=packed_kernels))
        got = model.run(feeds)
        for name, ref in expected.items():
            assert got[name].dtype == ref.dtype, (op, seed)
            assert got[name].shape == ref.shape, (op, seed)
            mismatches = int(np.count_nonzero(got[name] != ref))
            assert mismatches == 0, f"{op} seed {seed}: {mismatches} of {ref.size} differ"


@pytest.mark.parametrize("op", list(CASES))
def test_kernel_bit_exact(device, op, request):
    kind = request.node.callspec.params["device"]
    _check(device, op, SEEDS[kind], packed_kernels=True)


@pytest.mark.parametrize("op", HAS_PACKED_TWIN)
def test_plain_kernel_bit_exact(device, op, request):
    """The non-SMLAD FC / conv kernels on the same random cases."""
    kind = request.node.callspec.params["device"]
    rng = np.random.default_rng([0, sum(map(ord, op))])
    graph = CASES[op](rng)[0]
    # the two images really differ (different kernels and weight layouts)
    assert pack_image(graph, packed_kernels=False).data != pack_image(graph).data
    _check(device, op, PLAIN_SEEDS[kind], packed_kernels=False)
