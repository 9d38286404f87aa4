"""Host side of the device link: request/reply with sequence numbers, timeouts and retries.

The port is anything pyserial's ``serial_for_url`` opens: a real port (``/dev/ttyACM0``), a
pseudo-terminal (the host build of the firmware), ``socket://127.0.0.1:PORT`` (QEMU's TCP
serial, started with ``nodelay=on``) or ``loop://``.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import Self

import serial

from firmware_bridge.framing import FrameReader, decode_frame, encode_frame
from firmware_bridge.protocol import HEADER, REQUEST_FLAG, STATUS_HINTS, Command, HelloInfo, Status
from sdk.errors import DeviceError, TargetError


class DeviceStatusError(DeviceError):
    """The device answered with a non-OK status."""

    def __init__(self, command: Command, status: int) -> None:
        self.command, self.status = command, status
        try:
            name = Status(status).name
            hint = STATUS_HINTS.get(Status(status), "")
        except ValueError:
            name, hint = f"status {status}", ""
        super().__init__(f"device refused {command.name}: {name}" + (f" ({hint})" if hint else ""))


class DeviceClient:
    """One connection to a device running the edge firmware.

    ``timeout`` is the wait for one reply before the request is sent again (same sequence
    number, so the device replays its answer instead of running the command twice);
    ``retries`` bounds the number of sends.
    """

    def __init__(self, url: str | None = None, *, timeout: float = 0.3, retries: int = 12,
                 port: object | None = None, open_timeout: float = 5.0) -> None:
        if port is None:
            if not url:
                raise DeviceError("no serial port given: pass --port URL (a device path, "
                                  "socket://HOST:PORT or loop://)")
            port = _open_port(url, open_timeout)
        self.url = url or "<port>"
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self._seq = random.randrange(256)
        self._reader = FrameReader()
        self._info: HelloInfo | None = None
        self.sends = 0          # frames sent, retries included (link statistics)
        self.requests = 0

    # -- transport ------------------------------------------------------------------------
    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, command: Command, body: bytes = b"", timeout: float | None = None,
                patience: float | None = None) -> bytes:
        """Send one command and return the reply body; DeviceError after ``retries`` sends.

        ``timeout`` is the wait before resending; with ``patience`` the client keeps resending
        for that many seconds instead (a long INVOKE: repeats are answered from the device's
        reply cache, never run twice).
        """
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = encode_frame(HEADER.pack(0, seq, int(command), REQUEST_FLAG) + body)
        self.requests += 1
        try:
            return self._exchange(command, frame, seq, timeout, patience)
        except (OSError, serial.SerialException) as exc:
            raise DeviceError(f"serial link to {self.url} failed during {command.name}: "
                              f"{exc}; is the device still connected?") from None

    def _exchange(self, command: Command, frame: bytes, seq: int, timeout: float | None,
                  patience: float | None) -> bytes:
        give_up = time.monotonic() + patience if patience else None
        wait = self.timeout if timeout is None else timeout
        tries = 0
        while tries < self.retries or (give_up and time.monotonic() < give_up):
            tries += 1
            self.sends += 1
            self.port.write(frame)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                data = self.port.read(max(1, self.port.in_waiting))
                if not data:
                    continue
                for stuffed in self._reader.feed(data):
                    payload = decode_frame(stuffed)
                    if payload is None or len(payload) < HEADER.size:
                        continue
                    marker, rseq, rcmd, status = HEADER.unpack(payload[:HEADER.size])
                    if marker != 0 or rseq != seq or rcmd != int(command) or status == REQUEST_FLAG:
                        continue  # an echo, or a stale / duplicated reply to an earlier request
                    if status != Status.OK:
                        raise DeviceStatusError(command, status)
                    return payload[HEADER.size:]
        raise DeviceError(f"no valid reply to {command.name} from {self.url} after "
                          f"{tries} tries of {wait:.2f} s: is the firmware running "
                          "and the port right?")

    # -- commands -------------------------------------------------------------------------
    def hello(self) -> HelloInfo:
        self._info = HelloInfo.unpack(self.request(Command.HELLO))
        return self._info

    @property
    def info(self) -> HelloInfo:
        return self._info or self.hello()

    def _chunk(self) -> int:
        return self.info.max_body - 12

    def load_image(self, image: bytes, slot: int | None = None,
                   progress: Callable[[int, int], None] | None = None) -> int:
        """Write ``image`` into the inactive slot and switch to it. Returns the slot used.

        The device verifies the image's CRC32 before switching; an interrupted load leaves
        the previous model active.
        """
        info = self.hello()
        if len(image) > info.slot_size:
            raise TargetError(f"image needs {len(image)} bytes of flash; the device's slot "
                              f"holds {info.slot_size}: use a smaller model")
        if slot is None:
            slot = 1 - info.active_slot if info.active_slot >= 0 else 0
        crc = struct.unpack_from("<I", image, 8)[0]
        self.request(Command.LOAD_BEGIN, struct.pack("<BxxxII", slot, len(image), crc))
        step = self._chunk()
        for off in range(0, len(image), step):
            self.request(Command.LOAD_CHUNK,
                         struct.pack("<BxxxI", slot, off) + image[off:off + step])
            if progress:
                progress(min(off + step, len(image)), len(image))
        self.request(Command.LOAD_COMMIT, struct.pack("<B", slot), patience=10.0)
        self._info = None
        return slot

    def select(self, slot: int) -> None:
        self.request(Command.SELECT, struct.pack("<B", slot), patience=10.0)
        self._info = None

    def _write(self, command: Command, index: int, data: bytes) -> None:
        step = self._chunk()
        for off in range(0, max(len(data), 1), step):
            self.request(command, struct.pack("<BxxxI", index, off) + data[off:off + step])

    def _read(self, command: Command, index: int, nbytes: int) -> bytes:
        step = self._chunk()
        out = bytearray()
        for off in range(0, nbytes, step):
            n = min(step, nbytes - off)
            out += self.request(command, struct.pack("<BxxxIH", index, off, n))
        return bytes(out)

    def set_input(self, index: int, data: bytes) -> None:
        self._write(Command.SET_INPUT, index, data)

    def get_output(self, index: int, nbytes: int) -> bytes:
        return self._read(Command.GET_OUTPUT, index, nbytes)

    def set_state(self, index: int, data: bytes) -> None:
        self._write(Command.SET_STATE, index, data)

    def get_state(self, index: int, nbytes: int) -> bytes:
        return self._read(Command.GET_STATE, index, nbytes)

    def invoke(self, timeout: float = 30.0) -> int:
        """Run the model once; returns the device's tick count for the whole invocation.
        ``last_exit``: the early exit the firmware took (None: no exit check fired, or a
        firmware without early exit)."""
        body = self.request(Command.INVOKE, patience=timeout)
        ticks = struct.unpack_from("<I", body)[0]
        fired = struct.unpack_from("<i", body, 4)[0] if len(body) >= 8 else -1
        self.last_exit = fired if fired >= 0 else None
        return ticks

    def get_profile(self) -> list[int]:
        """Ticks per op of the last invocation, in op-list order."""
        ticks: list[int] = []
        while True:
            body = self.request(Command.GET_PROFILE, struct.pack("<I", len(ticks)))
            total = struct.unpack_from("<I", body)[0]
            ticks += struct.unpack_from(f"<{(len(body) - 4) // 4}I", body, 4)
            if len(ticks) >= total or len(body) <= 4:
                return ticks

    def reset(self) -> None:
        self.request(Command.RESET, patience=10.0)
        self._info = None


def _open_port(url: str, open_timeout: float) -> object:
    """Open a pyserial URL, retrying while an emulator's TCP port comes up."""
    deadline = time.monotonic() + open_timeout
    while True:
        try:
            return serial.serial_for_url(url, baudrate=115200, timeout=0.005)
        except (serial.SerialException, OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise DeviceError(f"cannot open serial port {url!r}: {exc}") from None
            time.sleep(0.05)
