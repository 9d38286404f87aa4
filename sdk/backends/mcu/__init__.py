"""The microcontroller backend: compile -> flash image, run -> serial calls, profile -> the
device's per-op counts.

The device is anything running the edge firmware behind a pyserial URL: a real board, the
Cortex-M4 build in QEMU (``edge emulate`` prints its ``socket://`` URL) or the host build on a
pty. Profiles are in the device's ticks, labelled by :func:`count_unit` from the board the
device names in its HELLO: under QEMU with ``-icount`` they are converted to instruction counts
(QEMU does not model cycles), on a real board whose tick counter runs at the core clock they
are cycles, on the host build they are wall-clock time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from firmware_bridge.client import DeviceClient
from firmware_bridge.image import PackedImage, pack_image
from firmware_bridge.op_encoders import ENCODERS
from firmware_bridge.qemu import emulator_icount_shift, ticks_to_instructions
from firmware_bridge.session import DeviceModel
from sdk.backends.base import Backend, Executable, Profile
from sdk.errors import DeviceError, TargetError
from sdk.graph.ir import Graph, Node

_CLIENTS: dict[str, DeviceClient] = {}

#: boards (HELLO ``board``) whose firmware tick counter runs at the core clock, so that on
#: real hardware one tick is one CPU cycle (mps2-an386: TIMER0 on the 25 MHz system clock)
CORE_CLOCK_TICKS = {"mps2-an386": 25_000_000}


def count_unit(board: str, tick_hz: int, port: str,
               icount_shift: int | None) -> tuple[str, str]:
    """``(key, label)`` of a device's per-op counts: ``key`` is the row field
    (``instructions``, ``cycles`` or ``seconds``), ``label`` says what they are.

    * an emulator started by ``edge emulate`` (``icount_shift`` known) and not the host
      build: instructions = ticks · (10⁹ / tick_hz) / 2^shift — QEMU instruction counts;
    * ``board == "host"``: the host build's ticks are CLOCK_MONOTONIC nanoseconds;
    * a board of :data:`CORE_CLOCK_TICKS` at that rate: ticks are cycles;
    * anything else: seconds = ticks / tick_hz."""
    if icount_shift is not None and board != "host":
        return "instructions", (f"QEMU instructions (instruction counts under -icount "
                                f"shift={icount_shift}, not cycles: QEMU does not model them)")
    if board == "host":
        return "seconds", "host-build wall-clock time (not cycles, not instructions)"
    if CORE_CLOCK_TICKS.get(board) == tick_hz:
        note = (" — if this socket is a QEMU not started by `edge emulate`, they are emulated "
                "time, not cycles" if port.startswith("socket://") else "")
        return "cycles", f"cycles (timer at the {tick_hz / 1e6:g} MHz core clock){note}"
    return "seconds", f"device time (timer ticks at {tick_hz} Hz; not cycles)"


def connect(port: str, timeout: float | None = None) -> DeviceClient:
    """One shared client per port (a serial port can be opened once)."""
    if port not in _CLIENTS:
        if timeout is None:
            timeout = 1.0 if port.startswith("socket://") else 0.3
        _CLIENTS[port] = DeviceClient(port, timeout=timeout)
    return _CLIENTS[port]


def require_port(port: str | None) -> str:
    """The device URL, or a one-line error saying how to get one (for the CLI commands)."""
    if not port:
        raise DeviceError("--backend mcu needs the device's serial URL: pass --port URL (a "
                          "board's /dev/tty*, or the socket:// URL that `edge emulate` prints)")
    return port


def check_target_fit(packed: PackedImage, target: Any) -> None:
    """Refuse, on the host and before any device contact, a model the target cannot hold
    (the one fit decision, :func:`sdk.backends.emulator.decide_fit`: image per A/B slot as
    the firmware sizes it, arena vs RAM)."""
    memory = getattr(target, "memory", None)
    if memory is None:
        return
    from firmware_bridge.image import slot_size_for_flash
    from sdk.backends.emulator import FitReport, decide_fit

    fit = decide_fit(FitReport(getattr(target, "name", "the target"), packed.arena_bytes,
                               memory.ram_bytes, 0, memory.flash_bytes,
                               image_bytes=len(packed.data),
                               slot_bytes=slot_size_for_flash(memory.flash_bytes)))
    if not fit.fits:
        raise TargetError(fit.message())


class McuBackend(Backend):
    """``get_backend("mcu", port="socket://127.0.0.1:PORT")``, or ``McuBackend(client=c)`` to
    share an open :class:`DeviceClient` (QEMU's serial port takes one connection at a time)."""

    name = "mcu"

    def __init__(self, port: str | None = None, timeout: float | None = None,
                 client: DeviceClient | None = None) -> None:
        self.port = port or (client.url if client else None)
        self.timeout = timeout
        if client is not None:
            _CLIENTS[self.port] = client

    def __str__(self) -> str:
        return f"mcu ({self.port})"

    def available(self) -> tuple[bool, str]:
        if not self.port:
            return False, "no device port: pass --port URL (see `edge emulate`)"
        return True, ""

    def supports(self, node: Node, target: Any, graph: Graph) -> tuple[bool, str]:
        if node.op in ENCODERS:
            return True, ""
        return False, f"the MCU firmware has no kernel for {node.op!r}"

    def compile(self, subgraph: Graph, target: Any) -> McuExecutable:
        # the Executable interface feeds state inputs and returns state outputs (the caller,
        # e.g. a StreamingSession, owns the state), so nothing is carried on the device here;
        # DeviceModel with pack_image(graph) keeps step-graph state on the device instead
        packed = pack_image(subgraph, state=[])
        check_target_fit(packed, target)
        if not self.port:
            raise DeviceError("the mcu backend needs a device: pass --port URL")
        return McuExecutable(subgraph, packed, connect(self.port, self.timeout), self.port)


class McuExecutable(Executable):
    backend = "mcu"

    def __init__(self, graph: Graph, packed: PackedImage, client: DeviceClient,
                 port: str) -> None:
        self.graph = graph
        self.packed = packed
        self.port = port
        self.model = DeviceModel(client, packed)      # loads only if not already active
        self.icount_shift = emulator_icount_shift(port)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.model.load()  # another segment or tool may have loaded a different model
        named = {}
        for io in self.packed.inputs:
            key = io.name if io.name in feeds else io.device_tensor
            named[io.name] = feeds[key]
        out = self.model.run(named)
        return {name: out[name] for name in self.graph.outputs if name in out}

    def count_unit(self) -> tuple[str, str]:
        """``(key, label)`` of this device's counts (see :func:`count_unit`)."""
        info = self.model.client.info
        return count_unit(info.board, info.tick_hz, self.port, self.icount_shift)

    def _convert(self, ticks: float) -> float:
        key = self.count_unit()[0]
        if key == "instructions":
            return ticks_to_instructions(ticks, self.icount_shift)
        if key == "cycles":
            return float(ticks)
        return ticks / self.model.client.info.tick_hz

    def op_counts(self) -> list[dict[str, Any]]:
        """Per-op counts of the last run: ``ticks`` and, under the key of
        :meth:`count_unit`, instructions, cycles or seconds."""
        key = self.count_unit()[0]
        return [{"name": c.name, "op": c.op, "ticks": c.ticks, "macs": c.macs,
                 key: self._convert(c.ticks)} for c in self.model.profile()]

    def profile(self, feeds: Mapping[str, np.ndarray], repeats: int = 10,
                warmup: int = 1) -> Profile:
        for _ in range(warmup):
            self.run(feeds)
        times, device = [], []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            self.run(feeds)
            times.append(time.perf_counter() - t0)
            device.append(self.model.last_ticks)
        key, unit = self.count_unit()
        detail = {"device": self.model.client.info.board, "port": self.port, "unit": unit,
                  "key": key, "per_op": self.op_counts(),
                  "invoke_ticks_median": float(np.median(device)),
                  f"invoke_{key}_median": self._convert(float(np.median(device)))}
        return Profile(self.backend, times, detail)


def profile_on_device(model: Graph, port: str, runs: int = 3, seed: int = 0,
                      target: Any = None) -> dict[str, Any]:
    """Per-op device counts of ``model`` (a graph or bundle graph) on the device at ``port``:
    the integer part is loaded (if not already active; refused on the host first if it does
    not fit ``target``, when given) and run ``runs`` times on random integer inputs; returns
    ``{"unit", "key", "device", "port", "ops": [...], "total", "invoke", ...}`` (``total``:
    the ops' sum; ``invoke``: the device's count for the whole INVOKE) and is what
    ``edge profile MODEL.edge --backend mcu --port URL`` prints (:func:`render_profile`)."""
    from firmware_bridge.image import device_subgraph

    sub = device_subgraph(model)[0]
    exe = McuBackend(port=port).compile(sub, target)
    rng = np.random.default_rng(seed)
    feeds = {}
    for io in exe.packed.inputs:
        info = np.iinfo(io.dtype)
        feeds[io.name] = rng.integers(info.min, info.max + 1, io.shape).astype(io.dtype)
    prof = exe.profile(feeds, repeats=runs, warmup=1)
    ops = prof.detail["per_op"]
    key = prof.detail["key"]
    return {"unit": prof.detail["unit"], "device": prof.detail["device"], "port": port,
            "model": model.name, "ops": ops, "total": sum(r[key] for r in ops), "key": key,
            "invoke": prof.detail[f"invoke_{key}_median"], "runs": max(1, runs),
            "firmware": exe.model.client.info.firmware_version,
            "round_trip_median_s": prof.median_s}


def render_profile(report: dict[str, Any]) -> str:
    """A per-op table of :func:`profile_on_device`'s report."""
    key = report["key"]
    counts = key != "seconds"          # instructions / cycles: whole numbers per MAC
    lines = [f"device {report['device']}: per-op {report['unit']}",
             (f"{'op':<28}{'type':<18}{'MACs':>10}{key if counts else 'time':>14}"
              f"{'per MAC' if counts else '':>9}")]
    for r in report["ops"]:
        per = f"{r[key] / r['macs']:.3f}" if r["macs"] and counts else ""
        val = f"{r[key]:.0f}" if counts else f"{r[key] * 1e6:.1f} us"
        lines.append(f"{r['name'][:27]:<28}{r['op']:<18}{r['macs']:>10}{val:>14}{per:>9}")
    total = f"{report['total']:.0f}" if counts else f"{report['total'] * 1e3:.3f} ms"
    lines.append(f"{'total':<56}{total:>14}")
    if "invoke" in report:
        whole = f"{report['invoke']:.0f}" if counts else f"{report['invoke'] * 1e3:.3f} ms"
        lines.append(f"{'whole INVOKE (ops + interpreter)':<56}{whole:>14}")
    lines.append(f"host round trip per inference (link included): "
                 f"{report['round_trip_median_s'] * 1e3:.1f} ms median")
    return "\n".join(lines)
