"""The ``.edge`` bundle: one zip file holding a compiled integer graph.

Parts (zip entries):

* ``manifest.json`` — format name and version, model name, inputs/outputs with shapes and
  quantization, the op list, parameter bytes, MACs, and the SHA-256 of every other part;
* ``graph.json`` — tensors (dtype, shape, quantization, where a constant's bytes live) and
  nodes (op, inputs, outputs, integer attributes);
* ``weights.bin`` — every constant's raw little-endian bytes, each at a 16-byte aligned offset;
* ``memory_plan.json`` (format 2) — the static arena plan of :mod:`sdk.compile.memory_plan`
  (every activation's offset and lifetime; the microcontroller firmware uses it as-is). The
  manifest's ``memory`` entry repeats its totals: peak arena, weight and flash bytes.

Loading checks the zip, the format version and each part's SHA-256; any mismatch is a
one-line ModelFormatError that says to recompile. Format-1 bundles (no plan part) still load:
their plan is computed when they are read, and the manifest says so.
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
from sdk.compile.cost import graph_macs, parameter_bytes
from sdk.compile.memory_plan import MemoryPlan, plan_memory
from sdk.errors import EdgeError, GraphError, InputError, ModelFormatError
from sdk.graph import Graph, Node, QuantParams, Tensor

FORMAT = "edge-bundle"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
ALIGN = 16
PLAN_PART = "memory_plan.json"
PARTS = ("graph.json", "weights.bin", PLAN_PART)
PARTS_BY_VERSION = {1: ("graph.json", "weights.bin"), 2: PARTS}


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


@dataclass
class Bundle:
    """A compiled integer model: its graph, the manifest that describes it, and its static
    arena plan (None when the graph's shapes do not allow one; ``manifest["memory"]`` says
    why)."""

    graph: Graph
    manifest: dict[str, Any]
    memory_plan: MemoryPlan | None = None

    def __post_init__(self) -> None:
        # Bundle(graph, manifest) built by hand: plan it, unless the manifest says it cannot be
        if self.memory_plan is None and self.manifest.get("memory", {}).get("planned", True):
            self.memory_plan, note = arena_plan(self.graph)
            self.manifest = dict(self.manifest, memory=memory_summary(self.memory_plan, note))

    @classmethod
    def from_graph(cls, graph: Graph) -> Bundle:
        plan, note = arena_plan(graph)
        ins, outs = _boundary(graph)
        quant_meta = {k: graph.metadata[k] for k in
                      ("observer", "activation_bits", "per_channel", "mixed_precision", "source")
                      if k in graph.metadata}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "sdk_version": sdk.__version__, "model_name": graph.name,
            "inputs": ins, "outputs": outs,
            "ops": [n.op for n in graph.nodes],
            "parameter_bytes": parameter_bytes(graph), "macs": graph_macs(graph),
            "quantization": quant_meta, "memory": memory_summary(plan, note), "parts": {},
        }
        return cls(graph, manifest, plan)

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
    def to_bytes(self) -> bytes:
        if self.memory_plan is not None and self.memory_plan.order != [
                n.name for n in self.graph.topological_order()]:  # graph edited since planning
            self.memory_plan, note = arena_plan(self.graph)
            self.manifest["memory"] = memory_summary(self.memory_plan, note)
        weights = io.BytesIO()
        tensors = []
        for t in self.graph.tensors.values():
            entry: dict[str, Any] = {"name": t.name, "dtype": t.dtype,
                                     "shape": list(t.shape) if t.shape is not None else None,
                                     "quant": t.quant.to_json() if t.quant else None}
            if t.data is not None:
                pad = (-weights.tell()) % ALIGN
                weights.write(b"\0" * pad)
                raw = np.ascontiguousarray(t.data).astype(np.dtype(t.dtype).newbyteorder("<")).tobytes()
                entry["data"] = {"offset": weights.tell(), "nbytes": len(raw)}
                weights.write(raw)
            tensors.append(entry)
        graph_doc = {"name": self.graph.name, "inputs": self.graph.inputs,
                     "outputs": self.graph.outputs, "tensors": tensors,
                     "nodes": [{"op": n.op, "name": n.name, "inputs": n.inputs,
                                "outputs": n.outputs, "attrs": _encode_attr(n.attrs)}
                               for n in self.graph.nodes],
                     "metadata": _encode_attr(self.graph.metadata)}
        plan_doc = (self.memory_plan.to_json() if self.memory_plan is not None
                    else {"planned": False, "note": self.manifest.get("memory", {}).get("note", "")})
        parts = {"graph.json": json.dumps(graph_doc).encode(), "weights.bin": weights.getvalue(),
                 PLAN_PART: json.dumps(plan_doc).encode()}
        manifest = dict(self.manifest, format_version=FORMAT_VERSION,
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
    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds cast to each input's dtype (float32, or int64 ids); InputError names a missing, unknown or misshaped input."""
        names = [i["name"] for i in self.inputs]
        unknown = [k for k in feeds if k not in names]
        missing = [k for k in names if k not in feeds]
        if unknown or missing:
            raise InputError(f"model {self.name!r} takes inputs {names}; missing {missing}, "
                             f"unknown {unknown}")
        out = {}
        for spec in self.inputs:
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

    def executable(self, fast: bool = True):
        from sdk.ops.interpreter import Interpreter

        key = "_exe_fast" if fast else "_exe_ref"
        if not hasattr(self, key):
            setattr(self, key, Interpreter(self.graph, fast=fast))
        return getattr(self, key)

    def run(self, feeds: Mapping[str, np.ndarray], fast: bool = True) -> dict[str, np.ndarray]:
        """Run the integer graph: float inputs in, dequantized float outputs out."""
        return self.executable(fast).run(self.check_feeds(feeds))

    def run_quantized(self, feeds: Mapping[str, np.ndarray], fast: bool = True) -> dict[str, np.ndarray]:
        """Like :meth:`run` but returns each output's integer tensor (before DequantizeLinear)."""
        q = self.graph.metadata.get("quantized_outputs", {})
        names = [q.get(o, o) for o in self.graph.outputs]
        res = self.executable(fast).run(self.check_feeds(feeds), outputs=names)
        return {o: res[n] for o, n in zip(self.graph.outputs, names)}


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
        parts = {}
        for name in PARTS_BY_VERSION[version]:
            data = _read_part(z, name, where)
            want = manifest.get("parts", {}).get(name)
            if want != _sha256(data):
                raise ModelFormatError(f"{where}: checksum mismatch in part {name!r} (the file "
                                       "is corrupted or was modified); recompile the model")
            parts[name] = data
    try:
        doc = json.loads(parts["graph.json"])
        graph = _graph_from_doc(doc, parts["weights.bin"], where)
        graph.validate()
    except (KeyError, TypeError, ValueError, EdgeError) as exc:
        raise ModelFormatError(f"{where}: graph.json is malformed ({exc}); recompile the "
                               "model") from None
    if version == 1:  # format 1 carried no plan: make it now, and say so
        plan, note = arena_plan(graph)
        note = "; ".join(x for x in ("computed on load (format-1 bundle)", note) if x)
        manifest["memory"] = memory_summary(plan, note)
    else:
        plan = _plan_from_part(parts[PLAN_PART], graph, where)
    return Bundle(graph, manifest, plan)


def _plan_from_part(data: bytes, graph: Graph, where: str) -> MemoryPlan | None:
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
        raise ModelFormatError(f"{where}: {PLAN_PART} is malformed ({exc}); recompile the "
                               "model") from None
    nodes = [n.name for n in graph.topological_order()]
    if plan.order != nodes:
        raise ModelFormatError(f"{where}: the arena plan in {PLAN_PART} orders "
                               f"{len(plan.order)} nodes that are not graph.json's "
                               f"{len(nodes)}; recompile the model")
    return plan
