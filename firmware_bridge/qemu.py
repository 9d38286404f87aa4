"""Run the Cortex-M4 build of the firmware in QEMU (``-M mps2-an386``) behind ``socket://``.

* Serial: UART0 on a TCP server with ``nodelay=on`` (without it every reply waits ~40 ms for
  Nagle's algorithm) and ``wait=on``: the guest starts when the client connects, so nothing
  the firmware prints at boot is lost and the first connection is the client's.
* Instruction clock: ``-icount shift=N`` makes the emulated clock advance 2^N ns per
  instruction, so the firmware's 25 MHz TIMER0 ticks become a deterministic instruction count:
  ``instructions = ticks · 40 / 2^N`` (N ≥ 6 resolves single instructions).
* Flash persistence: the board's 16 MiB PSRAM at 0x21000000 is the machine RAM in QEMU; it is
  backed by a file (``memory-backend-file``, ``share=on``), so every byte the firmware writes
  to flash is in the file at once and survives killing QEMU — a restart boots whatever the
  boot record points to, like a power cycle of a real board.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from firmware_bridge.build import build_firmware
from firmware_bridge.device_process import DeviceProcess
from sdk.errors import DeviceError

MACHINE = "mps2-an386"
PSRAM_BYTES = 16 << 20
DEFAULT_ICOUNT_SHIFT = 6
SYSCLK_HZ = 25_000_000


def qemu_missing() -> str | None:
    """Why the emulator cannot run here, or None."""
    if shutil.which("qemu-system-arm") is None:
        return "qemu-system-arm is not installed (tools/bootstrap.sh installs it)"
    return None


def ticks_to_instructions(ticks: int, icount_shift: int = DEFAULT_ICOUNT_SHIFT) -> float:
    """Timer ticks under ``-icount shift=N`` -> instructions (1 ns = 1/40 of a 25 MHz tick)."""
    return ticks * (1e9 / SYSCLK_HZ) / (1 << icount_shift)


REGISTRY = Path(tempfile.gettempdir()) / "edge-emulators.json"


def _registry() -> dict[str, dict]:
    try:
        return json.loads(REGISTRY.read_text())
    except (OSError, ValueError):
        return {}


def record_emulator(url: str, icount_shift: int, pid: int) -> None:
    """Remember that ``url`` is an emulated board (so profiles say "instructions")."""
    reg = {u: e for u, e in _registry().items() if _alive(e.get("pid", 0))}
    reg[url] = {"icount_shift": icount_shift, "pid": pid}
    REGISTRY.write_text(json.dumps(reg))


def emulator_icount_shift(url: str) -> int | None:
    """The -icount shift of a running emulator behind ``url``, or None for a real device."""
    entry = _registry().get(url)
    if entry and _alive(entry.get("pid", 0)):
        return int(entry["icount_shift"])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return pid > 0
    except OSError:
        return False


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on ``port`` (without connecting: QEMU serves one client,
    and the first connection must be the real one)."""
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        time.sleep(0.3)
        return True
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


def _with_parent_death(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so the child gets SIGKILL when this process dies (util-linux setpriv;
    the parent-death signal survives exec). Without setpriv the command runs as is."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *cmd] if setpriv else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuFirmware(DeviceProcess):
    """``with QemuFirmware() as q: DeviceClient(q.url)``; ``kill()`` + ``start()`` = power cycle.

    Set ``EDGE_QEMU_LOG=FILE`` to log guest errors and exceptions.
    """

    stop_timeout_s = 3.0

    def __init__(self, flash_path: str | os.PathLike | None = None,
                 icount_shift: int = DEFAULT_ICOUNT_SHIFT, port: int | None = None,
                 detached: bool = False) -> None:
        why = qemu_missing()
        if why:
            raise DeviceError(f"cannot emulate {MACHINE}: {why}")
        self.elf = build_firmware("m4")
        super().__init__(flash_path, "edge-qemu-")
        self.icount_shift = icount_shift
        self.port = port
        self.detached = detached

    def command(self, port: int) -> list[str]:
        return ["qemu-system-arm", "-M", MACHINE, "-m", f"{PSRAM_BYTES >> 20}M",
                "-display", "none", "-monitor", "none", "-nodefaults",
                "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on",
                "-icount", f"shift={self.icount_shift}",
                "-object", (f"memory-backend-file,id=flash,size={PSRAM_BYTES},"
                            f"mem-path={self.flash_path},share=on"),
                "-machine", "memory-backend=flash",
                "-kernel", str(self.elf)] + (
                    ["-d", "guest_errors,int", "-D", os.environ["EDGE_QEMU_LOG"]]
                    if os.environ.get("EDGE_QEMU_LOG") else [])

    def start(self) -> str:
        """Start (or restart) QEMU; returns the ``socket://`` URL of the firmware's UART."""
        self.stop()
        if not self.flash_path.exists() or self.flash_path.stat().st_size != PSRAM_BYTES:
            with open(self.flash_path, "ab") as f:
                f.truncate(PSRAM_BYTES)
        port = self.port or _free_port()
        self.log_path = self.flash_path.with_suffix(".qemu.log")
        with open(self.log_path, "w") as log:  # a file, not a pipe: QEMU may outlive us
            if self.detached:   # `edge emulate --print-url`: keeps running after we exit
                self.proc = subprocess.Popen(self.command(port), stdout=subprocess.DEVNULL,
                                             stderr=log, start_new_session=True)
            else:               # dies with this process, even if it is killed
                self.proc = subprocess.Popen(_with_parent_death(self.command(port)),
                                             stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeviceError(f"QEMU exited: {self.log_path.read_text().strip()[-300:]}")
            if _listening(port):
                break
            time.sleep(0.02)
        else:
            self.kill()
            raise DeviceError("QEMU did not open its serial port within 10 s")
        self.url = f"socket://127.0.0.1:{port}"
        record_emulator(self.url, self.icount_shift, self.proc.pid)
        return self.url

