"""Fault injection on a serial link: corrupt, drop and duplicate whole frames.

``FaultyLink`` wraps a pyserial-like port. Host-to-device frames are faulted per ``write``
call (the client writes one frame per call); device-to-host bytes are split at the zero
delimiter and faulted per frame. Used by the robustness tests and ``tools/bench_mcu.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class FaultStats:
    corrupted: int = 0
    dropped: int = 0
    duplicated: int = 0
    frames: int = 0


@dataclass
class FaultyLink:
    """A port whose frames are corrupted / dropped / duplicated with the given probabilities."""

    port: object
    corrupt: float = 0.01
    drop: float = 0.01
    duplicate: float = 0.01
    seed: int = 0
    stats: FaultStats = field(default_factory=FaultStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._rx_partial = bytearray()
        self._rx_ready = bytearray()

    def _fault(self, frame: bytes) -> bytes:
        self.stats.frames += 1
        r = self._rng.random()
        if r < self.drop:
            self.stats.dropped += 1
            return b""
        if r < self.drop + self.corrupt:
            self.stats.corrupted += 1
            b = bytearray(frame)
            i = self._rng.randrange(len(b))
            b[i] ^= 1 << self._rng.randrange(8)
            return bytes(b)
        if r < self.drop + self.corrupt + self.duplicate:
            self.stats.duplicated += 1
            return frame + frame
        return frame

    # -- the pyserial surface the client uses --------------------------------------------
    def write(self, data: bytes) -> int:
        self.port.write(self._fault(bytes(data)))
        return len(data)

    def flush(self) -> None:
        self.port.flush()

    def _pump(self) -> None:
        data = self.port.read(max(1, self.port.in_waiting))
        for byte in data:
            self._rx_partial.append(byte)
            if byte == 0:
                self._rx_ready += self._fault(bytes(self._rx_partial))
                self._rx_partial.clear()

    @property
    def in_waiting(self) -> int:
        return len(self._rx_ready)

    def read(self, n: int = 1) -> bytes:
        if not self._rx_ready:
            self._pump()
        out = bytes(self._rx_ready[:n])
        del self._rx_ready[:n]
        return out

    def reset_input_buffer(self) -> None:
        self.port.reset_input_buffer()
        self._rx_partial.clear()
        self._rx_ready.clear()

    def close(self) -> None:
        self.port.close()

    @property
    def timeout(self) -> float | None:
        return self.port.timeout
