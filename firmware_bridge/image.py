"""The flash image: an integer graph packed for the firmware's interpreter.

Layout (little-endian, every section 4-byte aligned, weights 16-byte aligned)::

    header (76 B): magic "EIMG", total size, CRC32 of bytes [12, total), version, header size,
                   op count/offset/bytes, tensor count/offset, input/output/state counts and
                   the io table offset, arena bytes, weights offset/bytes
    tensor table:  32 B per tensor: dtype, kind (0 constant in the image, 1 in the arena),
                   rank, zero point, offset, bytes, dims[4]
    op list:       per op: opcode u16, n_in u8, n_out u8, n_params u16, words u16, tensor
                   ids (u16, 0xFFFF = omitted), int32 parameters
    io table:      u32 tensor ids of inputs, outputs, then (state in, state out) pairs
    weights:       constant tensors, each 16-byte aligned

The firmware reads weights in place from flash and places activations at the arena offsets
of the memory plan (``sdk.compile.memory_plan``). Only the integer part of a graph goes into
the image: ``QuantizeLinear`` at graph inputs and ``DequantizeLinear`` at graph outputs run on
the host (they are float), see :class:`BoundaryIO`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_bridge.framing import crc32
from firmware_bridge.op_encoders import DTYPE_CODES, ENCODERS, OpRecord
from sdk.compile.memory_plan import plan_memory
from sdk.errors import GraphError, ModelFormatError, UnsupportedOpError
from sdk.graph.ir import Graph, Node
from sdk.ops.cost import node_cost

MAGIC = 0x474D4945          # "EIMG"
VERSION = 1
HEADER = struct.Struct("<IIIHH" + "I" * 15)
TENSOR = struct.Struct("<BBBxiII4I")
TENSOR_NONE = 0xFFFF
WEIGHT_ALIGN = 16


@dataclass
class BoundaryIO:
    """One model input or output as the host sees it, and its tensor on the device."""

    name: str                  # graph input/output name
    device_tensor: str         # the integer tensor the firmware reads or writes
    dtype: str                 # device dtype
    shape: tuple[int, ...]
    quantize: dict[str, Any] | None = None    # QuantizeLinear / DequantizeLinear attrs

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class PackedImage:
    """An image and what the host needs to drive it."""

    data: bytes
    inputs: list[BoundaryIO]
    outputs: list[BoundaryIO]
    state: list[tuple[BoundaryIO, BoundaryIO]]
    arena_bytes: int
    op_names: list[str] = field(default_factory=list)
    op_types: list[str] = field(default_factory=list)
    macs: list[int] = field(default_factory=list)
    # (int16, int8/uint8) activation tensors of the device graph: what the fit decision needs
    # to suggest a fix that is not already in force
    activations: tuple[int, int] = (0, 0)

    def activation_widths(self) -> tuple[int, int]:
        return self.activations

    @property
    def crc32(self) -> int:
        return struct.unpack_from("<I", self.data, 8)[0]


def device_subgraph(graph: Graph) -> tuple[Graph, list[BoundaryIO], list[BoundaryIO]]:
    """Split off the float boundary: the integer graph that runs on the device, and how the
    host maps each model input/output onto it."""
    consumers = graph.consumers()
    producers = graph.producers()
    skip: set[int] = set()
    ins: list[BoundaryIO] = []
    outs: list[BoundaryIO] = []
    for name in graph.inputs:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op == "QuantizeLinear":
            q = users[0]
            skip.add(id(q))
            t = graph.tensor(q.outputs[0])
            ins.append(BoundaryIO(name, t.name, t.dtype, _shape(graph, t.name), dict(q.attrs)))
        else:
            t = graph.tensor(name)
            ins.append(BoundaryIO(name, name, t.dtype, _shape(graph, name)))
    for name in graph.outputs:
        p = producers.get(name)
        if p is not None and p.op == "DequantizeLinear":
            skip.add(id(p))
            t = graph.tensor(p.inputs[0])
            outs.append(BoundaryIO(name, t.name, t.dtype, _shape(graph, t.name), dict(p.attrs)))
        else:
            t = graph.tensor(name)
            outs.append(BoundaryIO(name, name, t.dtype, _shape(graph, name)))
    sub = Graph(graph.name)
    sub.metadata = dict(graph.metadata)
    for n in graph.topological_order():
        if id(n) in skip:
            continue
        sub.nodes.append(n)
        for t in n.inputs + n.outputs:
            if t and t not in sub.tensors:
                sub.add_tensor(graph.tensor(t))
    for io in ins + outs:
        if io.device_tensor not in sub.tensors:
            sub.add_tensor(graph.tensor(io.device_tensor))
    sub.inputs = [io.device_tensor for io in ins]
    sub.outputs = [io.device_tensor for io in outs]
    return sub, ins, outs


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    shape = graph.tensor(name).shape
    if shape is None or any(d is None or int(d) < 0 for d in shape):
        raise GraphError(f"tensor {name!r} has no static shape; the MCU image needs every "
                         "activation shape (run shape inference or give the input shapes)")
    return tuple(int(d) for d in shape)


class _Packer:
    """Assigns tensor ids and collects constants while ops are encoded."""

    def __init__(self, graph: Graph, packed_kernels: bool) -> None:
        self.graph = graph
        self.packed_kernels = packed_kernels
        self.ids: dict[str, int] = {}
        self.extra: dict[str, np.ndarray] = {}

    def data(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.extra:
            return self.extra[name]
        return self.graph.tensor(name).data

    def constant(self, hint: str, values: np.ndarray) -> str:
        name = f"{hint}#{len(self.extra)}"
        self.extra[name] = np.ascontiguousarray(values)
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.extra:
            return self.extra[name].shape
        return _shape(self.graph, name)

    def dtype(self, name: str) -> str:
        if name in self.extra:
            return str(self.extra[name].dtype)
        return self.graph.tensor(name).dtype

    def vector(self, hint: str, values: Any, n: int) -> str:
        a = np.asarray(values, dtype=np.int64).ravel()
        if a.size == 1:
            a = np.repeat(a, n)
        if a.size != n:
            raise GraphError(f"{hint} has {a.size} entries, expected {n} (one per channel)")
        name = f"{hint}#{len(self.extra)}"
        self.extra[name] = a.astype(np.int32)
        return name

    def tensor_id(self, name: str) -> int:
        if not name:
            return TENSOR_NONE
        if name not in self.ids:
            self.ids[name] = len(self.ids)
        return self.ids[name]


def pack_image(graph: Graph, state: list[tuple[str, str]] | dict[str, str] | None = None,
               packed_kernels: bool = True, after: dict[str, list[OpRecord]] | None = None,
               constants: dict[str, np.ndarray] | None = None) -> PackedImage:
    """Pack an integer graph into a flash image.

    ``packed_kernels`` selects the SMLAD kernels for int8 FC and (group-1) conv: weights are
    stored widened to int16 and interleaved (twice the flash), the input zero point folded
    into the bias. ``False`` keeps int8 weights and the plain reference-style C kernels.

    ``state`` maps state inputs to state outputs of a step graph (default:
    ``graph.metadata["state"]``, the convention of ``sdk.graph.state``); the firmware
    carries each output into its input after every invocation and keeps it between calls
    (GET_STATE / SET_STATE / RESET reach it), so the host feeds only the other inputs.

    ``after`` (tensor -> firmware-only op records, e.g. the early-exit checks of
    :mod:`sdk.exits.device`) inserts records right after the node that produces each tensor;
    ``constants`` are extra constant tensors those records read.
    """
    if any(t.shape is None for t in graph.tensors.values()):
        from sdk.ops.shapes import infer_shapes
        graph = infer_shapes(graph.copy())
    sub, ins, outs = device_subgraph(graph)
    if state is None:
        state = sub.metadata.get("state") or []
    state = list(state.items()) if isinstance(state, dict) else [tuple(p) for p in state]
    bad = sorted({n.op for n in sub.nodes if n.op not in ENCODERS})
    if bad:
        raise UnsupportedOpError(bad, "the MCU firmware",
                                 "run those nodes on the host (partition) or add the kernel")
    # state may be named by the graph's (float) inputs/outputs: use their device tensors
    to_device = {io.name: io.device_tensor for io in ins + outs}
    state = [(to_device.get(a, a), to_device.get(b, b)) for a, b in state]
    state_in = {a for a, _ in state}
    missing = [t for pair in state for t in pair if t not in sub.tensors]
    if missing:
        raise GraphError(f"state tensors {missing} are not in the graph's integer part")
    ins = [io for io in ins if io.device_tensor not in state_in]  # carried on the device
    p = _Packer(sub, packed_kernels)
    p.extra.update({k: np.ascontiguousarray(v) for k, v in (constants or {}).items()})
    records = [(n, ENCODERS[n.op](n, p)) for n in sub.nodes]
    if after:
        records = _insert_after(records, after)

    empty = [n for n, t in sub.tensors.items() if not t.is_constant and 0 in p.shape(n)]
    if empty:
        raise GraphError(f"tensors {empty[:5]} are empty (a dimension is 0); the MCU image "
                         "needs non-empty activations: fix the kernel size or padding")
    # arena: state inputs must survive the whole invocation -> plan them as outputs too
    plan_graph = Graph(sub.name)
    plan_graph.tensors, plan_graph.nodes = sub.tensors, sub.nodes
    plan_graph.inputs = list(sub.inputs)
    plan_graph.outputs = list(dict.fromkeys(sub.outputs + [t for pair in state for t in pair]))
    plan = plan_memory(plan_graph)

    for io in ins + outs:
        p.tensor_id(io.device_tensor)
    for s_in, s_out in state:
        p.tensor_id(s_in), p.tensor_id(s_out)
    op_blobs = []
    for node, rec in records:
        ids = [p.tensor_id(t) for t in rec.inputs + rec.outputs]
        if len(ids) % 2:
            ids.append(0)
        words = 2 + len(ids) // 2 + len(rec.params)
        op_blobs.append(struct.pack(f"<HBBHH{len(ids)}H{len(rec.params)}i", rec.opcode,
                                    len(rec.inputs), len(rec.outputs), len(rec.params), words,
                                    *ids, *[_i32(v, node) for v in rec.params]))
    ops = b"".join(op_blobs)

    names = sorted(p.ids, key=p.ids.get)
    n_t = len(names)
    off_tensors = HEADER.size
    off_ops = off_tensors + n_t * TENSOR.size
    io_ids = ([p.ids[io.device_tensor] for io in ins] + [p.ids[io.device_tensor] for io in outs]
              + [p.ids[t] for pair in state for t in pair])
    off_io = off_ops + len(ops)
    off_w = _align(off_io + 4 * len(io_ids), WEIGHT_ALIGN)
    weights = bytearray()
    table = bytearray()
    for name in names:
        if name in p.extra:
            data = p.extra[name]
        else:
            t = sub.tensor(name)
            data = t.data
        dtype = str(data.dtype) if data is not None else sub.tensor(name).dtype
        if dtype not in DTYPE_CODES:
            raise GraphError(f"tensor {name!r} has dtype {dtype}; the MCU image holds only "
                             f"{sorted(DTYPE_CODES)}")
        if data is not None:
            pad = _align(len(weights), WEIGHT_ALIGN) - len(weights)
            weights += bytes(pad)
            offset, kind = off_w + len(weights), 0
            raw = np.ascontiguousarray(data).tobytes()
            weights += raw
            shape, nbytes, zp = data.shape, len(raw), 0
        else:
            if name not in plan.slots:
                raise GraphError(f"tensor {name!r} is neither a constant nor in the arena plan")
            slot = plan.slots[name]
            shape, nbytes, offset, kind = p.shape(name), slot.size, slot.offset, 1
            q = sub.tensor(name).quant
            zp = int(q.zero_point) if q is not None and not q.per_axis else 0
        dims = list(shape)[-4:] if len(shape) <= 4 else [int(np.prod(shape[:-3]))] + list(shape[-3:])
        table += TENSOR.pack(DTYPE_CODES[dtype], kind, len(dims), zp, offset, nbytes,
                             *(dims + [0] * (4 - len(dims))))
    body = bytearray(table + ops + struct.pack(f"<{len(io_ids)}I", *io_ids))
    body += bytes(off_w - off_tensors - len(body))
    body += weights
    total = HEADER.size + len(body)
    rest = struct.pack("<HH" + "I" * 15, VERSION, HEADER.size, len(records), off_ops, len(ops),
                       n_t, off_tensors, len(ins), len(outs), len(state), off_io,
                       plan.arena_bytes, off_w, len(weights), 0, 0, 0) + bytes(body)
    crc = crc32(rest)
    data = struct.pack("<III", MAGIC, total, crc) + rest
    state_io = [(BoundaryIO(a, a, sub.tensor(a).dtype, _shape(sub, a)),
                 BoundaryIO(b, b, sub.tensor(b).dtype, _shape(sub, b))) for a, b in state]
    return PackedImage(bytes(data), ins, outs, state_io, plan.arena_bytes,
                       [n.name for n, _ in records], [n.op for n, _ in records],
                       [node_cost(sub, n, p.shape).macs for n, _ in records],
                       _activation_widths(sub))


def _insert_after(records: list, after: dict[str, list[OpRecord]]) -> list:
    """``records`` with each ``after[t]`` placed right after the record producing ``t`` (as
    nodes named ``check_<t>`` with op ``FirmwareOnly``: no IR op, no MACs)."""
    out, placed = [], set()
    for node, rec in records:
        out.append((node, rec))
        for t in node.outputs:
            for k, extra in enumerate(after.get(t, [])):
                out.append((Node("FirmwareOnly", list(extra.inputs), list(extra.outputs),
                                 name=f"check_{t}" + (f"_{k}" if k else "")), extra))
                placed.add(t)
    missing = sorted(set(after) - placed)
    if missing:
        raise GraphError(f"firmware records placed after {missing}, which no node of the "
                         "image produces")
    return out


def _activation_widths(graph: Graph) -> tuple[int, int]:
    n16 = n8 = 0
    for t in graph.tensors.values():
        if t.is_constant or t.quant is None:
            continue
        n16 += t.dtype == "int16"
        n8 += t.dtype in ("int8", "uint8")
    return n16, n8


def read_header(data: bytes) -> dict[str, int]:
    """The header fields of an image, after checking magic, size and CRC32."""
    if len(data) < HEADER.size:
        raise ModelFormatError(f"MCU image is {len(data)} bytes, shorter than its "
                               f"{HEADER.size}-byte header: the file is truncated")
    fields = HEADER.unpack_from(data)
    keys = ["magic", "total_size", "crc32", "version", "header_size", "n_ops", "ops_offset",
            "ops_bytes", "n_tensors", "tensors_offset", "n_inputs", "n_outputs", "n_state",
            "io_offset", "arena_size", "weights_offset", "weights_bytes"]
    h = dict(zip(keys, fields))
    if h["magic"] != MAGIC:
        raise ModelFormatError("not an MCU image (bad magic): pack it with pack_image")
    if h["total_size"] != len(data):
        raise ModelFormatError(f"MCU image says {h['total_size']} bytes but has {len(data)}: "
                               "the file is truncated")
    if crc32(data[12:]) != h["crc32"]:
        raise ModelFormatError("MCU image CRC32 does not match: the file is corrupted")
    return h


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _i32(v: int, node: Node) -> int:
    v = int(v)
    if not -(2**31) <= v < 2**31:
        raise GraphError(f"{node.name}: parameter {v} does not fit int32")
    return v


FLASH_RECORD_BYTES = 4096            # fw.h: one boot record
FLASH_SLOTS_OFFSET = 2 * FLASH_RECORD_BYTES


def slot_size_for_flash(flash_bytes: int) -> int:
    """Bytes one A/B image slot holds on a board with ``flash_bytes`` of model flash: the
    firmware's ``flash_slot_size()`` (flash.c), ``((flash − 2 records) / 2)`` rounded down to
    4 KiB. This is what ``edge flash`` is refused against (HELLO's ``slot_size``)."""
    return max(0, (int(flash_bytes) - FLASH_SLOTS_OFFSET) // 2) & ~4095


def image_sizes(graph: Graph) -> tuple[int, int]:
    """``(image bytes, arena bytes)`` of the flash image :func:`pack_image` writes for
    ``graph``, exactly what ``edge flash`` sends (weights of the packed kernels included)."""
    packed = pack_image(graph)
    return len(packed.data), int(packed.arena_bytes)
