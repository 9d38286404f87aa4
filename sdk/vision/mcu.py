"""A segmentation model on a microcontroller: the integer bundle packed into a flash image for
the edge firmware, checked against the target and against a model budget, and run frame by
frame in the Cortex-M4 firmware under QEMU (``mps2-an386``) with its instruction counts.

Two checks, both on the numbers of the compiled model (never on its name):

* the **target** (:func:`sdk.backends.emulator.check_fits`): the board's real memory map —
  arena vs RAM, weights and the packed image vs flash / one A/B slot, and a firmware kernel
  for every op;
* the **budget** (:class:`McuBudget`, default :data:`TINY_BUDGET`): what a segmenter may use
  of the board, issue 12's tiny-variant budget of 300 KiB of int8 weights and 256 KiB of
  arena. QEMU's mps2-an386 has 4 MiB of each, which the committed width-128 models fit; the
  budget is what keeps a segmenter small enough for the Cortex-M4-class parts the board
  stands for. ``budget=None`` applies the target check alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from sdk.errors import TargetError


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


@dataclass(frozen=True)
class McuBudget:
    """Most int8 weight bytes and arena bytes a segmenter may use on the microcontroller."""

    weights_bytes: int = 300 * 1024
    arena_bytes: int = 256 * 1024
    name: str = "the tiny-segmenter budget"

    def __str__(self) -> str:
        return (f"{self.name} ({_kib(self.weights_bytes)} of int8 weights, "
                f"{_kib(self.arena_bytes)} of arena)")


TINY_BUDGET = McuBudget()


def int8_weight_bytes(graph: Any) -> int:
    """Bytes of the int8 constant tensors of an integer graph (weights, embeddings); int32
    biases and the per-channel multipliers are not counted."""
    return int(sum(t.data.nbytes for t in graph.tensors.values()
                   if t.data is not None and str(t.data.dtype) == "int8"))


@dataclass
class McuSegmenter:
    """An integer segmenter packed for the firmware, with what it needs of the device."""

    name: str
    graph: Any            # the integer graph (bundle entry)
    packed: Any           # firmware_bridge.image.PackedImage
    target: str
    weights_bytes: int    # int8 weights
    arena_bytes: int      # the image's activation arena
    image_bytes: int      # the flash image as `edge flash` sends it

    def check_budget(self, budget: McuBudget | None = TINY_BUDGET) -> None:
        """Raise TargetError, one line with needed vs available, when over ``budget``."""
        if budget is None:
            return
        problems = []
        if self.weights_bytes > budget.weights_bytes:
            problems.append(f"int8 weights need {_kib(self.weights_bytes)}, available "
                            f"{_kib(budget.weights_bytes)}")
        if self.arena_bytes > budget.arena_bytes:
            problems.append(f"arena needs {_kib(self.arena_bytes)}, available "
                            f"{_kib(budget.arena_bytes)}")
        if problems:
            raise TargetError(
                f"{self.name} does not fit {self.target} under {budget.name}: "
                + "; ".join(problems) + " — use the tiny variant "
                "(samples/seg/seg_tiny_mask.onnx) or train a smaller one (tools/train_seg.py "
                "--width 64 --blocks 3 --dec-width 64)")


def segmenter_image(model: str | os.PathLike, target: Any = "mps2-an386",
                    budget: McuBudget | None = TINY_BUDGET, name: str | None = None
                    ) -> McuSegmenter:
    """Compile ``model`` (float ONNX: cached integer bundle, :func:`compile_segmenter`; or an
    ``.edge`` bundle) and pack it for ``target``'s firmware; refused (one line) when an op has
    no firmware kernel (UnsupportedOpError), when it exceeds ``budget`` or the board
    (TargetError, needed vs available). ``name`` names the model in messages (default: the
    file's stem)."""
    from firmware_bridge.image import pack_image
    from sdk.backends.emulator import check_fits
    from sdk.compile import load_bundle
    from sdk.vision.segment import compile_segmenter
    from targets import load_target

    model = Path(model)
    bundle = model if model.suffix == ".edge" else compile_segmenter(model)
    graph = load_bundle(bundle).entry(None)
    t = load_target(target)
    if not t.is_mcu:
        raise TargetError(f"{t.name} is not a microcontroller target; the firmware image is "
                          "for an MCU board such as mps2-an386")
    packed = pack_image(graph)      # an op without a firmware kernel: UnsupportedOpError
    seg = McuSegmenter(name or model.stem, graph, packed, t.name, int8_weight_bytes(graph),
                       int(packed.arena_bytes), len(packed.data))
    seg.check_budget(budget)        # the budget first: a model over it is refused for that
    check_fits(graph, t)            # the board's memory map (RAM, flash, A/B slot)
    return seg


def quantize_input(seg: McuSegmenter, x: np.ndarray) -> np.ndarray:
    """Float model input(s) ``[..., 3, S, S]`` on the device input's integer grid (the host's
    QuantizeLinear, as the firmware session does it)."""
    from sdk.kernels.quantize import quantize_linear

    io = seg.packed.inputs[0]
    q = io.quantize or {}
    return quantize_linear(np.asarray(x, np.float32), q.get("scale"), q.get("zero_point", 0),
                           q.get("dtype", io.dtype), q.get("axis"))


def reference_logits(seg: McuSegmenter, xq: np.ndarray) -> np.ndarray:
    """The integer logits of one quantized input ``[1, 3, S, S]`` on the NumPy reference
    kernels (the specification the firmware must equal bit for bit)."""
    from sdk.runtime.session import Session

    sess = Session(seg.graph, fast=False, integer_io=True)
    return np.asarray(next(iter(sess.run({sess.input_names[0]: xq}).values())))


class QemuSegmenter:
    """``with QemuSegmenter(seg) as dev: logits, instructions = dev(xq)``: the image in the
    Cortex-M4 firmware under QEMU (mps2-an386, ``-icount``); each call runs one frame and
    returns the raw integer logits and the frame's instruction count.

    ``program=True`` (default) writes the image into the board's flash file before boot the
    way a debug probe would — through the host build of the same firmware (same flash layout,
    boot records and CRC check), because QEMU's emulated UART moves only ~10 KB/s (minutes
    for a 0.5 MB image on a loaded machine); ``False`` loads it over the emulated UART as
    ``edge flash`` would."""

    def __init__(self, seg: McuSegmenter, program: bool = True) -> None:
        self.seg = seg
        self.program = program

    def __enter__(self) -> Self:
        import tempfile

        from firmware_bridge.client import DeviceClient
        from firmware_bridge.qemu import PSRAM_BYTES, QemuFirmware
        from firmware_bridge.session import DeviceModel

        self._tmp = tempfile.TemporaryDirectory(prefix="edge-seg-mcu-")
        flash = Path(self._tmp.name) / "flash.bin"
        if self.program:
            from firmware_bridge.host_firmware import HostFirmware

            with HostFirmware(flash, flash_bytes=4 << 20) as fw:
                client = DeviceClient(fw.url, timeout=0.2)
                try:
                    client.load_image(self.seg.packed.data)
                finally:
                    client.close()
            with open(flash, "ab") as f:   # QEMU's PSRAM file: the flash is its first 4 MiB
                f.truncate(PSRAM_BYTES)
        self._qemu = QemuFirmware(flash)
        self._qemu.__enter__()
        try:
            self.client = DeviceClient(self._qemu.url, timeout=1.0)
            self.model = DeviceModel(self.client, self.seg.packed)  # loads only if not there
        except BaseException:
            self._qemu.__exit__(None, None, None)
            self._tmp.cleanup()
            raise
        return self

    def __call__(self, xq: np.ndarray) -> tuple[np.ndarray, float]:
        from firmware_bridge.qemu import ticks_to_instructions

        out = self.model.run({self.seg.packed.inputs[0].name: xq}, raw=True)
        return (out[self.seg.packed.outputs[0].name],
                ticks_to_instructions(self.model.last_ticks, self._qemu.icount_shift))

    def op_counts(self) -> list[tuple[str, str, float, int]]:
        """Per op of the last frame: (node, op, instructions, MACs)."""
        from firmware_bridge.qemu import ticks_to_instructions

        return [(c.name, c.op, ticks_to_instructions(c.ticks, self._qemu.icount_shift), c.macs)
                for c in self.model.profile()]

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.close()
        finally:
            self._qemu.__exit__(*exc)
            self._tmp.cleanup()
