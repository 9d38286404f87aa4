"""The host build of the firmware as a child process on a pseudo-terminal.

Its flash is a file, so killing the process and starting it again is a power cycle: whatever
was committed to flash before the kill is what boots.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from firmware_bridge.build import build_firmware
from sdk.errors import DeviceError


class HostFirmware:
    """``with HostFirmware() as fw: DeviceClient(fw.url)``."""

    def __init__(self, flash_path: str | os.PathLike | None = None,
                 flash_bytes: int = 4 << 20, arena_bytes: int = 1 << 20) -> None:
        self.binary = build_firmware("host")
        if flash_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edge-fw-")
            flash_path = Path(self._tmp.name) / "flash.bin"
        self.flash_path = Path(flash_path)
        self.flash_bytes = flash_bytes
        self.arena_bytes = arena_bytes
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> str:
        """Start (or restart) the firmware; returns the pty path to open."""
        self.stop()
        self.proc = subprocess.Popen([str(self.binary), str(self.flash_path),
                                      str(self.flash_bytes), str(self.arena_bytes)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("pty: "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise DeviceError(f"host firmware did not start: {line or err}")
        self.url = line[5:]
        return self.url

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish writing (a power cut)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc:
            for f in (self.proc.stdout, self.proc.stderr):
                if f:
                    f.close()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if getattr(self, "_tmp", None):
            self._tmp.cleanup()
