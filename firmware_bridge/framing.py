"""Frames on a byte stream: COBS stuffing and a CRC32 trailer.

On the wire a frame is ``0x00, COBS(payload + crc32_le(payload)), 0x00``. COBS removes every
zero byte from the stuffed data, so 0x00 marks frame boundaries and a receiver resynchronises
after any corruption at the next zero. Payloads start with a 0x00 marker byte, which makes the
first stuffed byte 0x01; the firmware uses this to tell binary frames from MLPerf Tiny text
commands on the same link.
"""

from __future__ import annotations

import struct
import zlib

DELIMITER = b"\x00"


def crc32(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as ``zlib.crc32``."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result has no zero byte.

    Each block is a code byte ``c`` followed by ``c − 1`` non-zero data bytes; it stands for
    those bytes plus one zero, except when ``c = 0xFF`` (254 bytes, no zero) or at the end.
    """
    out = bytearray(b"\x00")
    code_at, code = 0, 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; raises ValueError on a malformed block."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside a COBS block")
        end = i + code
        if end > n:
            raise ValueError("COBS block runs past the end of the frame")
        out += data[i + 1:end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    """``0x00 + COBS(payload + crc32) + 0x00``."""
    body = payload + struct.pack("<I", crc32(payload))
    return DELIMITER + cobs_encode(body) + DELIMITER


def decode_frame(stuffed: bytes) -> bytes | None:
    """Payload of one stuffed frame (without delimiters), or None when corrupted."""
    try:
        body = cobs_decode(stuffed)
    except ValueError:
        return None
    if len(body) < 5:
        return None
    payload, (crc,) = body[:-4], struct.unpack("<I", body[-4:])
    return payload if crc32(payload) == crc else None


class FrameReader:
    """Splits a byte stream into stuffed frames at zero bytes."""

    def __init__(self, max_frame: int = 4096) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for part in data.split(DELIMITER)[:-1] if DELIMITER in data else []:
            self._buf += part
            if self._buf:
                frames.append(bytes(self._buf))
            self._buf.clear()
        tail = data.rsplit(DELIMITER, 1)[-1] if DELIMITER in data else data
        self._buf += tail
        if len(self._buf) > self._max:
            self._buf.clear()
        return frames
