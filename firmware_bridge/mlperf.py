"""The MLPerf Tiny benchmark runner's text protocol, as the firmware speaks it.

Commands end with ``%``; the device answers ``m-...`` lines and ends every command with
``m-ready`` (errors are ``e-[...]`` lines). :class:`MlperfLink` is a small host for it, used by
the tests and handy to check a board by hand; the real runner drives the same commands.
"""

from __future__ import annotations

import time

import numpy as np

from sdk.errors import DeviceError


class MlperfLink:
    """Send text commands on an open pyserial port and collect the reply lines."""

    def __init__(self, port: object, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._buf = b""

    def command(self, text: str) -> list[str]:
        """Send ``text%`` and return the reply lines up to (not including) ``m-ready``."""
        self.port.write(text.encode("ascii") + b"%")
        lines: list[str] = []
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._buf += self.port.read(max(1, self.port.in_waiting))
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.strip(b"\r\x00").decode("ascii", "replace")
                # binary frames (if any) contain no newline-terminated m- lines; skip noise
                if line == "m-ready":
                    return lines
                if line.startswith(("m-", "e-")):
                    lines.append(line)
        raise DeviceError(f"no m-ready after {text!r} within {self.timeout} s")

    def load_input(self, data: bytes, chunk: int = 64) -> list[str]:
        """``db load N`` then ``db <hex>`` in chunks, as the runner does."""
        out = self.command(f"db load {len(data)}")
        for off in range(0, len(data), chunk):
            out += self.command("db " + data[off:off + chunk].hex())
        return out

    def infer(self, runs: int = 1, warmup: int = 0) -> np.ndarray:
        """``infer N W`` and the parsed integer results of output 0."""
        lines = self.command(f"infer {runs} {warmup}")
        errors = [line for line in lines if line.startswith("e-")]
        if errors:
            raise DeviceError(f"MLPerf infer failed: {errors[0]}")
        results = [line for line in lines if line.startswith("m-results-[")]
        if not results:
            raise DeviceError(f"MLPerf infer gave no results line: {lines}")
        body = results[-1][len("m-results-["):-1]
        return np.array([int(v) for v in body.split(",") if v], dtype=np.int64)
