"""The segmentation graph on the microcontroller firmware: its layout kernels (ResizeNearest,
Gather; firmware/src/kernels_seg.c) bit-exact with the NumPy spec on the host build and on
the Cortex-M4 build in QEMU, the committed tiny Segmenter's frame bit-exact in QEMU with its
instruction count, and the refusal of the bigger committed models on mps2-an386."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path[:1]:  # tests/targets/ would shadow the `targets` package
    sys.path.insert(0, str(ROOT))

from firmware_bridge.build import toolchain_missing
from firmware_bridge.client import DeviceClient, DeviceStatusError
from firmware_bridge.image import pack_image
from firmware_bridge.qemu import qemu_missing
from firmware_bridge.session import DeviceModel
from sdk.errors import GraphError
from sdk.graph.ir import Graph, Tensor
from sdk.kernels.layout import gather
from sdk.kernels.resize import resize_nearest

TINY = ROOT / "samples" / "seg" / "seg_tiny_mask.onnx"
BIG = [ROOT / "samples" / "seg" / "seg_vit_mask.onnx", ROOT / "samples" / "seg" / "seg_vit_linear.onnx"]


@pytest.fixture(scope="module")
def host_device():
    why = toolchain_missing("host")
    if why:
        pytest.skip(f"host firmware cannot be built: {why}")
    from firmware_bridge.host_firmware import HostFirmware

    with HostFirmware() as fw:
        client = DeviceClient(fw.url, timeout=0.1)
        yield client
        client.close()


@pytest.fixture(scope="module")
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


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, shape, dtype=np.int64).astype(dtype)
    flat = x.reshape(-1)
    flat[0], flat[-1] = info.min, info.max   # the extremes always occur
    return x


def _graph(inputs: dict[str, np.ndarray], y_dtype: str, y_shape: tuple[int, ...]) -> Graph:
    g = Graph("case")
    for k, v in inputs.items():
        g.add_tensor(Tensor(k, str(v.dtype), v.shape))
    g.add_tensor(Tensor("y", y_dtype, y_shape))
    g.inputs, g.outputs = list(inputs), ["y"]
    return g


def resize_case(rng: np.random.Generator):
    """Up- and downsampling, ratios that are not integers, ranks 1-5, 1/2/4-byte elements."""
    rank = int(rng.integers(1, 6))
    shape = tuple(int(v) for v in rng.integers(1, 7, rank))
    sizes = [int(s * rng.choice([1, 1, 2, 3, 8])) if rng.random() < 0.6 else int(rng.integers(1, 9))
             for s in shape]
    if rank == 5:            # the kernel takes 4 axes: the first two keep their size
        sizes[:2] = shape[:2]
    x = _values(rng, str(rng.choice(["int8", "int16", "int32", "uint8"])), shape)
    ref = resize_nearest(x, sizes=sizes)
    g = _graph({"x": x}, str(x.dtype), ref.shape)
    g.add_node("ResizeNearest", ["x"], ["y"], sizes=sizes)
    return g, {"x": x}, ref


def gather_case(rng: np.random.Generator, runtime_indices: bool = False):
    """Any axis of a rank 1-4 table; indices scalar / 1-D / 2-D, negative, repeated, the two
    ends of the axis; constant (an int32 table in flash) or a model input (int32/int16)."""
    rank = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 6, rank))
    axis = int(rng.integers(-rank, rank))
    n = shape[axis]
    idx_shape = [(), (int(rng.integers(1, 7)),), (2, int(rng.integers(1, 4)))][int(rng.integers(0, 3))]
    idx = rng.integers(-n, n, idx_shape).astype(np.int64)
    if idx.size >= 2:
        idx.reshape(-1)[:2] = [-n, n - 1]
    x = _values(rng, str(rng.choice(["int8", "int16"])), shape)
    ref = gather(x, idx, axis=axis)
    feeds = {"x": x}
    if runtime_indices:
        feeds["idx"] = idx.astype(str(rng.choice(["int32", "int16"])))
        g = _graph(feeds, str(x.dtype), ref.shape)
    else:
        g = _graph(feeds, str(x.dtype), ref.shape)
        g.add_constant("idx", idx)
    g.add_node("Gather", ["x", "idx"], ["y"], axis=axis)
    return g, feeds, ref


CASES = {"ResizeNearest": resize_case, "Gather": gather_case,
         "Gather runtime indices": lambda rng: gather_case(rng, runtime_indices=True)}
SEEDS = {"host": range(30), "m4": range(8)}


@pytest.mark.parametrize("op", list(CASES))
def test_kernel_bit_exact(device, op, request):
    kind = request.node.callspec.params["device"]
    for seed in SEEDS[kind]:
        graph, feeds, ref = CASES[op](np.random.default_rng([seed, 12]))
        got = DeviceModel(device, pack_image(graph)).run(feeds)["y"]
        assert got.dtype == ref.dtype and got.shape == ref.shape, (op, seed)
        assert np.array_equal(got, ref), f"{op} seed {seed}: {np.count_nonzero(got != ref)} differ"


def test_gather_index_out_of_range_fails_the_invocation(host_device):
    """A computed index outside [-N, N) is refused by the kernel, never read out of bounds;
    a constant one is refused when the image is packed."""
    x = np.arange(12, dtype=np.int8).reshape(4, 3)
    g = _graph({"x": x, "idx": np.zeros(2, np.int32)}, "int8", (2, 3))
    g.add_node("Gather", ["x", "idx"], ["y"], axis=0)
    model = DeviceModel(host_device, pack_image(g))
    assert np.array_equal(model.run({"x": x, "idx": np.array([-4, 3], np.int32)})["y"], x[[0, 3]])
    for bad in ([4, 0], [0, -5]):
        with pytest.raises(DeviceStatusError, match="INVOKE_FAILED"):
            model.run({"x": x, "idx": np.array(bad, np.int32)})
    g = _graph({"x": x}, "int8", (1, 3))
    g.add_constant("idx", np.array([4], np.int64))
    g.add_node("Gather", ["x", "idx"], ["y"], axis=0)
    with pytest.raises(GraphError, match=r"Gather index 4 is outside \[-4, 4\) of axis 0"):
        pack_image(g)
