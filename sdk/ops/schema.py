"""The op schema: every operator of the IR declared once.

An :class:`OpDef` says, for one op name, everything the rest of the house needs to know about
it: its inputs, its attributes with types and defaults, its traits (a view, element-wise,
in-place-able, keeps the quantization grid, stateful ...), its shape rule, its cost formula
(MACs, adds, multiplies, requantizations, other per-element work), the NumPy reference (the
specification) and its Numba twin, and how the firmware and the exporters treat it. One
:meth:`OpDef.prepare` step turns a node's attribute dict into checked, typed parameters with
defaults filled in — TFLite Micro's Init/Prepare/Eval split — and refuses an attribute the
op does not know, so nothing is silently ignored.

Integer ops are declared beside their implementations in :mod:`sdk.ops.int_ops` (and the
state ops in :mod:`sdk.ops.state_ops`); layout, boundary and float ops in
:mod:`sdk.ops.op_table`. The interpreter, the lowering, the exporters, the memory planner,
the cost model, the profiler, shape inference and ``docs/ops.md`` read this table; the trait
sets below (``VIEW_OPS`` ...) are derived from it, never restated.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.errors import GraphError

# -- traits ----------------------------------------------------------------------------------
VIEW = "view"                # output is the input's bytes reinterpreted (no data moves)
ELEMENTWISE = "elementwise"  # output element i depends on input element i (others broadcast)
INPLACE = "inplace"          # may write its output over its first input's buffer
KEEPS_GRID = "keeps_grid"    # output keeps the first input's quantization grid (scale, zp)
STATEFUL = "stateful"        # reads and writes declared state (recurrent state, KV cache)
REQUANTIZES = "requantizes"  # ends in one dyadic requantization per output element
SPATIAL = "spatial"          # works on NCHW activations (NHWC in TFLite)
LAYOUT_FREE = "layout_free"  # indifferent to axis order (same rank in and out, per element)
TRAITS = frozenset({VIEW, ELEMENTWISE, INPLACE, KEEPS_GRID, STATEFUL, REQUANTIZES, SPATIAL,
                    LAYOUT_FREE})

FAMILIES = ("integer", "layout", "boundary", "float")

REQUIRED = object()  # an Attr default meaning "the node must carry it"


# -- attributes ------------------------------------------------------------------------------
def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v: Any) -> int:
    a = np.asarray(v)
    if a.size != 1:
        raise ValueError(f"expected one integer, got {a.size} values")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)
            or (np.issubdtype(a.dtype, np.floating) and float(a.ravel()[0]).is_integer())):
        raise ValueError(f"expected an integer, got {v!r}")
    return int(a.ravel()[0])


def _ints(v: Any) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v))
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0
                           or np.all(np.mod(a, 1) == 0)):
        raise ValueError(f"expected a list of integers, got {v!r}")
    return tuple(int(e) for e in a)


def _channels(v: Any) -> int | np.ndarray:
    """One integer for all channels, or an int64 vector of per-channel values."""
    a = np.asarray(v)
    if a.ndim == 0:
        return _int(a)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"expected an integer or a 1-d integer vector, got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def _array(v: Any) -> np.ndarray:
    return np.asarray(v)


def _int_or_ints(v: Any) -> int | tuple[int, ...]:
    """Geometry (stride, pads ...): one integer, or a list of them, kept as given."""
    return _int(v) if np.ndim(v) == 0 else _ints(v)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "int": _int, "ints": _ints, "channels": _channels, "str": _text, "array": _array,
    "int_or_ints": _int_or_ints,
    "optional_int": lambda v: None if v is None else _int(v),
}


@dataclass(frozen=True)
class Attr:
    """One attribute: name, type (``int``, ``ints``, ``channels`` = int or per-channel
    vector, ``str``, ``array``, ``optional_int``) and default (``REQUIRED`` if the node must
    carry it; ``None`` if it may be absent)."""

    name: str
    type: str = "int"
    default: Any = REQUIRED
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in _CONVERT:
            raise ValueError(f"attribute type {self.type!r} is not one of {sorted(_CONVERT)}")


def requant_attrs(per_channel: bool = True) -> tuple[Attr, ...]:
    """The output side shared by requantizing ops (docs/ops.md, requantization convention)."""
    kind = "channels" if per_channel else "int"
    return (Attr("m0", kind, doc="Q31 multiplier"), Attr("shift", kind, doc="left shift"),
            Attr("out_zp", "int", 0), Attr("act_min", "optional_int", None),
            Attr("act_max", "optional_int", None), Attr("dtype", "str", "int8"))


# -- cost ------------------------------------------------------------------------------------
@dataclass
class Cost:
    """Arithmetic of one node for one inference (see :mod:`sdk.ops.cost` for the rules)."""

    macs: int = 0
    adds: int = 0
    muls: int = 0
    requants: int = 0
    other: int = 0


class CostInputs:
    """What a cost formula may ask about a node: operand shapes and sizes, whether an
    optional operand is present, and the attributes."""

    def __init__(self, node: Any, shape: Callable[[str], tuple[int, ...]],
                 consts: set[str]) -> None:
        self.node, self._shape, self.consts = node, shape, consts
        self.attrs = node.attrs

    def shape(self, k: int) -> tuple[int, ...]:
        return self._shape(self.node.inputs[k])

    def has(self, k: int) -> bool:
        return len(self.node.inputs) > k and bool(self.node.inputs[k])

    @property
    def out_elems(self) -> int:
        return sum(int(np.prod(self._shape(o), dtype=np.int64)) for o in self.node.outputs if o)

    def size(self, k: int) -> int:
        return int(np.prod(self.shape(k), dtype=np.int64))

    @property
    def data_inputs(self) -> list[str]:
        return [i for i in self.node.inputs if i and i not in self.consts]


CostRule = Callable[[CostInputs], Cost]
ShapeRule = Callable[[list, list, list, dict], "list[tuple[tuple[int, ...], str]] | None"]


def no_cost(c: CostInputs) -> Cost:
    return Cost()


def per_element(other: int = 0, requants: int = 0, adds: int = 0, muls: int = 0) -> CostRule:
    """A cost formula of fixed work per output element."""
    def rule(c: CostInputs) -> Cost:
        n = c.out_elems
        return Cost(adds=adds * n, muls=muls * n, requants=requants * n, other=other * n)
    return rule


# -- the op definition -----------------------------------------------------------------------
@dataclass(frozen=True)
class OpDef:
    """One operator, declared once (see the module docstring).

    ``spec``/``twin`` are ``"module:function"`` paths of the NumPy reference and the Numba
    twin (integer ops must have both); ``firmware`` is the firmware opcode name that runs the
    op, or None with ``firmware_why_not`` saying why; ``exporters`` maps an exporter
    (``"onnxruntime"``, ``"tflite"``) to the reason it does not encode the op, for those that
    do not."""

    name: str
    family: str
    inputs: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ("y",)
    attrs: tuple[Attr, ...] = ()
    traits: frozenset[str] = frozenset()
    spec: str | None = None
    twin: str | None = None
    cost: CostRule = no_cost
    shape: ShapeRule | None = None
    firmware: str | None = None
    firmware_why_not: str = ""
    exporters_skip: Mapping[str, str] = field(default_factory=dict)
    formula: str = ""
    strict: bool = True     # refuse attributes not declared (False: ONNX ops, checked by kernel)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"op {self.name}: family {self.family!r} not in {FAMILIES}")
        unknown = set(self.traits) - TRAITS
        if unknown:
            raise ValueError(f"op {self.name}: unknown traits {sorted(unknown)}")

    def has(self, trait: str) -> bool:
        return trait in self.traits

    @property
    def attr_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attrs)

    def prepare(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Check and type a node's attributes: required ones present, defaults filled in,
        each converted to its declared type; an attribute the op does not declare is
        refused (GraphError) rather than ignored."""
        if self.strict:
            extra = sorted(set(attrs) - set(self.attr_names))
            if extra:
                raise GraphError(f"{self.name} does not take attribute(s) {', '.join(extra)}; "
                                 f"it takes {', '.join(self.attr_names) or 'none'} (docs/ops.md)")
        out: dict[str, Any] = {}
        missing = []
        for a in self.attrs:
            if a.name in attrs and attrs[a.name] is not None:
                try:
                    out[a.name] = _CONVERT[a.type](attrs[a.name])
                except (ValueError, TypeError) as exc:
                    raise GraphError(f"{self.name} attribute {a.name}: {exc}") from None
            elif a.default is REQUIRED:
                missing.append(a.name)
            else:
                out[a.name] = a.default
        if missing:
            raise GraphError(f"{self.name} node lacks attribute(s) {', '.join(missing)} "
                             "(docs/ops.md)")
        return out

    def kernel(self, fast: bool) -> Callable[..., Any]:
        """The NumPy specification (``fast=False``) or its Numba twin."""
        path = self.twin if fast and self.twin else self.spec
        if path is None:
            raise GraphError(f"op {self.name} has no kernel")
        return resolve(path)


_RESOLVED: dict[str, Callable[..., Any]] = {}


def resolve(path: str) -> Callable[..., Any]:
    """The function named by ``"module:function"``."""
    fn = _RESOLVED.get(path)
    if fn is None:
        module, name = path.split(":")
        fn = _RESOLVED[path] = getattr(importlib.import_module(module), name)
    return fn


SCHEMA: dict[str, OpDef] = {}


def declare(opdef: OpDef) -> OpDef:
    """Add ``opdef`` to the schema (each name once)."""
    if opdef.name in SCHEMA and SCHEMA[opdef.name] != opdef:
        raise RuntimeError(f"op {opdef.name!r} declared twice")
    SCHEMA[opdef.name] = opdef
    return opdef


def load_schema() -> dict[str, OpDef]:
    """Import every module that declares ops and return the schema."""
    for mod in ("sdk.ops.op_table", "sdk.ops.int_ops", "sdk.ops.state_ops"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    return SCHEMA


def opdef(name: str) -> OpDef | None:
    return load_schema().get(name)


def ops_with(trait: str, family: str | None = None) -> frozenset[str]:
    """The names of the ops that have ``trait`` (optionally of one family)."""
    return frozenset(n for n, d in load_schema().items()
                     if trait in d.traits and (family is None or d.family == family))


def ops_of(*families: str) -> frozenset[str]:
    return frozenset(n for n, d in load_schema().items() if d.family in families)


def has_trait(op: str, trait: str) -> bool:
    d = load_schema().get(op)
    return d is not None and trait in d.traits
