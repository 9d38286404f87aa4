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
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import sdk
from sdk.ops.cost import graph_macs, parameter_bytes
from sdk.compile.memory_plan import MemoryPlan, plan_memory
from sdk.errors import EdgeError, GraphError, InputError, ModelFormatError
from sdk.graph import Graph, Node, QuantParams, StateDecl, Tensor

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


def _read_part(z: zipfile.ZipFile, name: str, where: str) -> bytes:
    try:
        return z.read(name)
    except KeyError:
        raise ModelFormatError(f"{where} has no {name!r} part; it is not a complete .edge "
                               "bundle: recompile the model") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ModelFormatError(f"{where}: part {name!r} is corrupted ({exc}); "
                               "recompile the model") from None


def _graph_from_doc(doc: dict[str, Any], weights: bytes, where: str) -> Graph:
    g = Graph(doc["name"])
    for e in doc["tensors"]:
        data = None
        if e.get("data") is not None:
            off, nb = int(e["data"]["offset"]), int(e["data"]["nbytes"])
            if off + nb > len(weights):
                raise ModelFormatError(f"{where}: tensor {e['name']!r} lies outside weights.bin; "
                                       "recompile the model")
            dt = np.dtype(e["dtype"]).newbyteorder("<")
            data = np.frombuffer(weights, dt, count=nb // dt.itemsize, offset=off)
            data = data.astype(e["dtype"]).reshape(e["shape"])
        quant = QuantParams.from_json(e["quant"]) if e.get("quant") else None
        g.add_tensor(Tensor(e["name"], e["dtype"], tuple(e["shape"]) if e["shape"] is not None
                            else None, quant, data))
    for n in doc["nodes"]:
        g.nodes.append(Node(n["op"], n["inputs"], n["outputs"], _decode_attr(n["attrs"]), n["name"]))
    g.inputs, g.outputs = list(doc["inputs"]), list(doc["outputs"])
    g.metadata = _decode_attr(doc.get("metadata", {}))
    for d in doc.get("state", []):
        g.declare_state(StateDecl.from_json(d))
    return g


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read and verify a ``.edge`` file (zip structure, format version, SHA-256 of each part)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ModelFormatError(f"{where}: no such bundle file; check the path")
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFormatError(f"{where} is not a readable .edge bundle (truncated or not a "
                               f"bundle: {exc}); recompile it with `edge compile`") from None
    with z:
        try:
            manifest = json.loads(_read_part(z, "manifest.json", where))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelFormatError(f"{where}: manifest.json is not valid JSON; recompile the "
                                   "model") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ModelFormatError(f"{where} is not an {FORMAT} file; recompile it")
        version = manifest.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ModelFormatError(f"{where} has bundle format version {version}; this SDK "
                                   f"({sdk.__version__}) reads versions "
                                   f"{', '.join(map(str, READABLE_VERSIONS))}: "
                                   "recompile the model with this SDK")
        listed = manifest.get("entries") if version >= 3 else None
        if version >= 3 and (not isinstance(listed, list) or not listed or not all(
                isinstance(e, dict) and isinstance(e.get("name"), str) for e in listed)):
            raise ModelFormatError(f"{where}: the manifest lists no entries; recompile the "
                                   "model")
        names = list(PARTS_BY_VERSION[version])
        for idx, e in enumerate(listed or []):
            names += [p for p in entry_parts(e["name"], idx == 0) if p not in names]
        parts = {}
        for name in names:
            data = _read_part(z, name, where)
            want = manifest.get("parts", {}).get(name)
            if want != _sha256(data):
                raise ModelFormatError(f"{where}: checksum mismatch in part {name!r} (the file "
                                       "is corrupted or was modified); recompile the model")
            parts[name] = data
    entry_names = [e["name"] for e in listed] if listed else [MAIN_ENTRY]
    graphs: dict[str, Graph] = {}
    plans: dict[str, MemoryPlan | None] = {}
    for idx, k in enumerate(entry_names):
        gpart, ppart = entry_parts(k, idx == 0)
        try:
            doc = json.loads(parts[gpart])
            graph = _graph_from_doc(doc, parts["weights.bin"], where)
            graph.validate()
        except (KeyError, TypeError, ValueError, EdgeError) as exc:
            raise ModelFormatError(f"{where}: {gpart} is malformed ({exc}); recompile the "
                                   "model") from None
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
            GraphError) as exc:
        raise ModelFormatError(f"{where}: {part} is malformed ({exc}); recompile the "
                               "model") from None
    nodes = [n.name for n in graph.topological_order()]
    if plan.order != nodes:
        raise ModelFormatError(f"{where}: the arena plan in {part} orders "
                               f"{len(plan.order)} nodes that are not graph.json's "
                               f"{len(nodes)}; recompile the model")
    return plan
