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

State: a graph that declares state (``Graph.state``, :class:`~sdk.graph.ir.StateDecl`)
carries it between calls through a :class:`SessionState`:

    sess = Session("lm.edge", entry="decode_step")     # or Session(bundle).entry("prefill")
    state = sess.new_state()                            # caches at the zero point, pos 0
    y = sess.run({"x": x0}, state=state)                # state inputs and positions are fed
    y = sess.run({"x": x1}, state=state)                # from ``state`` and advanced
    state.reset()

State is carried as the raw integers behind any Quantize/DequantizeLinear boundary, never
re-quantized between calls. A ``kv_cache`` state's position advances by the rows written.

Resume from intermediates: ``ck = sess.run_until(feeds, ["h1"])`` runs only what ``h1``
needs and keeps it (and the feeds); ``sess.resume(ck, ["y"])`` later computes ``y`` from the
kept tensors without recomputing them (early exit: run stage 1, look at exit 1, continue).

Integer graphs (compiled by sdk.quant) take and return float32 by default: their
``QuantizeLinear`` / ``DequantizeLinear`` boundary nodes (or, for a graph without them, the
quantization parameters of its integer inputs and outputs) convert at the edges. With
``integer_io=True`` the session skips that boundary and takes and returns the raw integer
tensors under the same names; :attr:`Session.inputs` gives their quantization parameters.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import InputError, ModelFormatError, NonFiniteInputWarning
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
    """The (main) graph of a Graph, ``.onnx`` file, int8 ``.tflite`` file, Bundle or ``.edge``
    file. An ONNX step
    graph gets its state declared by the name convention at import
    (:func:`sdk.graph.state.declare_states`)."""
    if isinstance(source, Graph):
        return source
    if _is_bundle(source):
        return source.graph
    path = Path(os.fspath(source))
    if path.suffix.lower() == ".onnx" or not path.suffix:
        from sdk.frontends.onnx_import import load_onnx
        from sdk.graph.state import declare_states

        graph = load_onnx(path)
        declare_states(graph)
        return graph
    if path.suffix.lower() == ".edge":
        try:
            from sdk.compile.bundle import load_bundle  # written by the compile engineer
        except ImportError:
            raise ModelFormatError(f"{path}: this installation cannot read .edge bundles yet; "
                                   "open the .onnx model instead") from None
        bundle = load_bundle(path)
        return bundle.graph if hasattr(bundle, "graph") else bundle
    if path.suffix.lower() == ".tflite":
        from sdk.frontends.tflite_import import read_tflite

        return read_tflite(path)  # an int8 .tflite is already an integer graph
    raise ModelFormatError(f"{path}: Session opens Graph objects, .onnx models, int8 .tflite "
                           f"models and .edge bundles, not {path.suffix!r} files")


def _is_bundle(source: Any) -> bool:
    return hasattr(source, "entries") and hasattr(source, "graph") and isinstance(
        getattr(source, "graph"), Graph)


def _open_bundle(source: Any) -> Any:
    """The Bundle behind ``source`` (a Bundle or an ``.edge`` path), else None."""
    if _is_bundle(source):
        return source
    if isinstance(source, (str, os.PathLike)) and Path(os.fspath(source)).suffix.lower() == ".edge":
        from sdk.compile.bundle import load_bundle

        return load_bundle(source)
    return None


class SessionState:
    """The declared state of one entry, carried between :meth:`Session.run` calls.

    ``values``: state input name -> raw array (integers for an integer graph);
    ``positions``: position input name -> int (rows written so far to the kv caches that
    position serves). :meth:`reset` returns to the start (zero point fill, position 0)."""

    def __init__(self, initial: Mapping[str, np.ndarray], positions: Sequence[str],
                 capacities: Mapping[str, int]) -> None:
        self._initial = {k: np.array(v) for k, v in initial.items()}
        self._position_names = list(positions)
        self.capacities = dict(capacities)
        self.reset()

    def reset(self) -> None:
        """Back to the start: every state at its initial value, every position 0."""
        self.values: dict[str, np.ndarray] = {k: v.copy() for k, v in self._initial.items()}
        self.positions: dict[str, int] = {p: 0 for p in self._position_names}

    @property
    def position(self) -> int:
        """The position of the (first) kv cache: tokens written so far (0 without caches)."""
        return next(iter(self.positions.values()), 0)

    def copy(self) -> SessionState:
        out = SessionState(self._initial, self._position_names, self.capacities)
        out.values = {k: v.copy() for k, v in self.values.items()}
        out.positions = dict(self.positions)
        return out

    def __repr__(self) -> str:
        caches = ", ".join(f"{p}={v}" for p, v in self.positions.items())
        return f"SessionState({list(self.values)}" + (f", {caches})" if caches else ")")


@dataclass
class Checkpoint:
    """Tensors kept by :meth:`Session.run_until`: the intermediates asked for and the feeds
    the run was given (both as the executor saw them), to :meth:`Session.resume` from."""

    tensors: dict[str, np.ndarray]
    feeds: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join("?" if d == -1 else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def _check_finite(name: str, arr: np.ndarray, allow: bool) -> None:
    """Refuse (or, with ``allow``, warn about) NaN/±Inf in the float input ``name``."""
    finite = np.isfinite(arr)
    if finite.all():
        return
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(arr.size - finite.sum()) - n_nan
    what = (f"input {name!r} holds {n_nan} NaN and {n_inf} Inf of {arr.size} values")
    if not allow:
        raise InputError(f"{what}; the outputs would be meaningless (pass "
                         f"allow_nonfinite=True / --allow-nonfinite to run anyway)")
    warnings.warn(f"{what} (allowed: a float graph may output NaN; an integer bundle "
                  f"quantizes NaN as 0 and ±Inf as the ends of its range)", NonFiniteInputWarning,
                  stacklevel=4)


class Session:
    """A model prepared for repeated runs.

    ``fast=True`` uses the Numba twins of the integer kernels; ``False`` the NumPy reference.
    With ``fast``, each request runs as one generated Numba program (:mod:`sdk.ops.codegen`,
    same bits) where every node it needs has a compiled form, else on the prepared
    interpreter; :attr:`executor` says which. ``compiled=None`` (default) compiles a request
    at once when its machine code is cached on disk, else once it has run 64 times (a
    stream, a benchmark loop); ``True`` compiles on the first run; ``False`` never.
    ``backend`` names an executor of :data:`sdk.backends.BACKENDS` (``reference``,
    ``reference-numpy``, ``onnxruntime``, ``litert``, ``litert-ref``, ``npu`` ...) and
    ``target`` a board profile (name, TOML path or Target) whose delegates / execution
    providers it uses; see the module docstring.
    """

    def __init__(self, graph_or_path: Graph | str | os.PathLike, fast: bool = True,
                 integer_io: bool = False, backend: str | None = None,
                 target: Any = None, entry: str | None = None,
                 compiled: bool | None = None) -> None:
        self.bundle = _open_bundle(graph_or_path)
        self.entry_name = entry
        if self.bundle is not None:
            self.graph = self.bundle.entry(entry)
            self.entry_name = entry or next(iter(self.bundle.entries))
        elif entry is not None:
            raise InputError(f"entry={entry!r} needs a bundle (Bundle or .edge file); a "
                             "single graph has no named entries")
        else:
            self.graph = open_model(graph_or_path)
        self._options = dict(fast=fast, integer_io=integer_io, backend=backend, target=target,
                             compiled=compiled)
        self._entries: dict[str, Session] = {}
        self.fast = fast
        self.integer_io = integer_io
        g = self.graph
        if any(g.tensor(n).shape is None for n in g.inputs) or any(
                g.tensor(n).shape is None for n in g.outputs if n in g.tensors):
            from sdk.ops.shapes import infer_shapes

            infer_shapes(g)
        self.target = target
        self.plan = None  # a sdk.backends Plan when a backend or target was chosen
        self.backend = backend or ("reference" if fast else "reference-numpy")
        self._exe = Interpreter(g, fast=fast) if backend is None and target is None \
            else None
        self.compiled = compiled is not False and fast and self._exe is not None
        if self.compiled:  # one generated Numba program per request; interpreter otherwise
            from sdk.ops.codegen import CompiledExecutor

            self._exe = CompiledExecutor(g, self._exe, eager=compiled is True)
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
        self._prepare_state(producers, consumers)

    # -- entries and state --------------------------------------------------------------
    @property
    def entry_names(self) -> list[str]:
        """The bundle's entries (``["main"]`` style single entry for a plain graph)."""
        return list(self.bundle.entries) if self.bundle is not None else [self.graph.name]

    def entry(self, name: str) -> Session:
        """A session on another entry of the same bundle (same options, same weights)."""
        if self.bundle is None:
            raise InputError("Session.entry needs a bundle (Bundle or .edge file); this "
                             f"session runs the single graph {self.graph.name!r}")
        if name == self.entry_name:
            return self
        if name not in self._entries:
            self._entries[name] = Session(self.bundle, entry=name, **self._options)
        return self._entries[name]

    def _prepare_state(self, producers: Mapping[str, Any], consumers: Mapping[str, Any]) -> None:
        """Where each declared state is fed and read (raw tensors), its initial value, and
        how many rows each kv cache write adds per call."""
        from sdk.graph.state import complete_state_decls

        g = self.graph
        decls = complete_state_decls(g)
        self.state_decls = list(decls)
        self._state_feed = {d.input: d.raw_input or d.input for d in decls}
        self._state_read = {d.input: d.raw_output or d.output for d in decls}
        self._positions: dict[str, list[str]] = {}
        self._rows: dict[str, int | tuple[str, int]] = {}
        initial: dict[str, np.ndarray] = {}
        capacities: dict[str, int] = {}
        for d in decls:
            t = g.tensor(self._state_feed[d.input])
            if t.shape is None:
                raise InputError(f"state {d.input!r} has no shape; declare it with one")
            shape = tuple(1 if e < 0 else e for e in t.shape)
            fill = 0 if d.quant is None or t.dtype == "float32" else int(d.quant.zero_point)
            initial[d.input] = np.full(shape, fill, dtype=t.dtype)
            if d.kind == "kv_cache":
                self._positions.setdefault(d.position, []).append(d.input)
                capacities[d.input] = int(d.capacity)
                writer = next((n for n in consumers.get(self._state_feed[d.input], [])
                               if n.op == "KVCacheWrite"), None)
                if writer is None:
                    raise InputError(f"kv_cache state {d.input!r} is not written by a "
                                     "KVCacheWrite node")
                axis = int(writer.attrs.get("axis", 2))
                rows = g.tensor(writer.inputs[1]).shape
                static = rows is not None and rows[axis] > 0
                self._rows.setdefault(d.position, int(rows[axis]) if static
                                      else (writer.inputs[1], axis))
        self._state_inputs = frozenset(self._state_feed) | frozenset(self._positions)
        self._state_outputs = frozenset(d.output for d in decls)
        self._initial_state = (initial, list(self._positions), capacities)

    @property
    def has_state(self) -> bool:
        return bool(self.state_decls)

    def new_state(self) -> SessionState:
        """Fresh state for this entry: each state at its start value (the zero point of an
        integer state, float zeros otherwise), each kv cache position 0."""
        initial, positions, caps = self._initial_state
        return SessionState(initial, positions, caps)

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
    def executor(self) -> str:
        """What runs the graph: ``"compiled"`` (one generated Numba program per request,
        :mod:`sdk.ops.codegen`), ``"interpreter: <why>"`` (the prepared interpreter: a node
        without a compiled form, ``compiled=False`` or ``fast=False``), or ``"backend <name>"``.
        """
        if self._exe is None:
            return f"backend {self.backend}"
        if not self.compiled:
            return "interpreter: " + ("compiled=False" if self.fast else
                                      "fast=False (the NumPy specification)")
        if not hasattr(self, "_executor_why"):
            from sdk.ops.codegen import compile_check

            self._executor_why = compile_check(self.graph)
        if self._executor_why is not None:
            return f"interpreter: {self._executor_why}"
        return "compiled" if self._exe.eager or "compiled" in self._exe.status.values() \
            else "compiled (after 64 runs or from a warm cache)"

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
    def check_feeds(self, feeds: Mapping[str, Any], skip: frozenset[str] = frozenset(),
                    allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Validate ``feeds`` against the inputs (less ``skip``, the inputs a state feeds);
        return them as arrays (InputError if not). A float input holding NaN or ±Inf is an
        InputError naming the input and the counts, unless ``allow_nonfinite`` (then a
        :class:`~sdk.errors.NonFiniteInputWarning` says the same)."""
        names = [n for n in self.input_names if n not in skip]
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a dict of input name -> array, got "
                             f"{type(feeds).__name__}; the inputs are {names}")
        unknown = [k for k in feeds if k not in self._input_set or k in skip]
        if unknown:
            extra = " (the state feeds it)" if unknown[0] in skip else ""
            raise InputError(f"unknown input {unknown[0]!r}{extra}; the model's inputs are "
                             f"{names}")
        out: dict[str, np.ndarray] = {}
        dtypes = self.__dict__.get("_input_dtypes")
        if dtypes is None:  # np.dtype objects compare in C; str(dtype) costs ~1 µs a feed
            dtypes = self._input_dtypes = {i.name: np.dtype(i.dtype) for i in self.inputs}
        for info in self.inputs:
            if info.name in skip:
                continue
            if info.name not in feeds:
                raise InputError(f"missing input {info.name!r}: expected shape "
                                 f"{_shape_text(info.shape)} {info.dtype}")
            given = feeds[info.name]
            arr = given if isinstance(given, np.ndarray) else np.asarray(given, info.dtype)
            if arr.dtype != dtypes[info.name]:
                raise InputError(f"input {info.name!r}: expected dtype {info.dtype}, given "
                                 f"{arr.dtype}; convert it with .astype(np.{info.dtype})")
            if arr.ndim != len(info.shape) or any(
                    e != -1 and e != d for e, d in zip(info.shape, arr.shape)):
                raise InputError(f"input {info.name!r}: expected shape "
                                 f"{_shape_text(info.shape)}, given {_shape_text(arr.shape)}")
            if arr.dtype.kind in "fc" and arr.size:
                _check_finite(info.name, arr, allow_nonfinite)
            out[info.name] = arr
        return out

    def _internal_feeds(self, feeds: Mapping[str, Any], state: SessionState | None,
                        allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        arrays = self.check_feeds(feeds, self._state_inputs if state is not None
                                  else frozenset(), allow_nonfinite)
        internal: dict[str, np.ndarray] = {}
        for name, arr in arrays.items():
            if allow_nonfinite and arr.dtype.kind == "f" and (
                    name in self._quantize_in or any(
                        n.op == "QuantizeLinear" and n.inputs[:1] == [name]
                        for n in self.graph.nodes)):  # NaN has no integer image
                arr = np.nan_to_num(arr, nan=0.0, posinf=np.finfo(arr.dtype).max,
                                    neginf=np.finfo(arr.dtype).min)
            if name in self._quantize_in:
                qp, dt = self._quantize_in[name]
                arr = self._quantize(arr, qp.scale, qp.zero_point, dt, qp.axis)
            internal[self._feed_as.get(name, name)] = arr
        if state is not None:
            self._check_state(state)
            for name, raw in self._state_feed.items():
                internal[raw] = state.values[name]
            for p in self._positions:
                internal[p] = np.int32(state.positions[p])
        return internal

    def _check_state(self, state: SessionState) -> None:
        if not isinstance(state, SessionState) or set(state.values) != set(self._state_feed):
            raise InputError(f"state= must come from this entry's new_state() (states "
                             f"{list(self._state_feed)}); got {state!r}")

    def _wanted(self, outputs: Sequence[str] | None, stateful: bool) -> list[str]:
        if outputs is None:
            return [o for o in self.output_names
                    if not (stateful and o in self._state_outputs)]
        wanted = list(outputs)
        for w in wanted:
            if w not in self._output_set and w not in self.graph.tensors:
                raise InputError(f"unknown output {w!r}; the model's outputs are "
                                 f"{self.output_names}")
        return wanted

    def _execute(self, internal: dict[str, np.ndarray], reads: list[str]) -> dict[str, np.ndarray]:
        if self._exe is not None:
            return self._exe.run(internal, reads)
        results = self._backend_exe.run(internal)
        inner = [r for r in reads if r not in results]
        if inner:
            raise InputError(f"{inner[0]!r} is not an output of the model; on backend "
                             f"{self.backend!r} only the outputs {self.output_names} can "
                             "be read (intermediate tensors and state: open the Session "
                             "without backend/target)")
        return results

    def _advance(self, state: SessionState, results: Mapping[str, np.ndarray]) -> None:
        for name, raw in self._state_read.items():
            state.values[name] = results[raw]
        for p, rows in self._rows.items():
            n = rows if isinstance(rows, int) else int(np.shape(results[rows[0]])[rows[1]])
            state.positions[p] += n

    def _state_reads(self) -> list[str]:
        return list(self._state_read.values()) + [r[0] for r in self._rows.values()
                                                  if not isinstance(r, int)]

    def _user_values(self, wanted: Sequence[str], results: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for w in wanted:
            value = results[self._read_as.get(w, w)]
            if w in self._dequantize_out:
                qp = self._dequantize_out[w]
                value = self._dequantize(value, qp.scale, qp.zero_point, qp.axis)
            out[w] = value
        return out

    def run(self, outputs: Sequence[str] | Mapping[str, Any] | None = None,
            feeds: Mapping[str, Any] | None = None, *,
            state: SessionState | None = None,
            allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Run once. ``outputs``: names to return (all outputs when None; with ``state``, all
        but the state outputs); ``feeds``: input name -> array. ``run(feeds)`` with a single
        dict also works. ``state`` (from :meth:`new_state`) feeds the declared state inputs
        and kv cache positions, and is advanced in place after the run. A NaN/Inf in a float
        input is refused (InputError naming the input and the count) unless
        ``allow_nonfinite=True``, which runs and warns instead."""
        if feeds is None and isinstance(outputs, Mapping):
            outputs, feeds = None, outputs
        if feeds is None:
            raise InputError(f"no feeds given; the model's inputs are {self.input_names}")
        internal = self._internal_feeds(feeds, state, allow_nonfinite)
        wanted = self._wanted(outputs, state is not None)
        reads = [self._read_as.get(w, w) for w in wanted]
        if state is not None:
            reads = list(dict.fromkeys(reads + self._state_reads()))
        results = self._execute(internal, reads)
        out = self._user_values(wanted, results)
        if state is not None:
            self._advance(state, results)
        return out

    def run_raw(self, raw_feeds: Mapping[str, np.ndarray], state: SessionState,
                reads: Sequence[str]) -> dict[str, np.ndarray]:
        """One stateful call on already checked raw tensors (executor names): ``state`` is fed
        and advanced; returns the ``reads``. The per-hop path of StreamingSession."""
        internal = dict(raw_feeds)
        for name, raw in self._state_feed.items():
            internal[raw] = state.values[name]
        for p in self._positions:
            internal[p] = np.int32(state.positions[p])
        results = self._execute(internal, list(dict.fromkeys([*reads, *self._state_reads()])))
        self._advance(state, results)
        return results

    # -- resume from intermediates ------------------------------------------------------
    def run_until(self, feeds: Mapping[str, Any], names: Sequence[str], *,
                  state: SessionState | None = None) -> Checkpoint:
        """Run only what the tensors ``names`` need and keep them (raw, as the executor holds
        them) together with the feeds, for :meth:`resume`. ``state`` is fed, not advanced."""
        if self._exe is None:
            raise InputError("run_until/resume run on the reference executor; open the "
                             "Session without backend/target")
        for n in names:
            if n not in self.graph.tensors:
                raise InputError(f"unknown tensor {n!r} in graph {self.graph.name!r}")
        internal = self._internal_feeds(feeds, state)
        kept = self._exe.run(internal, list(names))
        return Checkpoint(dict(kept), internal)

    def resume(self, checkpoint: Checkpoint, outputs: Sequence[str] | None = None, *,
               state: SessionState | None = None) -> dict[str, np.ndarray]:
        """Continue from ``checkpoint``: its tensors are fed as sources, so nothing that
        produced them runs again. Returns ``outputs`` (default: all outputs but the state
        outputs when ``state`` is given, which is then advanced as by :meth:`run`)."""
        if not isinstance(checkpoint, Checkpoint):
            raise InputError("resume() takes the Checkpoint that run_until() returned")
        internal = dict(checkpoint.feeds)
        internal.update(checkpoint.tensors)
        if state is not None:
            self._check_state(state)
        wanted = self._wanted(outputs, state is not None)
        reads = [self._read_as.get(w, w) for w in wanted]
        if state is not None:
            reads = list(dict.fromkeys(reads + self._state_reads()))
        results = self._exe.run(internal, reads)
        out = self._user_values(wanted, results)
        if state is not None:
            self._advance(state, results)
        return out


def _shape(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    return tuple(shape) if shape is not None else None


def _attr_quant(attrs: Mapping[str, Any]) -> QuantParams | None:
    if "scale" not in attrs:
        return None
    return QuantParams(np.asarray(attrs["scale"], np.float32),
                       np.asarray(attrs.get("zero_point", 0), np.int32), attrs.get("axis"))
