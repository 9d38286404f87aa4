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
BIG = [ROOT / "samples" / "seg" / "seg_vit_mask.onnx"]


@pytest.fixture(scope="module")
def host_device():
    why = toolchain_missing("host")
    if why:
        pytest.skip(f"host firmware cannot be built: {why}")
    from firmware_bridge.host_firmware import HostFirmware

    with HostFirmware() as fw:
        client = DeviceClient(fw.url, timeout=1.0)  # per try; 0.1 s timed out once under load
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
    """Any axis of a rank 1-4 int8/int16/int32 table; indices scalar / 1-D / 2-D, negative,
    repeated, the two ends of the axis; constant (an int32 table in flash) or a model input
    (int32/int16)."""
    rank = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 6, rank))
    axis = int(rng.integers(-rank, rank))
    n = shape[axis]
    idx_shape = [(), (int(rng.integers(1, 7)),), (2, int(rng.integers(1, 4)))][int(rng.integers(0, 3))]
    idx = rng.integers(-n, n, idx_shape).astype(np.int64)
    if idx.size >= 2:
        idx.reshape(-1)[:2] = [-n, n - 1]
    x = _values(rng, str(rng.choice(["int8", "int16", "int32"])), shape)
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


# -- the tiny Segmenter on the firmware ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(seg_cache):
    from sdk.vision.mcu import segmenter_image

    return segmenter_image(TINY)       # the default: mps2-an386 and the tiny budget


@pytest.fixture(scope="module")
def frame(tiny):
    """One held-out test scene on the device input's int8 grid, and its reference logits."""
    from sdk.vision.mcu import quantize_input, reference_logits
    from sdk.vision.scenes import cached_scenes, normalize_batch

    images, _ = cached_scenes(2, 1, "test", 64)
    xq = quantize_input(tiny, normalize_batch(images[:1]))
    return xq, reference_logits(tiny, xq)


def test_tiny_model_fits_the_budget_and_the_board(tiny):
    g = tiny.graph
    weights = sum(t.data.nbytes for t in g.tensors.values()
                  if t.data is not None and t.data.dtype == np.int8)
    assert tiny.weights_bytes == weights <= 300 * 1024
    assert tiny.arena_bytes <= 256 * 1024 and tiny.target == "mps2-an386"
    ops = {n.op for n in g.nodes}
    assert {"ResizeNearest", "Gather", "Shiftmax", "ShiftGELU", "ILayerNorm"} <= ops
    assert TINY.stat().st_size < 5_000_000 and TINY.with_suffix(".npz").stat().st_size < 5_000_000


def test_tiny_model_frame_bit_exact_on_the_host_build(tiny, frame, host_device):
    xq, ref = frame
    got = DeviceModel(host_device, tiny.packed).run({tiny.packed.inputs[0].name: xq}, raw=True)
    got = got[tiny.packed.outputs[0].name]
    assert got.dtype == np.int8 and got.shape == ref.shape == (1, 8, 64, 64)
    assert np.array_equal(got, ref)


def test_tiny_model_frame_bit_exact_in_qemu_with_instruction_count(tiny, frame):
    """The whole frame in the Cortex-M4 firmware under QEMU equals the NumPy reference bit for
    bit; the instruction count of the frame and of its ops comes from QEMU's -icount clock."""
    if toolchain_missing("m4") or qemu_missing():
        pytest.skip(f"Cortex-M4 emulation unavailable: {toolchain_missing('m4') or qemu_missing()}")
    from sdk.vision.mcu import QemuSegmenter

    xq, ref = frame
    with QemuSegmenter(tiny) as dev:
        got, instructions = dev(xq)
        ops = dev.op_counts()
    assert np.array_equal(got, ref), f"{np.count_nonzero(got != ref)} of {ref.size} differ"
    per_op = sum(c for _, _, c, _ in ops)
    assert 1e6 < per_op <= instructions < 1e9
    ran = {op for _, op, c, _ in ops if c > 0}
    assert {"ResizeNearest", "Gather", "QMatMul", "Shiftmax", "ShiftGELU"} <= ran
    # the labels the device gives are the reference's
    assert np.array_equal(got[0].argmax(0), ref[0].argmax(0))


def test_a_budget_below_the_tiny_model_refuses_it_with_needed_vs_available(tiny):
    from sdk.errors import TargetError
    from sdk.vision.mcu import McuBudget

    tiny.check_budget(McuBudget(tiny.weights_bytes, tiny.arena_bytes))   # exactly enough
    with pytest.raises(TargetError) as e:
        tiny.check_budget(McuBudget(tiny.weights_bytes - 1, tiny.arena_bytes - 1, "a test budget"))
    msg = str(e.value)
    assert "\n" not in msg
    assert f"int8 weights need {tiny.weights_bytes / 1024:,.1f} KiB, available " \
           f"{(tiny.weights_bytes - 1) / 1024:,.1f} KiB" in msg
    assert f"arena needs {tiny.arena_bytes / 1024:,.1f} KiB" in msg and "a test budget" in msg


def test_the_committed_width_128_model_is_refused_on_mps2_an386(seg_bundle):
    """seg_vit_mask is over the tiny-segmenter budget (its int8 weights); with the budget
    lifted, the board's real memory map refuses it too (its packed image exceeds an A/B flash
    slot). One line each, needed vs available, from the compiled model's numbers."""
    from sdk.compile import load_bundle
    from sdk.errors import TargetError
    from sdk.vision.mcu import int8_weight_bytes, segmenter_image

    need = int8_weight_bytes(load_bundle(seg_bundle).graph)
    assert need > 300 * 1024
    with pytest.raises(TargetError) as e:
        segmenter_image(BIG[0])          # compiled by the seg_bundle fixture already
    assert str(e.value).startswith(
        f"seg_vit_mask does not fit mps2-an386 under the tiny-segmenter budget: int8 weights "
        f"need {need / 1024:,.1f} KiB, available 300.0 KiB — use the tiny variant")
    assert "\n" not in str(e.value)
    with pytest.raises(TargetError, match=r"^model does not fit mps2-an386: flash: image needs "
                       r"[\d,]+ B, an A/B slot of mps2-an386 holds 2,093,056 B") as e:
        segmenter_image(BIG[0], budget=None)
    assert "\n" not in str(e.value)


def test_the_demo_on_mps2_an386_refuses_the_big_model_and_takes_the_tiny_one(
        seg_bundle, tiny, capsys):
    from sdk.cli.main import main
    from sdk.compile import load_bundle
    from sdk.vision.mcu import int8_weight_bytes

    need = int8_weight_bytes(load_bundle(seg_bundle).graph)
    rc = main(["demo", "seg", "--model", str(BIG[0]), "--target", "mps2-an386", "--frames", "1"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "\n" not in err
    assert err.startswith("error: seg_vit_mask does not fit mps2-an386 under the tiny-segmenter "
                          f"budget: int8 weights need {need / 1024:,.1f} KiB, available 300.0 KiB")
    rc = main(["demo", "seg", "--model", str(TINY), "--target", "mps2-an386", "--frames", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"mps2-an386: {tiny.weights_bytes:,} B of int8 weights, {tiny.arena_bytes:,} B arena" in out
    assert "1 frames in" in out or "frame    1" in out
