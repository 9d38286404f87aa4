"""StreamingSession: run a single-step graph hop by hop, carrying its state between calls.

A *step graph* computes one hop of a stream (e.g. 10 ms of audio features) and makes every
piece of memory explicit: for each state input ``s`` there is a state output ``s'`` of the same
shape, and ``s`` at hop ``t + 1`` is ``s'`` of hop ``t``:

    y_t, s_{t+1} = step(x_t, s_t),      s_0 = 0 (the float zero; raw zero point in integers)

The states are the graph's declared ones (``Graph.state``); a graph that declares none
(an old ONNX step export, a Graph built by hand) gets them declared once, when the session
is made, by name (output = input + ``_next`` / ``_out`` / ``_new``, or ``X_in`` with
``X_out``) or from ``state={"h": "h_next"}`` (:func:`sdk.graph.state.declare_states`).
Each hop is one stateful :meth:`Session.run_raw` call: the session's
:class:`~sdk.runtime.session.SessionState` feeds the state and is advanced by it.

For compiled integer graphs the state is carried as raw integers (never dequantized and
re-quantized between hops), so hop-by-hop streaming equals the unrolled computation bit for
bit. Where the quantizer gave a state output other quantization parameters than its state
input, the session appends one integer ``Requantize`` (docs/ops.md, the project's rounding
rule) that maps the output onto the input's grid; that node is part of the step, and
:meth:`StreamingSession.run_offline` (all hops in one graph) contains it too.

    ss = StreamingSession("kws_step.onnx", detector=KeywordDetector(labels))
    for frame in features:
        result = ss.step(frame)
        if result.event:
            print(result.event)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import GraphError, InputError, ModelFormatError
from sdk.graph.ir import Graph
from sdk.graph.state import (
    STATE_OUTPUT_SUFFIXES,
    align_state_quantization,
    complete_state_decls,
    declare_states,
    inner_input,
    inner_output,
    unroll_step_graph,
)
from sdk.runtime.detection import DetectionEvent, KeywordDetector, softmax
from sdk.runtime.session import Session, TensorInfo

_SNAPSHOT_FORMAT = "edge-stream-state/1"


@dataclass(frozen=True)
class StepResult:
    """What one hop produced: its index, the stream time at its end, the graph outputs other
    than state, the smoothed posterior (when a detector is attached) and a detection event."""

    hop: int
    time_s: float
    outputs: dict[str, np.ndarray]
    posterior: np.ndarray | None = None
    event: DetectionEvent | None = None


def _open_graph(source: Any) -> Graph:
    if isinstance(source, Session):
        return source.graph
    if hasattr(source, "graph") and isinstance(source.graph, Graph):  # a Bundle
        return source.graph
    if isinstance(source, (Graph, str, os.PathLike)):
        from sdk.runtime.session import open_model

        return open_model(source)
    raise InputError(f"StreamingSession needs a Graph, Bundle, Session or model path, got "
                     f"{type(source).__name__}")


class StreamingSession:
    """A step graph run one hop at a time with its state carried between calls.

    ``model``: a step Graph, ``.onnx`` / ``.edge`` path, Bundle or Session. ``state``: explicit
    state input → state output mapping (default: by name, see :func:`pair_states`).
    ``integer_io``: for integer graphs, take and return the raw integer stream tensors (the
    state is raw integers either way). ``detector`` (optional) turns ``scores_output`` (logits,
    or probabilities with ``scores_are_logits=False``) into keyword events. ``hop_s`` is the
    stream time of one hop. ``fast=True`` runs each hop through a
    :class:`~sdk.ops.program.Program` (Numba kernels, per-hop overhead hoisted
    out); ``fast=False`` through the executor on the NumPy reference kernels. Same bits.
    ``compiled`` is :class:`~sdk.runtime.session.Session`'s: by default a hop runs as one
    generated Numba program once the stream has run 64 hops (at once from a warm cache);
    :attr:`executor` says what runs it.
    """

    def __init__(self, model: Any, state: Mapping[str, str] | None = None, *,
                 fast: bool = True, integer_io: bool = False, hop_s: float = 0.01,
                 detector: KeywordDetector | None = None, scores_output: str | None = None,
                 scores_are_logits: bool = True, compiled: bool | None = None) -> None:
        graph = _open_graph(model).copy()
        decls = declare_states(graph, state)
        self.pairs = {d.input: d.output for d in decls if d.kind == "recurrent"}
        if not decls:
            raise GraphError(f"graph {graph.name!r} has no state input/output pairs (outputs "
                             f"named <input>{'/'.join(STATE_OUTPUT_SUFFIXES)}); pass "
                             "state={input: output} for other names")
        self.aligned_states = align_state_quantization(graph, self.pairs)
        complete_state_decls(graph)
        self.graph = graph
        self.fast = fast
        self.integer_io = integer_io
        self.hop_s = float(hop_s)
        self._session = Session(graph, fast=fast, integer_io=True, compiled=compiled)
        raw_in = {i.name: i for i in self._session.inputs}
        raw_out = {o.name: o for o in self._session.outputs}
        self.is_integer = any(i.dtype != "float32" for i in raw_in.values()) or any(
            o.dtype != "float32" for o in raw_out.values())
        for s_in, s_out in self.pairs.items():
            a, b = raw_in[s_in], raw_out[s_out]
            if b.shape is not None and tuple(a.shape) != tuple(b.shape):
                raise GraphError(f"state {s_in!r} has shape {a.shape} but its output {s_out!r} "
                                 f"has shape {b.shape}; pair states of equal shape")
            if a.dtype != b.dtype:
                raise GraphError(f"state {s_in!r} is {a.dtype} but its output {s_out!r} is "
                                 f"{b.dtype}; pair states of equal dtype")
        self.state_infos: dict[str, TensorInfo] = {k: raw_in[k] for k in self.pairs}
        carried = self._session._state_inputs
        self.stream_inputs: list[TensorInfo] = [
            self._user_info(i) for i in self._session.inputs if i.name not in carried]
        state_outs = {d.output for d in decls}
        self.stream_outputs: list[TensorInfo] = [
            self._user_info(o) for o in self._session.outputs if o.name not in state_outs]
        self._raw_in = raw_in
        self._raw_out = raw_out
        # per hop the executor is fed the raw tensors behind any boundary nodes directly
        # (feeds are checked once here and by _feeds, not again by Session.run each hop)
        consumers, producers = graph.consumers(), graph.producers()
        self._feed_name = {n: inner_input(graph, n, consumers) for n in raw_in}
        self._reads = [inner_output(graph, n, producers) for n in raw_out]
        stream_reads = [r for n, r in zip(raw_out, self._reads) if n not in state_outs]
        unreachable = [r for r in stream_reads if r not in graph.tensors]
        if unreachable:
            raise GraphError(f"tensors {unreachable} are neither fed, constant nor produced")
        self._stream_out = [(o.name, inner_output(graph, o.name, producers))
                            for o in self.stream_outputs]
        self.detector = detector
        if detector is not None:
            names = [o.name for o in self.stream_outputs]
            self.scores_output = scores_output or names[0]
            if self.scores_output not in names:
                raise InputError(f"scores_output {self.scores_output!r} is not a stream output;"
                                 f" choose one of {names}")
        else:
            self.scores_output = scores_output
        self.scores_are_logits = scores_are_logits
        self.reset()

    @property
    def executor(self) -> str:
        """What runs each hop (:attr:`Session.executor`)."""
        return self._session.executor

    def _user_info(self, raw: TensorInfo) -> TensorInfo:
        if self.integer_io or raw.dtype == "float32" or raw.quant is None:
            return raw
        return TensorInfo(raw.name, raw.shape, "float32", raw.quant)

    # -- state --------------------------------------------------------------------------
    def initial_state(self) -> dict[str, np.ndarray]:
        """The state at the start of a stream: float zeros, or the zero point (the integer
        image of 0.0) for integer states."""
        out = {}
        for name, info in self.state_infos.items():
            shape = tuple(1 if d == -1 else d for d in info.shape)
            fill = 0 if info.quant is None or info.dtype == "float32" else info.quant.zero_point
            out[name] = np.full(shape, fill, dtype=info.dtype)
        return out

    def reset(self) -> None:
        """Start a new stream: zero state, hop counter 0, detector cleared."""
        self.state = self._session.new_state()
        self.hop = 0
        if self.detector is not None:
            self.detector.reset()

    @property
    def time_s(self) -> float:
        """Stream time at the end of the last hop fed."""
        return self.hop * self.hop_s

    def get_state(self) -> dict[str, np.ndarray]:
        """A copy of the current state (raw integers for integer graphs)."""
        return {k: self.state.values[k].copy() for k in self.pairs}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the state; every state tensor must be given with its shape and dtype."""
        new: dict[str, np.ndarray] = {}
        for name, info in self.state_infos.items():
            if name not in state:
                raise InputError(f"state {name!r} is missing; give all of "
                                 f"{list(self.state_infos)} (as get_state() returns them)")
            arr = np.asarray(state[name])
            have = self.state.values[name]
            if str(arr.dtype) != info.dtype or arr.shape != have.shape:
                raise InputError(f"state {name!r}: expected {have.shape} "
                                 f"{info.dtype}, given {arr.shape} {arr.dtype}; restore a "
                                 "snapshot of this model")
            new[name] = arr.copy()
        extra = sorted(set(state) - set(self.state_infos))
        if extra:
            raise InputError(f"unknown state {extra[0]!r}; this model's states are "
                             f"{list(self.state_infos)}")
        self.state.values.update(new)

    def save_state(self, path: str | os.PathLike | None = None) -> dict[str, Any]:
        """Snapshot of state, hop counter and detector; also written to ``path`` (.npz)."""
        snap: dict[str, Any] = {"state": self.get_state(), "hop": self.hop,
                                "detector": self.detector.get_state() if self.detector else None}
        if path is not None:
            arrays = {f"state.{k}": v for k, v in snap["state"].items()}
            if snap["detector"] is not None:
                arrays.update({f"detector.{k}": np.asarray(v)
                               for k, v in snap["detector"].items()})
            np.savez(Path(path), format=np.asarray(_SNAPSHOT_FORMAT),
                     graph=np.asarray(self.graph.name), hop=np.asarray(self.hop), **arrays)
        return snap

    def restore_state(self, snapshot: Mapping[str, Any] | str | os.PathLike) -> None:
        """Continue from a snapshot returned by :meth:`save_state` or from its file."""
        if not isinstance(snapshot, Mapping):
            snapshot = _read_snapshot(Path(snapshot))
        self.set_state(snapshot["state"])
        self.hop = int(snapshot["hop"])
        det = snapshot.get("detector")
        if self.detector is not None:
            if det is None:
                self.detector.reset()
            else:
                self.detector.set_state(det)

    # -- running ------------------------------------------------------------------------
    def _feeds(self, x: Any) -> dict[str, np.ndarray]:
        if not isinstance(x, Mapping):
            if len(self.stream_inputs) != 1:
                raise InputError(f"this step graph has {len(self.stream_inputs)} stream inputs "
                                 f"{[i.name for i in self.stream_inputs]}; pass a dict")
            x = {self.stream_inputs[0].name: x}
        unknown = sorted(set(x) - {i.name for i in self.stream_inputs})
        if unknown:
            raise InputError(f"unknown stream input {unknown[0]!r}; the stream inputs are "
                             f"{[i.name for i in self.stream_inputs]} (state is carried by "
                             "the session)")
        feeds: dict[str, np.ndarray] = {}
        for info in self.stream_inputs:
            if info.name not in x:
                raise InputError(f"missing stream input {info.name!r} "
                                 f"(shape {info.shape}, {info.dtype})")
            arr = np.asarray(x[info.name])
            want = tuple(info.shape)
            if arr.shape != want and arr.size == int(np.prod([max(d, 1) for d in want])) \
                    and -1 not in want:
                arr = arr.reshape(want)  # a bare [n_mels] frame for a [1, n_mels] input
            raw = self._raw_in[info.name]
            if raw.dtype != "float32" and info.dtype == "float32":
                from sdk.kernels.quantize import quantize_linear

                q = raw.quant
                arr = quantize_linear(arr.astype(np.float32), q.scale, q.zero_point,
                                      raw.dtype, q.axis)
            elif str(arr.dtype) != raw.dtype and arr.dtype.kind == "f" and raw.dtype == "float32":
                arr = arr.astype(np.float32)
            if str(arr.dtype) != raw.dtype:
                raise InputError(f"input {info.name!r}: expected dtype {info.dtype}, given "
                                 f"{arr.dtype}; convert it with .astype(np.{info.dtype})")
            if arr.ndim != len(want) or any(e != -1 and e != d for e, d in zip(want, arr.shape)):
                raise InputError(f"input {info.name!r}: expected shape {want}, given "
                                 f"{arr.shape}")
            feeds[info.name] = arr
        return feeds

    def _user_outputs(self, raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for info in self.stream_outputs:
            v = raw[info.name]
            r = self._raw_out[info.name]
            if info.dtype == "float32" and r.dtype != "float32":
                from sdk.kernels.quantize import dequantize_linear

                v = dequantize_linear(v, r.quant.scale, r.quant.zero_point, r.quant.axis)
            out[info.name] = v
        return out

    def step(self, x: Any) -> StepResult:
        """Feed one hop (an array for the single stream input, or a dict); return its result
        and advance the state."""
        outputs = self._compiled_hop(x)
        if outputs is None:
            feeds = {self._feed_name[k]: v for k, v in self._feeds(x).items()}
            res = self._session.run_raw(feeds, self.state, [r for _, r in self._stream_out])
            raw = {name: res[r] for name, r in self._stream_out}
            outputs = self._user_outputs(raw)
        self.hop += 1
        posterior = event = None
        if self.detector is not None:
            scores = outputs[self.scores_output]
            if self.is_integer and self.integer_io:
                r = self._raw_out[self.scores_output].quant
                from sdk.kernels.quantize import dequantize_linear

                scores = dequantize_linear(scores, r.scale, r.zero_point, r.axis)
            probs = softmax(scores) if self.scores_are_logits else np.asarray(scores, np.float64)
            posterior, event = self.detector.update(probs.reshape(-1), self.hop, self.time_s)
        return StepResult(self.hop, self.time_s, outputs, posterior, event)

    def _hop_request(self) -> Any:
        """The compiled program of one whole hop with the float boundary inside (a float
        frame and the raw state in, float outputs and the raw next state out), or None where
        it does not apply (integer I/O, kv caches, several stream inputs, no compiled form)."""
        sess = self._session
        exe = sess._exe
        g = self.graph
        if (not sess.compiled or self.integer_io or sess._positions or not hasattr(exe, "program")
                or len(self.stream_inputs) != 1 or any(
                    g.tensor(i.name).dtype != "float32" or i.dtype != "float32"
                    for i in self.stream_inputs) or any(
                    o.name not in g.tensors or g.tensor(o.name).dtype != "float32"
                    for o in self.stream_outputs)):
            return None
        fed = [self.stream_inputs[0].name, *sess._state_feed.values()]
        reads = [o.name for o in self.stream_outputs] + sess._state_reads()
        return exe.program(list(dict.fromkeys(reads)), fed, load=False)

    def _compiled_hop(self, x: Any) -> dict[str, np.ndarray] | None:
        """One hop on the compiled hop program (same bits as the per-tensor path: the graph's
        own Quantize/DequantizeLinear nodes run inside); None to take the per-tensor path
        (not compiled yet, an input it was not compiled for, or an error to report)."""
        prog = self.__dict__.get("_hop_prog", False)
        if prog is False:
            prog = self._hop_prog = self._hop_request()
            self._hop_runs = 0
        if prog is None or x.__class__ is not np.ndarray or x.dtype != np.float32:
            return None
        if prog._fn is None:
            from sdk.ops.codegen import COMPILE_AFTER

            self._hop_runs += 1
            if not (self._session._exe.eager or self._hop_runs >= COMPILE_AFTER or prog.cached):
                return None
            prog.load()
        info = self.stream_inputs[0]
        if x.shape != info.shape:
            if -1 in info.shape or x.size != int(np.prod(info.shape)):
                return None
            x = x.reshape(info.shape)
        feeds = {info.name: x}
        for name, raw in self._session._state_feed.items():
            feeds[raw] = self.state.values[name]
        try:
            values = prog.run(feeds)
        except Exception:  # noqa: BLE001 - a NaN frame or another refusal: the per-tensor
            return None    # path reports it in its own words
        results = dict(zip(prog.reads, values))
        self._session._advance(self.state, results)
        return {o.name: results[o.name] for o in self.stream_outputs}

    def steps(self, xs: Any) -> dict[str, np.ndarray]:
        """Feed ``T`` hops (array ``[T, ...]`` or dict of such); stack each stream output
        to ``[T, ...]``."""
        results = [self.step(x) for x in _split_hops(xs, self.stream_inputs)]
        return {o.name: np.stack([r.outputs[o.name] for r in results])
                for o in self.stream_outputs}

    def record_feeds(self, xs: Any) -> dict[str, np.ndarray]:
        """Stream ``T`` hops and return every feed the step graph saw, stream inputs and
        carried state alike, each stacked to ``[T, ...]``: calibration data for compiling the
        step graph (``sdk.compile_model(step_onnx, session.record_feeds(frames))``)."""
        seen: dict[str, list[np.ndarray]] = {}
        for x in _split_hops(xs, self.stream_inputs):
            feeds = self._feeds(x)
            feeds.update(self.get_state())
            for k, v in feeds.items():
                seen.setdefault(k, []).append(v)
            self.step(x)
        return {k: np.stack(v) for k, v in seen.items()}

    def run_offline(self, xs: Any, initial_state: Mapping[str, np.ndarray] | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The whole sequence as ONE graph: the step unrolled ``T`` times with each state
        output wired to the next step's state input, run once (does not touch this session's
        state). Returns ``(stacked stream outputs [T, ...], final state)``; streaming the
        same hops from the same state gives the same values bit for bit."""
        hops = _split_hops(xs, self.stream_inputs)
        start = self.initial_state() if initial_state is None else dict(initial_state)
        unrolled, names = unroll_step_graph(self.graph, self.pairs, len(hops))
        sess = Session(unrolled, fast=self.fast, integer_io=True)
        feeds: dict[str, np.ndarray] = {}
        for t, x in enumerate(hops):
            for k, v in self._feeds(x).items():
                feeds[names.step_input(k, t)] = v
        for s_in in self.pairs:
            feeds[names.initial_state(s_in)] = start[s_in]
        raw = sess.run(feeds)
        per_hop = [self._user_outputs({o.name: raw[names.step_output(o.name, t)]
                                       for o in self.stream_outputs})
                   for t in range(len(hops))]
        stacked = {o.name: np.stack([h[o.name] for h in per_hop]) for o in self.stream_outputs}
        final = {s_in: raw[names.final_state(s_in)] for s_in in self.pairs}
        return stacked, final

    def __repr__(self) -> str:
        states = ", ".join(f"{k}->{v}" for k, v in self.pairs.items())
        kind = "integer" if self.is_integer else "float"
        return (f"StreamingSession({self.graph.name!r}, {kind}, states [{states}], "
                f"hop {self.hop})")


def _split_hops(xs: Any, stream_inputs: Sequence[TensorInfo]) -> list[Any]:
    if isinstance(xs, Mapping):
        lengths = {len(v) for v in xs.values()}
        if len(lengths) != 1:
            raise InputError("all stream inputs need the same number of hops (first axis)")
        n = lengths.pop()
        return [{k: v[t] for k, v in xs.items()} for t in range(n)]
    if len(stream_inputs) != 1:
        raise InputError(f"pass a dict of [T, ...] arrays for the stream inputs "
                         f"{[i.name for i in stream_inputs]}")
    return list(np.asarray(xs))


def _read_snapshot(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"state snapshot {path} does not exist; write one with "
                         "StreamingSession.save_state(path)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != _SNAPSHOT_FORMAT:
                raise ModelFormatError(f"{path} is not a stream state snapshot "
                                       f"({_SNAPSHOT_FORMAT}); write it with save_state()")
            state = {k[6:]: z[k] for k in z.files if k.startswith("state.")}
            det = {k[9:]: z[k] for k in z.files if k.startswith("detector.")}
            return {"state": state, "hop": int(z["hop"]), "detector": det or None}
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: cannot read the state snapshot ({exc}); the file is "
                               "truncated or not an .npz written by save_state()") from None
