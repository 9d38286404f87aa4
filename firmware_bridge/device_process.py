"""Lifecycle shared by the emulated boards (host-build process, QEMU): a child process with
a file-backed flash, where ``kill()`` is a power cut and ``start()`` after it a power-on."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Self


class DeviceProcess:
    """Base of :class:`HostFirmware` and :class:`QemuFirmware`; subclasses implement
    ``start() -> url``."""

    stop_timeout_s = 2.0

    def __init__(self, flash_path: str | os.PathLike | None, tmp_prefix: str) -> None:
        if flash_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=tmp_prefix)
            flash_path = Path(self._tmp.name) / "flash.bin"
        self.flash_path = Path(flash_path)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL: the device gets no chance to finish writing; the flash file keeps what
        was written before (a power cut)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
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
