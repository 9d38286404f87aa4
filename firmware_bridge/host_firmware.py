"""The host build of the firmware as a child process on a pseudo-terminal.

Its flash is a file, so killing the process and starting it again is a power cycle: whatever
was committed to flash before the kill is what boots.
"""

from __future__ import annotations

import os
import subprocess

from firmware_bridge.build import build_firmware
from firmware_bridge.device_process import DeviceProcess
from sdk.errors import DeviceError


class HostFirmware(DeviceProcess):
    """``with HostFirmware() as fw: DeviceClient(fw.url)``."""

    def __init__(self, flash_path: str | os.PathLike | None = None,
                 flash_bytes: int = 4 << 20, arena_bytes: int = 1 << 20) -> None:
        self.binary = build_firmware("host")
        super().__init__(flash_path, "edge-fw-")
        self.flash_bytes = flash_bytes
        self.arena_bytes = arena_bytes

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
