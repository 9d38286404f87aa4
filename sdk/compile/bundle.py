"""The ``.edge`` bundle: one zip file holding one or more compiled integer graphs.

Parts (zip entries):

* ``manifest.json`` — format name and version, model name, inputs/outputs with shapes and
  quantization, the op list, parameter bytes, MACs, the entries, and the SHA-256 of every
  other part;
* ``graph.json`` — the main entry's graph: tensors (dtype, shape, quantization, where a
  constant's bytes live), nodes (op, inputs, outputs, integer attributes) and its declared
  state (:class:`~sdk.graph.ir.StateDecl`);
* ``weights.bin`` — ONE weight store for all entries: every constant's raw little-endian
  bytes, each at a 16-byte aligned offset; a constant that several entries hold under the same
  name with the same bytes is stored once;
* ``memory_plan.json`` — the main entry's static arena plan (:mod:`sdk.compile.memory_plan`;
  the microcontroller firmware uses it as-is). The manifest's ``memory`` entry repeats its
  totals: peak arena, weight and flash bytes;
* format 3: ``entries/<name>/graph.json`` and ``entries/<name>/memory_plan.json`` for every
  entry after the first (e.g. ``prefill`` + ``decode_step``, or ``encoder``, ``exit_1`` ...);
  manifest ``entries`` lists them all in order with their inputs, outputs, state and memory.

Loading checks the zip, the format version and each part's SHA-256; any mismatch is a
one-line ModelFormatError that says to recompile. Format-1 bundles (no plan part) and
format-2 bundles (one graph) still load, as a single entry ``main``; a format-1 plan is
computed when it is read, and the manifest says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import sdk
from sdk.compile.memory_plan import MemoryPlan, plan_memory
from sdk.errors import EdgeError, GraphError, InputError, ModelFormatError
from sdk.graph import Graph, Node, QuantParams, StateDecl, Tensor
from sdk.graph.ir import DTYPES
from sdk.ops.cost import graph_macs, parameter_bytes

FORMAT = "edge-bundle"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
ALIGN = 16
PLAN_PART = "memory_plan.json"
PARTS = ("graph.json", "weights.bin", PLAN_PART)
PARTS_BY_VERSION = {1: ("graph.json", "weights.bin"), 2: PARTS, 3: PARTS}
MAIN_ENTRY = "main"


def entry_parts(name: str, first: bool) -> tuple[str, str]:
    """The (graph, plan) part names of an entry: the top-level parts for the first entry."""
    if first:
        return "graph.json", PLAN_PART
    return f"entries/{name}/graph.json", f"entries/{name}/{PLAN_PART}"


def _encode_attr(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (list, tuple)):
        return [_encode_attr(e) for e in v]
    if isinstance(v, dict):
        return {k: _encode_attr(e) for k, e in v.items()}
    return v


def _decode_attr(v: Any) -> Any:
    if isinstance(v, dict) and "__ndarray__" in v:
        return np.asarray(v["__ndarray__"], dtype=v["dtype"]).reshape(v["shape"])
    if isinstance(v, list):
        return [_decode_attr(e) for e in v]
    if isinstance(v, dict):
        return {k: _decode_attr(e) for k, e in v.items()}
    return v


def _io_entry(graph: Graph, name: str, quant_of: str) -> dict[str, Any]:
    t = graph.tensor(name)
    q = graph.tensor(quant_of)
    return {"name": name, "shape": list(t.shape) if t.shape is not None else None,
            "dtype": t.dtype, "quant": q.quant.to_json() if q.quant else None,
            "quant_dtype": q.dtype}


def _boundary(graph: Graph) -> tuple[list[dict], list[dict]]:
    producers, consumers = graph.producers(), graph.consumers()
    ins = []
    for x in graph.inputs:
        users = [n for n in consumers.get(x, []) if n.op == "QuantizeLinear"]
        ins.append(_io_entry(graph, x, users[0].outputs[0] if users else x))
    outs = []
    for y in graph.outputs:
        p = producers.get(y)
        outs.append(_io_entry(graph, y, p.inputs[0] if p is not None and p.op == "DequantizeLinear" else y))
    return ins, outs


def _traced_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Every activation's shape from one run on zeros, with dynamic input dims set to 1."""
    from sdk.ops.interpreter import Interpreter

    feeds = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        if t.shape is None:
            raise GraphError(f"input {name!r} has no shape")
        feeds[name] = np.zeros([d if d > 0 else 1 for d in t.shape], t.dtype)
    wanted = [n for n, t in graph.tensors.items() if not t.is_constant
              and (n in graph.inputs or any(n in nd.outputs for nd in graph.nodes))]
    values = Interpreter(graph, fast=False).run(feeds, outputs=wanted)
    return {k: tuple(np.shape(v)) for k, v in values.items()}


def arena_plan(graph: Graph) -> tuple[MemoryPlan | None, str]:
    """The static arena plan of ``graph`` and a note: empty when every activation has a
    static shape; "dynamic dims planned as 1" when a traced run had to fill them in; the
    reason when no plan can be made (then the plan is None)."""
    def static(t: Tensor) -> bool:
        return t.shape is not None and all(d > 0 for d in t.shape)

    try:
        if all(static(t) for t in graph.tensors.values() if not t.is_constant):
            return plan_memory(graph), ""
        return (plan_memory(graph, shapes=_traced_shapes(graph)),
                "dynamic dims planned as 1 (shapes traced from one run)")
    except EdgeError as exc:
        return None, f"no static arena plan: {exc}"


def memory_summary(plan: MemoryPlan | None, note: str) -> dict[str, Any]:
    """The manifest's ``memory`` entry: the plan's totals (or why there is no plan)."""
    if plan is None:
        return {"planned": False, "note": note}
    return {"planned": True, "peak_arena_bytes": plan.arena_bytes,
            "weight_bytes": plan.weight_bytes, "attr_bytes": plan.attr_bytes,
            "flash_bytes": plan.flash_bytes, "unplanned_bytes": plan.unplanned_bytes,
            "alignment": plan.alignment, "note": note}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry_manifest(graph: Graph, plan: MemoryPlan | None, note: str) -> dict[str, Any]:
    """What the manifest says about one entry graph."""
    ins, outs = _boundary(graph)
    return {"name": "", "inputs": ins, "outputs": outs, "ops": [n.op for n in graph.nodes],
            "state": [d.to_json() for d in graph.state],
            "parameter_bytes": parameter_bytes(graph), "macs": _macs(graph),
            "memory": memory_summary(plan, note)}


def _macs(graph: Graph) -> int:
    """The graph's MACs; a node without known shapes counts 0 (the bundle still saves)."""
    try:
        return graph_macs(graph)
    except EdgeError:
        return 0


@dataclass
class Bundle:
    """A compiled integer model: its graph, the manifest that describes it, and its static
    arena plan (None when the graph's shapes do not allow one; ``manifest["memory"]`` says
    why).

    A bundle may hold several named entry graphs over one weight store (``entries``, in
    order; ``graph`` is the first, the *main* entry). Each entry has its own arena plan
    (``plans``). Build one with :meth:`from_graphs`."""

    graph: Graph
    manifest: dict[str, Any]
    memory_plan: MemoryPlan | None = None
    entries: dict[str, Graph] | None = None
    plans: dict[str, MemoryPlan | None] | None = None

    def __post_init__(self) -> None:
        # Bundle(graph, manifest) built by hand: plan it, unless the manifest says it cannot be
        if self.memory_plan is None and self.manifest.get("memory", {}).get("planned", True):
            self.memory_plan, note = arena_plan(self.graph)
            self.manifest = dict(self.manifest, memory=memory_summary(self.memory_plan, note))
        if self.entries is None:
            self.entries = {self.manifest.get("main_entry", MAIN_ENTRY): self.graph}
        first = next(iter(self.entries))
        if self.entries[first] is not self.graph:
            raise GraphError("Bundle: the main graph must be the first entry")
        self.plans = dict(self.plans or {})
        self.plans[first] = self.memory_plan
        for name, g in self.entries.items():
            if name not in self.plans:
                self.plans[name] = arena_plan(g)[0]

    @classmethod
    def from_graph(cls, graph: Graph) -> Bundle:
        return cls.from_graphs({MAIN_ENTRY: graph}, name=graph.name)

    @classmethod
    def from_graphs(cls, entries: Mapping[str, Graph], name: str | None = None) -> Bundle:
        """A bundle of several entry graphs (name -> Graph, the first is the main one) that
        share one weight store: constants of the same name and bytes are stored once."""
        if not entries:
            raise InputError("a bundle needs at least one entry graph")
        for k in entries:
            if not k or "/" in k or k != k.strip():
                raise InputError(f"entry name {k!r} must be a non-empty name without '/'")
        graphs = dict(entries)
        first = next(iter(graphs))
        graph = graphs[first]
        plans, listed = {}, []
        for k, g in graphs.items():
            plan, note = arena_plan(g)
            plans[k] = plan
            listed.append(dict(_entry_manifest(g, plan, note), name=k))
        main = listed[0]
        quant_meta = {k: graph.metadata[k] for k in
                      ("observer", "activation_bits", "per_channel", "mixed_precision", "source")
                      if k in graph.metadata}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "sdk_version": sdk.__version__, "model_name": name or graph.name,
            "inputs": main["inputs"], "outputs": main["outputs"], "ops": main["ops"],
            "parameter_bytes": main["parameter_bytes"], "macs": main["macs"],
            "quantization": quant_meta, "memory": main["memory"], "main_entry": first,
            "entries": listed, "parts": {},
        }
        return cls(graph, manifest, plans[first], graphs, plans)

    # -- entries --------------------------------------------------------------------------
    @property
    def entry_names(self) -> list[str]:
        return list(self.entries)

    def entry(self, name: str | None = None) -> Graph:
        """The entry graph ``name`` (the main one when None); InputError lists the entries."""
        if name is None:
            return self.graph
        try:
            return self.entries[name]
        except KeyError:
            raise InputError(f"bundle {self.name!r} has no entry {name!r}; its entries are "
                             f"{self.entry_names}") from None

    # -- properties -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest["model_name"]

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.manifest["outputs"]

    # -- serialization --------------------------------------------------------------------
    def _graph_doc(self, graph: Graph, weights: io.BytesIO, stored: dict) -> dict[str, Any]:
        tensors = []
        for t in graph.tensors.values():
            entry: dict[str, Any] = {"name": t.name, "dtype": t.dtype,
                                     "shape": list(t.shape) if t.shape is not None else None,
                                     "quant": t.quant.to_json() if t.quant else None}
            if t.data is not None:
                raw = np.ascontiguousarray(t.data).astype(np.dtype(t.dtype).newbyteorder("<")).tobytes()
                key = (t.name, t.dtype, hashlib.sha256(raw).digest())
                if key not in stored:  # shared by name across entries: stored once
                    weights.write(b"\0" * ((-weights.tell()) % ALIGN))
                    stored[key] = weights.tell()
                    weights.write(raw)
                entry["data"] = {"offset": stored[key], "nbytes": len(raw)}
            tensors.append(entry)
        return {"name": graph.name, "inputs": graph.inputs,
                "outputs": graph.outputs, "tensors": tensors,
                "nodes": [{"op": n.op, "name": n.name, "inputs": n.inputs,
                           "outputs": n.outputs, "attrs": _encode_attr(n.attrs)}
                          for n in graph.nodes],
                "metadata": _encode_attr(graph.metadata),
                "state": [d.to_json() for d in graph.state]}

    def to_bytes(self) -> bytes:
        listed = {e["name"]: e for e in self.manifest.get("entries", [])}
        for k, g in self.entries.items():
            plan = self.plans.get(k)
            if plan is not None and plan.order != [n.name for n in g.topological_order()]:
                plan, note = arena_plan(g)  # graph edited since planning
                self.plans[k] = plan
                if g is self.graph:
                    self.memory_plan = plan
                    self.manifest["memory"] = memory_summary(plan, note)
                if k in listed:
                    listed[k]["memory"] = memory_summary(plan, note)
        weights = io.BytesIO()
        stored: dict = {}
        parts: dict[str, bytes] = {}
        entries_doc = []
        for idx, (k, g) in enumerate(self.entries.items()):
            gpart, ppart = entry_parts(k, idx == 0)
            plan = self.plans.get(k)
            if plan is not None:
                plan_doc = plan.to_json()
            else:
                note = (self.manifest.get("memory", {}) if idx == 0
                        else listed.get(k, {}).get("memory", {})).get("note", "")
                plan_doc = {"planned": False, "note": note}
            parts[gpart] = json.dumps(self._graph_doc(g, weights, stored)).encode()
            parts[ppart] = json.dumps(plan_doc).encode()
            e = listed.get(k)
            if e is None:
                e = dict(_entry_manifest(g, plan, "" if plan is not None
                                         else plan_doc.get("note", "")), name=k)
            entries_doc.append(dict(e, name=k, graph_part=gpart, plan_part=ppart))
        parts["weights.bin"] = weights.getvalue()
        order = ["graph.json", "weights.bin", PLAN_PART]
        parts = {n: parts[n] for n in order + [n for n in parts if n not in order]}
        manifest = dict(self.manifest, format_version=FORMAT_VERSION,
                        main_entry=next(iter(self.entries)), entries=entries_doc,
                        weight_store_bytes=len(parts["weights.bin"]),
                        parts={k: _sha256(v) for k, v in parts.items()})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
            for k, v in parts.items():
                z.writestr(k, v)
        self.manifest = manifest
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path

    # -- execution ------------------------------------------------------------------------
    def _specs(self, entry: str | None) -> tuple[str, list[dict[str, Any]]]:
        if entry is None or entry == next(iter(self.entries)):
            return self.name, self.inputs
        listed = {e["name"]: e for e in self.manifest.get("entries", [])}
        if entry in listed:
            return entry, listed[entry]["inputs"]
        return entry, _boundary(self.entry(entry))[0]

    def check_feeds(self, feeds: Mapping[str, np.ndarray], entry: str | None = None
                    ) -> dict[str, np.ndarray]:
        """Feeds cast to each input's dtype (float32, or int64 ids); InputError names a missing, unknown or misshaped input."""
        model, specs = self._specs(entry)
        names = [i["name"] for i in specs]
        unknown = [k for k in feeds if k not in names]
        missing = [k for k in names if k not in feeds]
        if unknown or missing:
            raise InputError(f"model {model!r} takes inputs {names}; missing {missing}, "
                             f"unknown {unknown}")
        out = {}
        for spec in specs:
            a = np.asarray(feeds[spec["name"]])
            if a.dtype.kind not in "fiu":
                raise InputError(f"input {spec['name']!r} has dtype {a.dtype}; give numbers")
            shape = spec["shape"]
            if shape is not None and (len(shape) != a.ndim or any(
                    d > 0 and d != s for d, s in zip(shape, a.shape))):
                raise InputError(f"input {spec['name']!r} has shape {list(a.shape)}; the model "
                                 f"expects {shape} (-1 = any)")
            out[spec["name"]] = a.astype(spec["dtype"])
        return out

    def executable(self, fast: bool = True, entry: str | None = None):
        from sdk.ops.interpreter import Interpreter

        graph = self.entry(entry)
        key = ("_exe_fast" if fast else "_exe_ref") + ("" if entry is None else f"@{entry}")
        if not hasattr(self, key):
            setattr(self, key, Interpreter(graph, fast=fast))
        return getattr(self, key)

    def run(self, feeds: Mapping[str, np.ndarray], fast: bool = True,
            entry: str | None = None) -> dict[str, np.ndarray]:
        """Run the integer graph (``entry``, default the main one): float inputs in,
        dequantized float outputs out."""
        return self.executable(fast, entry).run(self.check_feeds(feeds, entry))

    def run_quantized(self, feeds: Mapping[str, np.ndarray], fast: bool = True,
                      entry: str | None = None) -> dict[str, np.ndarray]:
        """Like :meth:`run` but returns each output's integer tensor (before DequantizeLinear)."""
        graph = self.entry(entry)
        q = graph.metadata.get("quantized_outputs", {})
        names = [q.get(o, o) for o in graph.outputs]
        res = self.executable(fast, entry).run(self.check_feeds(feeds, entry), outputs=names)
        return {o: res[n] for o, n in zip(graph.outputs, names)}


# -- loading: limits and checks made before anything is read or allocated -----------------
MAX_MANIFEST_BYTES = 16 << 20       #: manifest.json
MAX_JSON_PART_BYTES = 512 << 20     #: each graph / plan part
MAX_BUNDLE_BYTES = 8 << 30          #: all parts together, uncompressed
MAX_TENSOR_BYTES = 4 << 30          #: one tensor (constant or activation)
MAX_DIM = (1 << 31) - 1             #: one dimension
MAX_ENTRIES = 1024
_ARRAY_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                 "uint64", "float16", "float32", "float64")
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, struct.error,
               NotImplementedError, RuntimeError, OverflowError, UnicodeDecodeError,
               lzma.LZMAError, MemoryError)
_JSON_ERRORS = (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError)


def _unsafe_name(name: str) -> bool:
    """A zip entry name that could escape a folder it is extracted to: absolute, a '..' or
    empty component, a backslash, a drive letter or a control character."""
    parts = name.split("/")
    return (not name or name.startswith("/") or "\\" in name or ".." in parts or "" in parts
            or "." in parts or ":" in parts[0] or any(ord(c) < 32 for c in name))


def _valid_entry_name(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 255 and name == name.strip()
            and "/" not in name and not _unsafe_name(name))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Fields:
    """Typed field access for one JSON part: a wrong type is a one-line ModelFormatError
    naming the bundle, the part and the field."""

    def __init__(self, where: str, part: str) -> None:
        self.where, self.part = where, part

    def fail(self, field: str, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: {self.part} field {field} {what}; recompile "
                                "the model")

    def dict(self, v: Any, field: str) -> dict:
        if not isinstance(v, dict):
            raise self.fail(field, f"is {type(v).__name__}, not an object")
        return v

    def get(self, d: dict, key: str, types: type | tuple, field: str, default: Any = ...,
            ) -> Any:
        if key not in d:
            if default is ...:
                raise self.fail(f"{field}.{key}" if field else key, "is missing")
            return default
        v = d[key]
        name = f"{field}.{key}" if field else key
        if types is int:
            if not _is_int(v):
                raise self.fail(name, f"is {type(v).__name__}, not an integer")
        elif not isinstance(v, types) or (isinstance(v, bool) and bool not in (
                types if isinstance(types, tuple) else (types,))):
            want = types.__name__ if isinstance(types, type) else "/".join(
                t.__name__ for t in types)
            raise self.fail(name, f"is {type(v).__name__}, not {want}")
        return v

    def strs(self, v: Any, field: str) -> list[str]:
        if not isinstance(v, list) or not all(isinstance(e, str) for e in v):
            raise self.fail(field, "is not a list of names")
        return list(v)

    def shape(self, v: Any, field: str, static: bool = False) -> tuple[int, ...] | None:
        """None or a list of integer dims (-1 = dynamic unless ``static``), its element
        count under the tensor limit."""
        if v is None and not static:
            return None
        if not isinstance(v, list) or len(v) > 32 or not all(_is_int(d) for d in v):
            raise self.fail(field, "is not a shape (a list of at most 32 integers)")
        lo = 0 if static else -1
        if any(d < lo or d > MAX_DIM for d in v):
            raise self.fail(field, f"{v} has a dimension outside [{lo}, {MAX_DIM}]")
        count = 1
        for d in v:
            count *= max(d, 1)
        if count * 8 > MAX_TENSOR_BYTES:
            raise self.fail(field, f"{v} holds {count:,} elements, over the "
                            f"{MAX_TENSOR_BYTES:,}-byte tensor limit")
        return tuple(v)


def _decode_array_attr(v: dict, f: _Fields, field: str) -> np.ndarray:
    dtype = v.get("dtype")
    if dtype not in _ARRAY_DTYPES:
        raise f.fail(f"{field}.dtype", f"{dtype!r} is not a numeric dtype")
    shape = f.shape(v.get("shape"), f"{field}.shape", static=True)
    try:
        arr = np.asarray(v["__ndarray__"], dtype=dtype)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise f.fail(field, f"is not a {dtype} array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if arr.dtype == object or arr.size != int(np.prod(shape, dtype=object) if shape else 1):
        raise f.fail(field, f"holds {arr.size} values, not the shape {list(shape)}")
    return arr.reshape(shape)


def _decode_attr_checked(v: Any, f: _Fields, field: str, depth: int = 0) -> Any:
    if depth > 64:
        raise f.fail(field, "is nested too deeply")
    if isinstance(v, dict) and "__ndarray__" in v:
        return _decode_array_attr(v, f, field)
    if isinstance(v, list):
        return [_decode_attr_checked(e, f, f"{field}[{i}]", depth + 1) for i, e in enumerate(v)]
    if isinstance(v, dict):
        return {k: _decode_attr_checked(e, f, f"{field}.{k}", depth + 1) for k, e in v.items()}
    return v


def _read_part(z: zipfile.ZipFile, name: str, where: str) -> bytes:
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ModelFormatError(f"{where} has no {name!r} part; it is not a complete .edge "
                               "bundle: recompile the model") from None
    try:
        data = z.read(info)
    except _ZIP_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFormatError(f"{where}: part {name!r} is corrupted ({msg}); "
                               "recompile the model") from None
    if len(data) != info.file_size:
        raise ModelFormatError(f"{where}: part {name!r} holds {len(data):,} bytes, not the "
                               f"{info.file_size:,} its zip entry says; recompile the model")
    return data


def _json_part(data: bytes, where: str, part: str) -> Any:
    try:
        return json.loads(data)
    except _JSON_ERRORS:
        raise ModelFormatError(f"{where}: {part} is not valid JSON; recompile the model"
                               ) from None


def _quant(v: Any, f: _Fields, field: str) -> QuantParams | None:
    if v is None:
        return None
    try:
        return QuantParams.from_json(v)
    except GraphError as exc:
        raise f.fail(field, str(exc)) from None


def _graph_from_doc(doc: Any, weights: bytes, where: str, part: str = "graph.json") -> Graph:
    """The graph of one graph part, every field checked for type and size before any array
    is made (a constant's bytes must lie inside weights.bin and match its shape)."""
    f = _Fields(where, part)
    doc = f.dict(doc, "(top level)")
    g = Graph(f.get(doc, "name", str, ""))
    tensors = f.get(doc, "tensors", list, "")
    for i, e in enumerate(tensors):
        e = f.dict(e, f"tensors[{i}]")
        tname = f.get(e, "name", str, f"tensors[{i}]")
        field = f"tensors[{tname!r}]"
        dtype = f.get(e, "dtype", str, field)
        if dtype not in DTYPES:
            raise f.fail(f"{field}.dtype", f"{dtype!r} is not one of {DTYPES}")
        shape = f.shape(e.get("shape"), f"{field}.shape")
        data = None
        if e.get("data") is not None:
            d = f.dict(e["data"], f"{field}.data")
            off = f.get(d, "offset", int, f"{field}.data")
            nb = f.get(d, "nbytes", int, f"{field}.data")
            if shape is None or any(s < 0 for s in shape):
                raise f.fail(f"{field}.shape", "of a constant must be static")
            item = np.dtype(dtype).itemsize
            count = 1
            for s in shape:
                count *= s
            if nb != count * item:
                raise f.fail(f"{field}.data.nbytes", f"is {nb:,}, but shape {list(shape)} of "
                             f"{dtype} takes {count * item:,} bytes")
            if off < 0 or off + nb > len(weights):
                raise ModelFormatError(f"{where}: tensor {tname!r} lies outside weights.bin "
                                       f"({off:,}+{nb:,} of {len(weights):,} bytes); "
                                       "recompile the model")
            dt = np.dtype(dtype).newbyteorder("<")
            data = np.frombuffer(weights, dt, count=count, offset=off)
            data = data.astype(dtype).reshape(shape)
        quant = _quant(e.get("quant"), f, f"{field}.quant")
        if quant is not None and quant.per_axis and shape is not None and not (
                -len(shape) <= quant.axis < len(shape)):
            raise f.fail(f"{field}.quant.axis", f"{quant.axis} is outside shape {list(shape)}")
        try:
            g.add_tensor(Tensor(tname, dtype, shape, quant, data))
        except GraphError as exc:
            raise f.fail(field, str(exc)) from None
    for i, n in enumerate(f.get(doc, "nodes", list, "")):
        n = f.dict(n, f"nodes[{i}]")
        op = f.get(n, "op", str, f"nodes[{i}]")
        name = f.get(n, "name", str, f"nodes[{i}]")
        field = f"nodes[{name!r}]"
        ins = f.strs(f.get(n, "inputs", list, field), f"{field}.inputs")
        outs = f.strs(f.get(n, "outputs", list, field), f"{field}.outputs")
        attrs = f.dict(f.get(n, "attrs", dict, field, {}), f"{field}.attrs")
        g.nodes.append(Node(op, ins, outs, _decode_attr_checked(attrs, f, f"{field}.attrs"),
                            name))
    g.inputs = f.strs(f.get(doc, "inputs", list, ""), "inputs")
    g.outputs = f.strs(f.get(doc, "outputs", list, ""), "outputs")
    g.metadata = _decode_attr_checked(f.get(doc, "metadata", dict, "", {}), f, "metadata")
    for i, d in enumerate(f.get(doc, "state", list, "", [])):
        try:
            g.declare_state(StateDecl.from_json(d))
        except GraphError as exc:
            raise f.fail(f"state[{i}]", str(exc)) from None
    return g


_NODE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError,
                ZeroDivisionError, RecursionError, MemoryError)


def _check_nodes(graph: Graph, where: str, part: str) -> None:
    """Every node's attributes through its op's schema (``OpDef.prepare``) and its cost
    formula, so a mutated attribute is a load error naming the node rather than an exception
    from deep inside a run or `edge inspect`."""
    from sdk.ops.cost import node_macs
    from sdk.ops.schema import opdef

    for n in graph.nodes:
        d = opdef(n.op)
        try:
            if d is not None:
                d.prepare(n.attrs)
            node_macs(graph, n)
        except (EdgeError, *_NODE_ERRORS) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelFormatError(f"{where}: {part} node {n.name!r} ({n.op}) is malformed "
                                   f"({msg}); recompile the model") from None


def _check_io(v: Any, f: _Fields, field: str) -> None:
    if not isinstance(v, list):
        raise f.fail(field, "is not a list")
    for i, e in enumerate(v):
        e = f.dict(e, f"{field}[{i}]")
        f.get(e, "name", str, f"{field}[{i}]")
        f.shape(f.get(e, "shape", (list, type(None)), f"{field}[{i}]"), f"{field}[{i}].shape")
        dtype = f.get(e, "dtype", str, f"{field}[{i}]")
        if dtype not in DTYPES:
            raise f.fail(f"{field}[{i}].dtype", f"{dtype!r} is not one of {DTYPES}")
        q = e.get("quant")
        if q is not None:
            _quant(q, f, f"{field}[{i}].quant")
        if not isinstance(e.get("quant_dtype", ""), str):
            raise f.fail(f"{field}[{i}].quant_dtype", "is not a dtype name")


def _check_manifest(m: dict, version: int, where: str) -> None:
    """The manifest fields the loader, the runtime and `edge inspect` read, type-checked."""
    f = _Fields(where, "manifest.json")
    f.get(m, "model_name", str, "")
    parts = f.get(m, "parts", dict, "", {})
    if not all(isinstance(v, str) for v in parts.values()):
        raise f.fail("parts", "maps a part to something that is not a SHA-256 string")
    if "weight_store_bytes" in m and f.get(m, "weight_store_bytes", int, "") < 0:
        raise f.fail("weight_store_bytes", "is negative")
    for key in ("macs", "parameter_bytes"):
        f.get(m, key, int, "", 0)
    f.get(m, "memory", dict, "", {})
    f.get(m, "quantization", dict, "", {})
    f.get(m, "ops", list, "", [])
    _check_io(f.get(m, "inputs", list, ""), f, "inputs")
    _check_io(f.get(m, "outputs", list, ""), f, "outputs")
    if version < 3:
        return
    listed = m.get("entries")
    if not isinstance(listed, list) or not listed:
        raise ModelFormatError(f"{where}: the manifest lists no entries; recompile the model")
    if len(listed) > MAX_ENTRIES:
        raise f.fail("entries", f"lists {len(listed)} entries, over {MAX_ENTRIES}")
    seen = set()
    for i, e in enumerate(listed):
        e = f.dict(e, f"entries[{i}]")
        name = f.get(e, "name", str, f"entries[{i}]")
        if not _valid_entry_name(name) or name in seen:
            raise f.fail(f"entries[{i}].name", f"{name!r} is not a unique plain name (no '/', "
                         "'..' or backslash)")
        seen.add(name)
        _check_io(f.get(e, "inputs", list, f"entries[{name!r}]"), f,
                  f"entries[{name!r}].inputs")
        _check_io(f.get(e, "outputs", list, f"entries[{name!r}]"), f,
                  f"entries[{name!r}].outputs")
        for key in ("macs", "parameter_bytes"):
            f.get(e, key, int, f"entries[{name!r}]")
        f.get(e, "memory", (dict, type(None)), f"entries[{name!r}]", None)
        f.get(e, "ops", list, f"entries[{name!r}]", [])
        for j, d in enumerate(f.get(e, "state", list, f"entries[{name!r}]", [])):
            d = f.dict(d, f"entries[{name!r}].state[{j}]")
            for key in ("input", "output", "kind"):
                f.get(d, key, str, f"entries[{name!r}].state[{j}]")
    if "exits" in m:  # early exit (sdk.exits): rule, stage entries, thresholds
        from sdk.exits.plan import check_manifest_exits

        check_manifest_exits(m["exits"], seen, f.fail)


def _check_directory(z: zipfile.ZipFile, where: str) -> dict[str, zipfile.ZipInfo]:
    """The zip directory, checked before any part is read: safe, unique names, plain
    (stored or deflated, unencrypted) entries, sizes under the limits."""
    infos: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in z.infolist():
        name = info.filename
        if _unsafe_name(name):
            raise ModelFormatError(f"{where}: part {name!r} has an unsafe name (absolute, "
                                   "'..', backslash or empty component); refused")
        if name in infos:
            raise ModelFormatError(f"{where}: part {name!r} appears twice; refused")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED,
                                                              zipfile.ZIP_DEFLATED):
            raise ModelFormatError(f"{where}: part {name!r} is encrypted or compressed with "
                                   f"method {info.compress_type}; recompile the model")
        total += info.file_size
        infos[name] = info
    if total > MAX_BUNDLE_BYTES:
        raise ModelFormatError(f"{where}: the parts hold {total:,} bytes, over the "
                               f"{MAX_BUNDLE_BYTES:,}-byte bundle limit; refused")
    return infos


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and verify a ``.edge`` file: the zip directory (only the parts this format
    version has, safe names, each part's size against the manifest and the limits) before
    anything is read, then the format version, each part's SHA-256 and every JSON field's
    type. Any problem is a one-line ModelFormatError naming the part."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ModelFormatError(f"{where}: no such bundle file; check the path")
    try:
        z = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ModelFormatError(f"{where} is not a readable .edge bundle (truncated or not a "
                               f"bundle: {exc}); recompile it with `edge compile`") from None
    with z:
        infos = _check_directory(z, where)
        if "manifest.json" in infos and infos["manifest.json"].file_size > MAX_MANIFEST_BYTES:
            raise ModelFormatError(f"{where}: part 'manifest.json' is "
                                   f"{infos['manifest.json'].file_size:,} bytes, over the "
                                   f"{MAX_MANIFEST_BYTES:,}-byte limit; refused")
        manifest = _json_part(_read_part(z, "manifest.json", where), where, "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ModelFormatError(f"{where} is not an {FORMAT} file; recompile it")
        version = manifest.get("format_version")
        if not _is_int(version) or version not in READABLE_VERSIONS:
            raise ModelFormatError(f"{where} has bundle format version {version!r}; this SDK "
                                   f"({sdk.__version__}) reads versions "
                                   f"{', '.join(map(str, READABLE_VERSIONS))}: "
                                   "recompile the model with this SDK")
        _check_manifest(manifest, version, where)
        listed = manifest.get("entries") if version >= 3 else None
        names = list(PARTS_BY_VERSION[version])
        for idx, e in enumerate(listed or []):
            names += [p for p in entry_parts(e["name"], idx == 0) if p not in names]
        unknown = [n for n in infos if n not in names and n != "manifest.json"]
        if unknown:
            raise ModelFormatError(f"{where}: unknown part {unknown[0]!r} (a format-{version} "
                                   f"bundle holds only manifest.json, {', '.join(names)}); "
                                   "refused")
        declared = {}  # the manifest states the weight store's size (format 3)
        if version >= 3 and "weight_store_bytes" in manifest:
            declared["weights.bin"] = manifest["weight_store_bytes"]
        for name in names:
            info = infos.get(name)
            if info is None:
                raise ModelFormatError(f"{where} has no {name!r} part; it is not a complete "
                                       ".edge bundle: recompile the model")
            want = declared.get(name)
            if want is not None and info.file_size != want:
                raise ModelFormatError(f"{where}: checksum mismatch in part {name!r}: it is "
                                       f"{info.file_size:,} bytes, the manifest says {want:,} "
                                       "(the file is corrupted or was modified; refused "
                                       "before reading it): recompile the model")
            if name != "weights.bin" and info.file_size > MAX_JSON_PART_BYTES:
                raise ModelFormatError(f"{where}: part {name!r} is {info.file_size:,} bytes, "
                                       f"over the {MAX_JSON_PART_BYTES:,}-byte limit; refused")
        hashes = manifest.get("parts", {})
        parts = {}
        for name in names:
            data = _read_part(z, name, where)
            if hashes.get(name) != _sha256(data):
                raise ModelFormatError(f"{where}: checksum mismatch in part {name!r} (the file "
                                       "is corrupted or was modified); recompile the model")
            parts[name] = data
    entry_names = [e["name"] for e in listed] if listed else [MAIN_ENTRY]
    graphs: dict[str, Graph] = {}
    plans: dict[str, MemoryPlan | None] = {}
    for idx, k in enumerate(entry_names):
        gpart, ppart = entry_parts(k, idx == 0)
        doc = _json_part(parts[gpart], where, gpart)
        graph = _graph_from_doc(doc, parts["weights.bin"], where, gpart)
        try:
            graph.validate()
        except EdgeError as exc:
            raise ModelFormatError(f"{where}: {gpart} is malformed ({exc}); recompile the "
                                   "model") from None
        _check_nodes(graph, where, gpart)
        graphs[k] = graph
        if version == 1:  # format 1 carried no plan: make it now, and say so
            plan, note = arena_plan(graph)
            note = "; ".join(x for x in ("computed on load (format-1 bundle)", note) if x)
            manifest["memory"] = memory_summary(plan, note)
        else:
            plan = _plan_from_part(parts[ppart], graph, where, ppart)
        plans[k] = plan
    if version < 3:  # one graph: the single entry "main"
        manifest["entries"] = [dict(_entry_manifest(graphs[MAIN_ENTRY], plans[MAIN_ENTRY],
                                                    manifest.get("memory", {}).get("note", "")),
                                    name=MAIN_ENTRY, memory=manifest.get("memory"))]
        manifest["main_entry"] = MAIN_ENTRY
    first = entry_names[0]
    return Bundle(graphs[first], manifest, plans[first], graphs, plans)


def _plan_from_part(data: bytes, graph: Graph, where: str, part: str = PLAN_PART
                    ) -> MemoryPlan | None:
    """The stored arena plan, checked to belong to ``graph`` (same nodes, every activation
    placed)."""
    try:
        doc = json.loads(data)
        if isinstance(doc, dict) and doc.get("planned") is False:
            return None
        plan = MemoryPlan.from_json(doc)
        plan.check()
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
            AttributeError, OverflowError, IndexError, ZeroDivisionError, RecursionError,
            GraphError) as exc:
        raise ModelFormatError(f"{where}: {part} is malformed ({exc}); recompile the "
                               "model") from None
    nodes = [n.name for n in graph.topological_order()]
    if plan.order != nodes:
        raise ModelFormatError(f"{where}: the arena plan in {part} orders "
                               f"{len(plan.order)} nodes that are not graph.json's "
                               f"{len(nodes)}; recompile the model")
    return plan
