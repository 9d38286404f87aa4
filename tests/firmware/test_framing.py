"""COBS + CRC32 framing and the client's retry/timeout behaviour, in process."""

from __future__ import annotations

import zlib

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.client import DeviceClient
from firmware_bridge.framing import (
    FrameReader,
    cobs_decode,
    cobs_encode,
    crc32,
    decode_frame,
    encode_frame,
)
from firmware_bridge.protocol import Command
from sdk.errors import DeviceError


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=1200))
def test_cobs_round_trip_has_no_zero(data):
    stuffed = cobs_encode(data)
    assert 0 not in stuffed
    assert cobs_decode(stuffed) == data
    assert len(stuffed) <= len(data) + len(data) // 254 + 1


def test_cobs_boundaries():
    for n in (253, 254, 255, 508, 509):
        for data in (bytes(range(1, 256)) * 3)[:n], bytes(n):
            assert cobs_decode(cobs_encode(data)) == data


def test_crc32_is_ieee():
    assert crc32(b"123456789") == 0xCBF43926 == zlib.crc32(b"123456789")


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_single_bit_flip_is_detected(payload, data):
    frame = bytearray(encode_frame(payload))
    i = data.draw(st.integers(1, len(frame) - 2))       # inside the delimiters
    frame[i] ^= 1 << data.draw(st.integers(0, 7))
    reader = FrameReader()
    decoded = [decode_frame(f) for f in reader.feed(bytes(frame))]
    assert payload not in decoded  # CRC32 catches every single-bit error


def test_reader_resynchronises_after_garbage():
    good = encode_frame(b"\x00hello")
    stream = b"\x13\x37garbage" + good + b"\xff\xfe" + good
    frames = [decode_frame(f) for f in FrameReader().feed(stream)]
    assert frames.count(b"\x00hello") == 2


def test_loop_url_echo_is_not_a_reply():
    """loop:// echoes the request; the client must not take its own frame for the answer."""
    client = DeviceClient("loop://", timeout=0.05, retries=2)
    with pytest.raises(DeviceError, match="no valid reply to HELLO"):
        client.request(Command.HELLO)
    client.close()


def test_unopenable_port_is_a_clear_error():
    with pytest.raises(DeviceError, match="cannot open serial port"):
        DeviceClient("/dev/does-not-exist-edge", open_timeout=0.1)


def test_serial_for_url_handles_socket_scheme():
    # socket:// is what QEMU's TCP serial needs; pyserial must know the scheme
    with pytest.raises((serial.SerialException, OSError)):
        serial.serial_for_url("socket://127.0.0.1:1", timeout=0.1)
