"""A packed model on a device: load it (only when the device runs something else), feed
inputs, invoke, read outputs, per-op profile and streaming state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from firmware_bridge.client import DeviceClient
from firmware_bridge.image import BoundaryIO, PackedImage
from sdk.errors import InputError, TargetError
from sdk.kernels.quantize import dequantize_linear, quantize_linear


@dataclass
class OpCount:
    """Device count for one op: ticks of the device clock (instructions under QEMU -icount)."""

    name: str
    op: str
    ticks: int
    macs: int


class DeviceModel:
    """``DeviceModel(client, packed).run({"x": array})`` -> outputs keyed by graph name."""

    def __init__(self, client: DeviceClient, packed: PackedImage, load: bool = True) -> None:
        self.client = client
        self.packed = packed
        self.last_ticks = 0     # device ticks of the last INVOKE
        self.last_exit: int | None = None  # early exit the firmware took in the last INVOKE
        if load:
            self.load()

    def check_fit(self) -> None:
        """Refuse, before any byte of the model is sent, a model the device cannot hold. The
        decision and its suggested fix are the SDK's one fit decision
        (:func:`sdk.backends.emulator.decide_fit`, shared with ``edge compile --target`` and
        ``edge profile``), applied to what the device itself reports: its A/B slot size and
        its arena."""
        from sdk.backends.emulator import FitReport, decide_fit

        info = self.client.hello()
        report = FitReport(info.board, self.packed.arena_bytes, info.arena_size,
                           flash_needed_bytes=0, flash_bytes=info.slot_size,
                           image_bytes=len(self.packed.data), slot_bytes=info.slot_size)
        n16, n8 = self.packed.activation_widths()
        decide_fit(report, n16, n8)
        if not report.fits:
            raise TargetError(report.message())

    def load(self, force: bool = False) -> None:
        """Load the image unless the device's active slot already holds it (same CRC32)."""
        self.check_fit()
        info = self.client.info
        active = info.active_slot
        if (not force and active >= 0 and info.model_ready
                and info.slot_crc[active] == self.packed.crc32):
            return
        self.client.load_image(self.packed.data)

    def _encode(self, io: BoundaryIO, value: np.ndarray) -> bytes:
        a = np.asarray(value)
        if tuple(a.shape) != io.shape:
            if a.size == int(np.prod(io.shape)) and a.ndim + 1 == len(io.shape):
                a = a.reshape(io.shape)
            else:
                raise InputError(f"input {io.name!r} has shape {a.shape}; the model expects "
                                 f"{io.shape}")
        if np.issubdtype(a.dtype, np.floating):
            if io.quantize is None:
                raise InputError(f"input {io.name!r} is float but the model takes {io.dtype}: "
                                 "quantize it first")
            q = io.quantize
            a = quantize_linear(a, q.get("scale"), q.get("zero_point", 0),
                                q.get("dtype", io.dtype), q.get("axis"))
        if str(a.dtype) != io.dtype:
            raise InputError(f"input {io.name!r} has dtype {a.dtype}; the model expects "
                             f"{io.dtype} (or float32 to be quantized)")
        return np.ascontiguousarray(a).tobytes()

    def run(self, feeds: Mapping[str, np.ndarray], raw: bool = False) -> dict[str, np.ndarray]:
        """One invocation. ``raw=True`` returns the device's integers without dequantizing."""
        missing = [io.name for io in self.packed.inputs if io.name not in feeds]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model takes "
                             f"{[io.name for io in self.packed.inputs]}")
        for k, io in enumerate(self.packed.inputs):
            self.client.set_input(k, self._encode(io, feeds[io.name]))
        self.last_ticks = self.client.invoke()
        self.last_exit = getattr(self.client, "last_exit", None)  # early exit taken, if any
        out: dict[str, np.ndarray] = {}
        for k, io in enumerate(self.packed.outputs):
            q = np.frombuffer(self.client.get_output(k, io.nbytes), dtype=io.dtype)
            q = q.reshape(io.shape).copy()
            if io.quantize is not None and not raw:
                a = io.quantize
                out[io.name] = dequantize_linear(q, a.get("scale"), a.get("zero_point", 0),
                                                 a.get("axis"))
            else:
                out[io.name] = q
        return out

    def profile(self) -> list[OpCount]:
        """Per-op device counts of the last invocation."""
        ticks = self.client.get_profile()
        return [OpCount(n, op, t, m) for n, op, t, m in
                zip(self.packed.op_names, self.packed.op_types, ticks, self.packed.macs)]

    def get_state(self) -> list[np.ndarray]:
        return [np.frombuffer(self.client.get_state(k, s.nbytes), s.dtype).reshape(s.shape).copy()
                for k, (s, _) in enumerate(self.packed.state)]

    def set_state(self, values: list[np.ndarray]) -> None:
        for k, ((s, _), v) in enumerate(zip(self.packed.state, values)):
            self.client.set_state(k, np.ascontiguousarray(v, dtype=s.dtype).tobytes())

    def reset(self) -> None:
        self.client.reset()
