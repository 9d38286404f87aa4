"""Commands, status codes and reply layouts of the binary link (twin of firmware/src/fw.h).

Payload of every frame, both directions: ``0x00 marker, seq u8, cmd u8, status u8, body``
(requests carry status ``REQUEST_FLAG``). Bodies are little-endian structs, listed next to each command.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


class Command(IntEnum):
    HELLO = 0x01          # -> HelloInfo (64 bytes)
    LOAD_BEGIN = 0x10     # <BxxxII slot, image size, image crc32
    LOAD_CHUNK = 0x11     # <BxxxI slot, offset; then data
    LOAD_COMMIT = 0x12    # <B slot  (device verifies CRC32, then switches the boot record)
    SELECT = 0x13         # <B slot  (verify, then switch)
    SET_INPUT = 0x20      # <BxxxI index, offset; then data
    INVOKE = 0x21         # -> <I total ticks, <i early exit taken (-1: none)
    GET_OUTPUT = 0x22     # <BxxxIH index, offset, length -> data
    GET_PROFILE = 0x23    # <I first op -> <I n_ops, then u32 ticks per op
    GET_STATE = 0x24      # as GET_OUTPUT, index = state pair
    SET_STATE = 0x25      # as SET_INPUT, index = state pair
    RESET = 0x30          # reboot the model from flash, state to its zero points


class Status(IntEnum):
    OK = 0
    BAD_CMD = 1
    BAD_ARG = 2
    NO_MODEL = 3
    CRC_MISMATCH = 4
    TOO_BIG = 5
    BAD_IMAGE = 6
    SLOT_ACTIVE = 7
    NOT_LOADING = 8
    UNSUPPORTED_OP = 9
    INVOKE_FAILED = 10


STATUS_HINTS = {
    Status.BAD_CMD: "the firmware does not know this command: update the firmware",
    Status.BAD_ARG: "a command argument is out of range (index, offset or length)",
    Status.NO_MODEL: "no model is loaded: run `edge flash MODEL.edge --port URL` first",
    Status.CRC_MISMATCH: "the image in flash does not match its CRC32; the previous model "
                         "stays active: load it again",
    Status.TOO_BIG: "the image or its arena does not fit the device",
    Status.BAD_IMAGE: "the image is malformed or from another format version: re-pack it",
    Status.SLOT_ACTIVE: "that slot holds the running model; load into the other slot",
    Status.NOT_LOADING: "LOAD_CHUNK/COMMIT without a matching LOAD_BEGIN",
    Status.UNSUPPORTED_OP: "the image uses an operator this firmware lacks: update it",
    Status.INVOKE_FAILED: "a kernel rejected its parameters during INVOKE",
}

HEADER = struct.Struct("<BBBB")  # marker, seq, cmd, status
REQUEST_FLAG = 0x80              # the status byte of every request
HELLO = struct.Struct("<HHIIIIbBBBIIIIII16s")


@dataclass(frozen=True)
class HelloInfo:
    """What the device says about itself."""

    firmware_version: str
    max_body: int
    slot_size: int
    arena_size: int
    ram_size: int
    tick_hz: int
    active_slot: int        # -1: no model
    slot_valid: tuple[bool, bool]
    model_ready: bool
    slot_crc: tuple[int, int]
    n_inputs: int
    n_outputs: int
    n_state: int
    n_ops: int
    board: str

    @classmethod
    def unpack(cls, body: bytes) -> HelloInfo:
        (ver, max_body, slot, arena, ram, hz, active, v0, v1, ready, c0, c1, ni, no, ns, nops,
         board) = HELLO.unpack(body[:HELLO.size])
        return cls(f"{ver >> 8}.{ver & 0xFF}", max_body, slot, arena, ram, hz, active,
                   (bool(v0), bool(v1)), bool(ready), (c0, c1), ni, no, ns, nops,
                   board.rstrip(b"\0").decode("ascii", "replace"))
