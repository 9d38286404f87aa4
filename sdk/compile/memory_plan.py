"""Static arena plan: every activation tensor gets a fixed offset in one buffer.

The plan is computed once at compile time, stored in the bundle, and used as-is by the
microcontroller firmware (no allocator at run time):

1. **Order.** Nodes run in the graph's topological order; step ``s`` is the ``s``-th node.
2. **Lifetimes.** A non-constant tensor is live from the step that produces it (step 0 for a
   graph input) to the last step that reads it (the last step for a graph output).
3. **Buffers.** Tensors that may share bytes are merged into one buffer whose lifetime is the
   union of theirs:

   * *views*: ``Reshape``, ``Flatten``, ``Squeeze``, ``Unsqueeze`` and ``Identity`` do not
     change the bytes, so the output is the input's memory;
   * *in place*: an op writes its output over an input of the same shape and byte size whose
     buffer dies at this step and holds no graph output, when the op allows it:

     - element-wise ops (output element ``i`` depends only on input element ``i``, read
       before it is written);
     - channel-preserving convolutions, with a small **scratch** buffer in the arena (the
       technique of MCUNet's TinyEngine): a stride-1 depthwise conv whose output plane ``c``
       depends only on input plane ``c`` (scratch: one ``H·W`` plane, copied before plane
       ``c`` is overwritten); a 1×1 stride-1 conv with ``C_out = C_in`` and a
       fully-connected layer with ``N = K``, whose output at one pixel / row depends only on
       the input at that pixel / row (scratch: one ``C`` or ``K`` vector).

     The default, ``in_place="elementwise"``, is safe for any kernel that reads element
     ``i`` before writing it. ``in_place=True`` adds the scratch kind; then executors must
     honour :attr:`MemoryPlan.in_place` (run those nodes slice by slice from the scratch
     copy). ``in_place=False`` shares nothing but views.
4. **Placement**: greedy, as TFLite Micro's ``GreedyMemoryPlanner`` (buffers sorted by size,
   largest first; each takes the lowest ``alignment``-aligned offset whose byte range does not
   meet any already placed buffer with an overlapping lifetime), and three other greedy
   orders (best fit by size; first fit by size × lifetime; best fit by start step); the
   smallest arena wins. Only offsets differ, so every executor runs any of them.
   :func:`live_bytes_bound` is the floor no placement can beat for this node order.

``arena_bytes`` (the peak) is the highest end offset. Two buffers share bytes only if their
lifetimes are disjoint, which :meth:`MemoryPlan.check` verifies independently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.graph.ir import Graph
from sdk.ops.liveness import live_ranges
from sdk.ops.schema import INPLACE, VIEW, ops_with

PLAN_VERSION = 1
DEFAULT_ALIGNMENT = 16

VIEW_OPS = ops_with(VIEW)
# ops that may write their output over their first input (docs: the op schema's traits)
ELEMENTWISE_OPS = ops_with(INPLACE)


@dataclass
class TensorSlot:
    """Where one tensor lives in the arena and when it is live (inclusive steps)."""

    name: str
    offset: int
    size: int
    first: int
    last: int
    buffer: int          # tensors with the same buffer id share bytes (views / in place)
    kind: str = "tensor"  # "tensor", or "scratch" (a node's in-place scratch, live one step)


@dataclass
class MemoryPlan:
    """The arena layout of one graph. Serialize with :meth:`to_json`."""

    graph_name: str
    alignment: int
    arena_bytes: int                 # peak: bytes the arena must have
    weight_bytes: int                # constant tensors the nodes read (flash / DRAM)
    attr_bytes: int                  # per-channel multipliers, shifts, tables in node attrs
    unplanned_bytes: int             # sum of all activation sizes (no reuse), for reference
    order: list[str]                 # node names in execution order
    slots: dict[str, TensorSlot] = field(default_factory=dict)
    # node name -> {"input": tensor overwritten, "output": tensor, "scratch": slot name or ""}
    in_place: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def flash_bytes(self) -> int:
        """Model data stored in flash: weights plus integer attributes (code not included)."""
        return self.weight_bytes + self.attr_bytes

    def offset(self, tensor: str) -> int:
        try:
            return self.slots[tensor].offset
        except KeyError:
            raise GraphError(f"tensor {tensor!r} is not in the arena plan (constants live in "
                             "flash; check the name)") from None

    def check(self) -> None:
        """Raise GraphError if two tensors of different buffers overlap in bytes and time.

        A zero-size tensor (a 0 dimension) holds the empty byte range ``[o, o)``, which meets
        no other range, so it never overlaps; it must still be aligned and inside the arena."""
        slots = sorted(self.slots.values(), key=lambda s: s.offset)
        for a in slots:
            if a.offset % self.alignment or a.offset + a.size > self.arena_bytes:
                raise GraphError(f"arena plan: tensor {a.name!r} at {a.offset}+{a.size} is "
                                 f"misaligned or outside the {self.arena_bytes}-byte arena")
        slots = [s for s in slots if s.size > 0]
        for i, a in enumerate(slots):
            for b in slots[i + 1:]:
                if b.offset >= a.offset + a.size:
                    break
                if a.buffer != b.buffer and a.first <= b.last and b.first <= a.last:
                    raise GraphError(f"arena plan: live tensors {a.name!r} and {b.name!r} "
                                     "overlap in memory")

    def to_json(self) -> dict[str, Any]:
        return {"version": PLAN_VERSION, "graph": self.graph_name, "alignment": self.alignment,
                "arena_bytes": self.arena_bytes, "weight_bytes": self.weight_bytes,
                "attr_bytes": self.attr_bytes, "flash_bytes": self.flash_bytes,
                "unplanned_bytes": self.unplanned_bytes, "order": list(self.order),
                "tensors": [asdict(s) for s in self.slots.values()],
                "in_place": self.in_place}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MemoryPlan:
        if d.get("version") != PLAN_VERSION:
            raise GraphError(f"arena plan version {d.get('version')!r} is not supported "
                             f"(expected {PLAN_VERSION}); recompile the model")
        slots = {t["name"]: TensorSlot(**t) for t in d["tensors"]}
        return cls(d["graph"], d["alignment"], d["arena_bytes"], d["weight_bytes"],
                   d["attr_bytes"], d["unplanned_bytes"], list(d["order"]), slots,
                   dict(d.get("in_place", {})))


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _attr_bytes(value: Any) -> int:
    """Bytes an integer attribute array takes in flash (int32 per element; scalars free)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) if value.ndim else 0
    if isinstance(value, (list, tuple)) and len(value) > 4:  # short lists: strides, pads
        return 4 * len(value)
    return 0


def scratch_name(node_name: str) -> str:
    return f"{node_name}#scratch"


def _in_place_scratch(graph: Graph, node: Any, shape_of: Any) -> int | None:
    """Scratch bytes a channel-preserving conv / FC needs to run in place, or None if it
    cannot (see the module docstring)."""
    x, out = node.inputs[0], node.outputs[0]
    xs, os_ = shape_of(x), shape_of(out)
    if xs is None or xs != os_ or graph.tensor(x).dtype != graph.tensor(out).dtype:
        return None
    item = np.dtype(graph.tensor(x).dtype).itemsize
    a = node.attrs
    if node.op == "QDepthwiseConv2d" and len(xs) == 4:
        if list(a.get("strides", [1, 1])) == [1, 1]:
            return xs[2] * xs[3] * item
    elif node.op == "QConv2d" and len(xs) == 4:
        w = shape_of(node.inputs[1])
        if (w is not None and tuple(w[2:]) == (1, 1) and a.get("group", 1) == 1
                and list(a.get("strides", [1, 1])) == [1, 1]
                and not any(a.get("pads", [0, 0, 0, 0]))):
            return xs[1] * item
    elif node.op == "QFullyConnected":
        return xs[-1] * item
    return None


IN_PLACE_WITH_SCRATCH = frozenset({"QDepthwiseConv2d", "QConv2d", "QFullyConnected"})


def tensor_bytes(graph: Graph, name: str, shapes: dict[str, tuple[int, ...]] | None) -> int:
    """Byte size of a tensor, from ``shapes`` (e.g. a traced run) or the tensor's shape."""
    t = graph.tensor(name)
    shape = (shapes or {}).get(name, t.shape)
    if shape is None:
        raise GraphError(f"tensor {name!r} has no known shape, so it cannot be planned; pass "
                         "shapes= from a traced run, or give the graph's tensors their shapes")
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize


Buffer = tuple[int, int, int, int]      # (id, aligned size, first step, last step)


def place_greedy(bufs: list[Buffer], alignment: int, best_fit: bool) -> tuple[dict[int, int], int]:
    """Place ``bufs`` in the given order: each at the lowest offset (first fit) or in the
    smallest gap that holds it (best fit, else on top) among the already placed buffers
    whose lifetimes overlap its own. A zero-size buffer needs no bytes: it gets offset 0 and
    constrains no other buffer."""
    placed: list[tuple[int, int, int, int]] = []   # (offset, size, first, last)
    offsets: dict[int, int] = {}
    for b, bsize, f, l in bufs:
        if bsize == 0:
            offsets[b] = 0
            continue
        live = sorted((o, s) for o, s, pf, pl in placed if pf <= l and f <= pl)
        offset, top, best = 0, 0, None
        for o, s in live:
            if top + bsize <= o:
                if not best_fit:
                    break
                if best is None or o - top < best[1]:
                    best = (top, o - top)
            top = max(top, _align(o + s, alignment))
        if best_fit:
            offset = best[0] if best is not None else top
        else:
            offset = top
        offsets[b] = offset
        placed.append((offset, bsize, f, l))
    return offsets, max((o + s for o, s, _, _ in placed), default=0)


#: placement orders tried; the first is TensorFlow Lite Micro's GreedyMemoryPlanner
PLACEMENTS: dict[str, tuple[Any, bool]] = {
    "size-first-fit": (lambda x: (-x[1], x[2], x[0]), False),
    "size-best-fit": (lambda x: (-x[1], x[2], x[0]), True),
    "size-x-lifetime-first-fit": (lambda x: (-x[1] * (x[3] - x[2] + 1), x[2], x[0]), False),
    "start-best-fit": (lambda x: (x[2], -x[1], x[0]), True),
}


def place_buffers(bufs: list[Buffer], alignment: int) -> tuple[dict[int, int], int, str]:
    """Offsets of ``bufs`` by each greedy order of :data:`PLACEMENTS`; the smallest arena
    wins (ties: the earlier order). Returns ``(offsets, arena bytes, order name)``. Every
    candidate is a valid plan (no two buffers with overlapping lifetimes share bytes), so
    executors need nothing new: only the offsets differ."""
    best: tuple[dict[int, int], int, str] | None = None
    for name, (key, best_fit) in PLACEMENTS.items():
        offsets, arena = place_greedy(sorted(bufs, key=key), alignment, best_fit)
        if best is None or arena < best[1]:
            best = (offsets, arena, name)
    assert best is not None
    return best


def live_bytes_bound(plan: MemoryPlan) -> int:
    """The most bytes live at any one step: ``max_s Σ_{buffers live at s} size``. No
    placement of these buffers in this node order can use a smaller arena."""
    spans: dict[int, tuple[int, int, int]] = {}
    for t in plan.slots.values():
        f, l, sz = spans.get(t.buffer, (t.first, t.last, 0))
        spans[t.buffer] = (min(f, t.first), max(l, t.last), max(sz, _align(t.size,
                                                                           plan.alignment)))
    steps = max((l for _, l, _ in spans.values()), default=-1) + 1
    live = [0] * max(steps, 1)
    for f, l, sz in spans.values():
        for s in range(f, l + 1):
            live[s] += sz
    return max(live)


def plan_memory(graph: Graph, alignment: int = DEFAULT_ALIGNMENT,
                in_place: bool | str = "elementwise",
                shapes: dict[str, tuple[int, ...]] | None = None,
                placement: str = "best") -> MemoryPlan:
    """Plan the activation arena of ``graph`` (see the module docstring for the rules).

    ``placement``: ``"best"`` (the smallest of :data:`PLACEMENTS`) or one order's name, e.g.
    ``"size-first-fit"`` for exactly TFLite Micro's greedy planner."""
    if placement != "best" and placement not in PLACEMENTS:
        raise GraphError(f"placement must be 'best' or one of {sorted(PLACEMENTS)}, got "
                         f"{placement!r}")
    if in_place not in (True, False, "elementwise"):
        raise GraphError(f"in_place must be True, False or 'elementwise', got {in_place!r}")
    if alignment <= 0 or alignment & (alignment - 1):
        raise GraphError(f"arena alignment must be a power of two, got {alignment}")
    order = graph.topological_order()
    consts = {t.name for t in graph.initializers()}
    outputs = set(graph.outputs)

    def shape_of(name: str) -> tuple[int, ...] | None:
        return (shapes or {}).get(name, graph.tensor(name).shape)

    ranges = live_ranges(order, sources=graph.inputs, keep=outputs, skip=consts)
    first, last = ranges.first, ranges.last
    size = {name: tensor_bytes(graph, name, shapes) for name in first}

    # -- buffers: union of tensors that share bytes --------------------------------------
    buf_of: dict[str, int] = {name: k for k, name in enumerate(first)}
    members: dict[int, list[str]] = {k: [name] for name, k in buf_of.items()}

    def buf_last(b: int) -> int:
        return max(last[m] for m in members[b])

    def merge(into: int, name: str) -> None:
        old = buf_of[name]
        for m in members.pop(old):
            buf_of[m] = into
            members[into].append(m)

    in_place_nodes: dict[str, dict[str, str]] = {}
    scratch_slots: dict[str, tuple[int, int]] = {}
    for step, node in enumerate(order):
        data_inputs = [i for i in node.inputs if i and i not in consts]
        outs = [o for o in node.outputs if o]
        if not data_inputs or len(outs) != 1:
            continue
        out = outs[0]
        if node.op in VIEW_OPS:
            src = data_inputs[0]
            if size[src] == size[out]:
                merge(buf_of[src], out)
            continue
        if not in_place:
            continue
        if node.op in ELEMENTWISE_OPS:
            candidates, scratch = data_inputs, 0
        elif (in_place is True and node.op in IN_PLACE_WITH_SCRATCH
              and data_inputs[0] == node.inputs[0]):
            candidates = data_inputs[:1]
            scratch = _in_place_scratch(graph, node, shape_of)
            if scratch is None:
                continue
        else:
            continue
        for src in candidates:
            b = buf_of[src]
            others = [i for i in data_inputs if i != src]
            if (size[src] == size[out] and shape_of(src) == shape_of(out)
                    and buf_last(b) == step
                    and not any(m in outputs for m in members[b])
                    and not any(buf_of[i] == b for i in others)):
                merge(b, out)
                entry = {"input": src, "output": out, "scratch": ""}
                if scratch:
                    entry["scratch"] = scratch_name(node.name)
                    scratch_slots[entry["scratch"]] = (step, scratch)
                in_place_nodes[node.name] = entry
                break

    # scratch buffers are tensors of their own, live only at their node's step
    next_id = len(buf_of)          # ids 0..len-1 were given to tensors above
    for k, (name, (step, nbytes)) in enumerate(scratch_slots.items()):
        first[name] = last[name] = step
        size[name] = nbytes
        buf_of[name] = next_id + k
        members[next_id + k] = [name]

    # -- placement: the best of a few greedy orders ----------------------------------------
    bufs = []
    for b, names in members.items():
        bsize = _align(max(size[m] for m in names), alignment)
        bufs.append((b, bsize, min(first[m] for m in names), buf_last(b)))
    if placement == "best":
        offsets, arena, _ = place_buffers(bufs, alignment)
    else:
        key, best_fit = PLACEMENTS[placement]
        offsets, arena = place_greedy(sorted(bufs, key=key), alignment, best_fit)

    slots = {name: TensorSlot(name, offsets[buf_of[name]], size[name], first[name], last[name],
                              buf_of[name], "scratch" if name in scratch_slots else "tensor")
             for name in first}
    used_consts = {i for n in order for i in n.inputs if i in consts}
    weight_bytes = sum(graph.tensor(c).nbytes for c in used_consts)
    attr_bytes = sum(_attr_bytes(v) for n in order for v in n.attrs.values())
    plan = MemoryPlan(graph.name, alignment, int(arena), int(weight_bytes), int(attr_bytes),
                      int(sum(_align(s, alignment) for n, s in size.items()
                          if n not in scratch_slots)),
                      [n.name for n in order], slots, in_place_nodes)
    plan.check()
    return plan

