"""Session: run a model (Graph, .onnx file or bundle) on the reference backend or any other.

    sess = Session("model.onnx")
    probs = sess.run(None, {"data_0": x})["prob"]
    sess = Session("model.edge", backend="litert", target="raspberry-pi-4")
    print(sess.plan)        # which node runs where, and why each fallback happened

Without ``backend`` and ``target`` the graph runs on the reference kernels directly (any
tensor, intermediates included, can be read back). With either, it goes through
:func:`sdk.backends.compile_for`: the nodes ``backend`` (default: the one the target's
delegates imply) refuses fall back to the reference backend, and :attr:`Session.plan` says so.

Inputs are checked before anything runs: an unknown or missing name, a wrong shape or a wrong
dtype is an InputError naming the input, what it expects and what it was given.

Integer graphs (compiled by sdk.quant) take and return float32 by default: their
``QuantizeLinear`` / ``DequantizeLinear`` boundary nodes (or, for a graph without them, the
quantization parameters of its integer inputs and outputs) convert at the edges. With
``integer_io=True`` the session skips that boundary and takes and returns the raw integer
tensors under the same names; :attr:`Session.inputs` gives their quantization parameters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import InputError, ModelFormatError
from sdk.graph.ir import Graph, QuantParams
from sdk.ops.interpreter import Interpreter


@dataclass(frozen=True)
class TensorInfo:
    """What a session input or output is: name, shape (-1 = any size; None = known only after
    a run), dtype, quantization."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    quant: QuantParams | None = None


def open_model(source: Graph | str | os.PathLike) -> Graph:
    if isinstance(source, Graph):
        return source
    path = Path(os.fspath(source))
    if path.suffix.lower() == ".onnx" or not path.suffix:
        from sdk.frontends.onnx_import import load_onnx

        return load_onnx(path)
    if path.suffix.lower() == ".edge":
        try:
            from sdk.compile.bundle import load_bundle  # written by the compile engineer
        except ImportError:
            raise ModelFormatError(f"{path}: this installation cannot read .edge bundles yet; "
                                   "open the .onnx model instead") from None
        bundle = load_bundle(path)
        return bundle.graph if hasattr(bundle, "graph") else bundle
    raise ModelFormatError(f"{path}: Session opens Graph objects, .onnx models and .edge "
                           f"bundles, not {path.suffix!r} files")


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join("?" if d == -1 else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


class Session:
    """A model prepared for repeated runs.

    ``fast=True`` uses the Numba twins of the integer kernels; ``False`` the NumPy reference.
    ``backend`` names an executor of :data:`sdk.backends.BACKENDS` (``reference``,
    ``reference-numpy``, ``onnxruntime``, ``litert``, ``litert-ref``, ``npu`` ...) and
    ``target`` a board profile (name, TOML path or Target) whose delegates / execution
    providers it uses; see the module docstring.
    """

    def __init__(self, graph_or_path: Graph | str | os.PathLike, fast: bool = True,
                 integer_io: bool = False, backend: str | None = None,
                 target: Any = None) -> None:
        self.graph = open_model(graph_or_path)
        self.fast = fast
        self.integer_io = integer_io
        g = self.graph
        if any(g.tensor(n).shape is None for n in g.inputs) or any(
                g.tensor(n).shape is None for n in g.outputs if n in g.tensors):
            from sdk.graph.shapes import infer_shapes

            infer_shapes(g)
        self.target = target
        self.plan = None  # a sdk.backends Plan when a backend or target was chosen
        self.backend = backend or ("reference" if fast else "reference-numpy")
        self._exe = Interpreter(g, fast=fast) if backend is None and target is None \
            else None
        producers, consumers = g.producers(), g.consumers()
        # user-facing name -> internal tensor to feed / read, plus boundary conversion
        self._feed_as: dict[str, str] = {}
        self._read_as: dict[str, str] = {}
        self._quantize_in: dict[str, tuple[QuantParams, str]] = {}
        self._dequantize_out: dict[str, QuantParams] = {}
        infos_in, infos_out = [], []
        for name in g.inputs:
            t = g.tensor(name)
            users = consumers.get(name, [])
            boundary = users and all(u.op == "QuantizeLinear" for u in users) and len(
                {u.outputs[0] for u in users}) == 1
            if integer_io and boundary:
                inner = g.tensor(users[0].outputs[0])
                self._feed_as[name] = inner.name
                infos_in.append(TensorInfo(name, tuple(t.shape), inner.dtype,
                                           inner.quant or _attr_quant(users[0].attrs)))
            elif not integer_io and t.dtype != "float32" and t.quant is not None:
                self._quantize_in[name] = (t.quant, t.dtype)
                infos_in.append(TensorInfo(name, tuple(t.shape), "float32", t.quant))
            else:
                infos_in.append(TensorInfo(name, tuple(t.shape), t.dtype, t.quant))
        for name in g.outputs:
            t = g.tensor(name)
            p = producers.get(name)
            if integer_io and p is not None and p.op == "DequantizeLinear":
                inner = g.tensor(p.inputs[0])
                self._read_as[name] = inner.name
                infos_out.append(TensorInfo(name, _shape(inner.shape), inner.dtype,
                                            inner.quant or _attr_quant(p.attrs)))
            elif not integer_io and t.dtype != "float32" and t.quant is not None:
                self._dequantize_out[name] = t.quant
                infos_out.append(TensorInfo(name, _shape(t.shape), "float32", t.quant))
            else:
                infos_out.append(TensorInfo(name, _shape(t.shape), t.dtype, t.quant))
        self.inputs: list[TensorInfo] = infos_in
        self.outputs: list[TensorInfo] = infos_out
        self._input_set = frozenset(i.name for i in infos_in)
        self._output_set = frozenset(o.name for o in infos_out)
        from sdk.kernels.quantize import dequantize_linear, quantize_linear

        self._quantize, self._dequantize = quantize_linear, dequantize_linear
        if self._exe is None:
            self._compile_backend(backend, target, producers, consumers)

    def _compile_backend(self, backend: str | None, target: Any,
                         producers: Mapping[str, Any], consumers: Mapping[str, Any]) -> None:
        """Partition and compile for ``backend``/``target``; with integer I/O the boundary
        Quantize/DequantizeLinear nodes are left out so the integer tensors are the ends."""
        from sdk.backends import compile_for, default_backend
        from sdk.backends.partition import extract_subgraph

        g = self.graph
        self.backend = backend or default_backend(target)
        boundary = {id(u) for n in self._feed_as for u in consumers[n]} | {
            id(producers[n]) for n in self._read_as}
        core = g
        if boundary:
            core = extract_subgraph(g, [n for n in g.nodes if id(n) not in boundary], g.name,
                                    set(self._read_as.values()))
        self._backend_exe = compile_for(core, self.backend, target)
        self.plan = self._backend_exe.plan

    # -- description --------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {i.name: i.shape for i in self.inputs}

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...] | None]:
        return {o.name: o.shape for o in self.outputs}

    def __repr__(self) -> str:
        ins = ", ".join(f"{i.name}{_shape_text(i.shape)} {i.dtype}" for i in self.inputs)
        outs = ", ".join(f"{o.name}{_shape_text(o.shape or ())} {o.dtype}" for o in self.outputs)
        return f"Session({self.graph.name!r}: {ins} -> {outs})"

    # -- running ------------------------------------------------------------------------
    def check_feeds(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validate ``feeds`` against the inputs; return them as arrays (InputError if not)."""
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a dict of input name -> array, got "
                             f"{type(feeds).__name__}; the inputs are {self.input_names}")
        unknown = [k for k in feeds if k not in self._input_set]
        if unknown:
            raise InputError(f"unknown input {unknown[0]!r}; the model's inputs are "
                             f"{self.input_names}")
        out: dict[str, np.ndarray] = {}
        for info in self.inputs:
            if info.name not in feeds:
                raise InputError(f"missing input {info.name!r}: expected shape "
                                 f"{_shape_text(info.shape)} {info.dtype}")
            given = feeds[info.name]
            arr = given if isinstance(given, np.ndarray) else np.asarray(given, info.dtype)
            if str(arr.dtype) != info.dtype:
                raise InputError(f"input {info.name!r}: expected dtype {info.dtype}, given "
                                 f"{arr.dtype}; convert it with .astype(np.{info.dtype})")
            if arr.ndim != len(info.shape) or any(
                    e != -1 and e != d for e, d in zip(info.shape, arr.shape)):
                raise InputError(f"input {info.name!r}: expected shape "
                                 f"{_shape_text(info.shape)}, given {_shape_text(arr.shape)}")
            out[info.name] = arr
        return out

    def run(self, outputs: Sequence[str] | Mapping[str, Any] | None = None,
            feeds: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Run once. ``outputs``: names to return (all outputs when None); ``feeds``: input
        name -> array. ``run(feeds)`` with a single dict also works."""
        if feeds is None and isinstance(outputs, Mapping):
            outputs, feeds = None, outputs
        if feeds is None:
            raise InputError(f"no feeds given; the model's inputs are {self.input_names}")
        arrays = self.check_feeds(feeds)
        wanted = list(self.output_names if outputs is None else outputs)
        for w in wanted:
            if w not in self._output_set and w not in self.graph.tensors:
                raise InputError(f"unknown output {w!r}; the model's outputs are "
                                 f"{self.output_names}")
        internal: dict[str, np.ndarray] = {}
        for name, arr in arrays.items():
            if name in self._quantize_in:
                qp, dt = self._quantize_in[name]
                arr = self._quantize(arr, qp.scale, qp.zero_point, dt, qp.axis)
            internal[self._feed_as.get(name, name)] = arr
        reads = [self._read_as.get(w, w) for w in wanted]
        if self._exe is not None:
            results = self._exe.run(internal, reads)
        else:
            results = self._backend_exe.run(internal)
            inner = [r for r in reads if r not in results]
            if inner:
                raise InputError(f"{inner[0]!r} is not an output of the model; on backend "
                                 f"{self.backend!r} only the outputs {self.output_names} can "
                                 "be read (intermediate tensors: open the Session without "
                                 "backend/target)")
        out: dict[str, np.ndarray] = {}
        for w, r in zip(wanted, reads):
            value = results[r]
            if w in self._dequantize_out:
                qp = self._dequantize_out[w]
                value = self._dequantize(value, qp.scale, qp.zero_point, qp.axis)
            out[w] = value
        return out


def _shape(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    return tuple(shape) if shape is not None else None


def _attr_quant(attrs: Mapping[str, Any]) -> QuantParams | None:
    if "scale" not in attrs:
        return None
    return QuantParams(np.asarray(attrs["scale"], np.float32),
                       np.asarray(attrs.get("zero_point", 0), np.int32), attrs.get("axis"))
