"""Streaming models: energy per hop, per inference window, and the spike rates of a real run.

A streaming step graph runs once per hop (10 ms of audio for the keyword models); a benchmark
such as MLPerf Tiny's keyword spotting counts one *inference* per 1-second clip. So

    E_inference = hops · (E_hop + E_front_end),     t_inference = hops · (t_hop + t_front_end)

    inferences/s (modelled) = 1 / t_inference   (back to back, as MLPerf measures throughput)

where ``E_hop`` and ``t_hop`` are :func:`sdk.profile.profile_graph`'s totals for one step
and the front end is counted by :func:`logmel_front_end_count`.

Spike-driven layers are counted at firing rates; :func:`stream_firing_rates` measures them
over a whole streamed clip (state carried hop to hop), which is what ``firing_rates=`` of
:func:`~sdk.profile.profile_graph` takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sdk.errors import InputError
from sdk.graph.ir import Graph
from sdk.profile.energy import PJ, EnergyTable
from sdk.profile.report import ProfileReport
from sdk.profile.spikes import spike_silent_levels
from targets.model import Target


@dataclass
class FrontEndCount:
    """Integer work of the log-mel front end for one hop (see ``sdk.audio.logmel``).

    ``mul32``: 32-bit multiplies (window, DFT, power, mel), each followed by one addition
    counted in ``add32``; ``other``: shifts, compares and table steps; ``table_bytes``: the
    window, DFT, mel and log tables read from flash; ``activation_bytes``: frame in, mels out.
    """

    name: str
    mul32: int
    add32: int
    other: int
    table_bytes: int
    activation_bytes: int

    def energy_j(self, table: EnergyTable, weights_in: str, activations_in: str) -> float:
        """``mul32·e_int32_mul + (add32 + other)·e_int32_add + bytes·e_byte``."""
        return PJ * (self.mul32 * table["int32_mul"] + (self.add32 + self.other)
                     * table["int32_add"] + self.table_bytes * table[f"{weights_in}_byte"]
                     + self.activation_bytes * table[f"{activations_in}_byte"])

    def modeled_s(self, target: Target) -> float:
        """One 32-bit multiply-accumulate per cycle per core (no int8 SIMD), other work one
        operation per cycle: ``(mul32 + other) / (cores · clock)``, an estimate."""
        return (self.mul32 + self.other) / (target.cpu.cores * target.cpu.clock_hz)


def logmel_front_end_count(n_mels: int = 40) -> FrontEndCount:
    """Count one hop of ``sdk.audio.logmel`` as it is computed: 400-sample Hann window, the
    integer 512-point real FFT (257 bins), power, ``n_mels`` triangular filters (their non-zero
    taps), and the table log2 (:func:`sdk.audio.logmel_op_count` walks the kernel's loops)."""
    from sdk.audio.logmel import WIN_LENGTH
    from sdk.audio.opcount import logmel_op_count

    c = logmel_op_count(n_mels)
    activation_bytes = 2 * WIN_LENGTH + 2 * n_mels
    return FrontEndCount(c.name, c.mul32, c.add32, c.other, c.table_bytes, activation_bytes)


@dataclass
class StreamingEnergy:
    """One hop's profile scaled to an inference window of ``hops`` hops."""

    hop: ProfileReport
    hops: int
    front_end: FrontEndCount | None
    front_end_energy_j: float        # per hop
    front_end_s: float               # per hop, modelled
    active_w: float

    @property
    def hop_energy_j(self) -> float:
        """The step graph alone, one hop: the profile's per-node total."""
        return self.hop.energy_j

    @property
    def graph_inference_energy_j(self) -> float:
        """``hops · E_hop``: the step graph alone (MLPerf Tiny's runner feeds precomputed
        features, so its figure has no front end either)."""
        return self.hops * self.hop_energy_j

    @property
    def graph_inference_s(self) -> float:
        return self.hops * self.hop.modeled_total_s

    @property
    def inference_energy_j(self) -> float:
        return self.hops * (self.hop_energy_j + self.front_end_energy_j)

    @property
    def inference_s(self) -> float:
        return self.hops * (self.hop.modeled_total_s + self.front_end_s)

    @property
    def inferences_per_s(self) -> float:
        return 1.0 / self.inference_s if self.inference_s > 0 else float("inf")

    @property
    def active_power_inference_j(self) -> float:
        """The target's active power × modelled time of one inference window."""
        return self.active_w * self.inference_s

    @property
    def graph_active_power_inference_j(self) -> float:
        return self.active_w * self.graph_inference_s

    def to_json(self) -> dict[str, float | int | str | None]:
        return {"target": self.hop.target, "energy_table": self.hop.energy_table,
                "hops_per_inference": self.hops,
                "front_end": self.front_end.name if self.front_end else None,
                "hop_energy_uj": self.hop_energy_j * 1e6,
                "front_end_energy_uj_per_hop": self.front_end_energy_j * 1e6,
                "inference_energy_uj": self.inference_energy_j * 1e6,
                "graph_inference_energy_uj": self.graph_inference_energy_j * 1e6,
                "graph_active_power_inference_uj": self.graph_active_power_inference_j * 1e6,
                "graph_inferences_per_s": 1.0 / self.graph_inference_s
                if self.graph_inference_s > 0 else None,
                "hop_modeled_s": self.hop.modeled_total_s,
                "front_end_modeled_s_per_hop": self.front_end_s,
                "inference_modeled_s": self.inference_s,
                "inferences_per_s": self.inferences_per_s,
                "active_power_w": self.active_w,
                "active_power_inference_uj": self.active_power_inference_j * 1e6,
                # the one energy figure per inference; the *_energy_uj keys above are the
                # op-count table's figures, which only split it (step graph vs front end)
                "energy_per_inference_uj": self.active_power_inference_j * 1e6,
                "energy_source": (f"modelled: active power {self.active_w:g} W x modelled "
                                  f"time {self.inference_s * 1e3:.4g} ms (roofline)")}


def streaming_energy(hop: ProfileReport, target: Target, table: EnergyTable, hops: int,
                     front_end: FrontEndCount | None = None) -> StreamingEnergy:
    """Scale the one-hop profile ``hop`` (made for ``target`` with ``table``) to ``hops``
    hops per inference, adding ``front_end`` per hop when given."""
    if hops < 1:
        raise InputError(f"hops per inference must be >= 1, got {hops}")
    if hop.target != target.name:
        raise InputError(f"the profile is for target {hop.target!r}, not {target.name!r}")
    fe_j = fe_s = 0.0
    if front_end is not None:
        fe_s = front_end.modeled_s(target)
        fe_j = (front_end.energy_j(table, target.memory.weights_in,
                                   target.memory.activations_in)
                + target.power.idle_w * fe_s)       # static power, as profile_graph adds
    return StreamingEnergy(hop, hops, front_end, fe_j, fe_s, target.power.active_w)


def _step_pairs(graph: Graph) -> dict[str, str]:
    """The graph's declared recurrent states (declared by name first if it has none)."""
    from sdk.graph.state import state_pairs_of

    return state_pairs_of(graph)


def core_state_pairs(graph: Graph) -> dict[str, str]:
    """State input -> state output of :func:`integer_core` of ``graph``: the float step
    graph's pairs (by name, as :class:`sdk.StreamingSession` pairs them) mapped to the
    integer tensors behind their ``QuantizeLinear`` / ``DequantizeLinear`` boundary."""
    from sdk.graph.state import inner_output

    names, producers = core_input_names(graph), graph.producers()
    return {names[i]: inner_output(graph, o, producers) for i, o in _step_pairs(graph).items()}


def stream_firing_rates(graph: Graph, hop_feeds: Sequence[Mapping[str, np.ndarray]],
                        initial_state: Mapping[str, np.ndarray] | None = None,
                        state_pairs: Mapping[str, str] | None = None) -> dict[str, float]:
    """Mean firing rate of every spike tensor of a step graph over a streamed run.

    ``hop_feeds``: the stream inputs of each hop (e.g. ``[{"x": frame_t}, ...]``); the state
    inputs start at ``initial_state`` (default zeros) and are carried from each hop's state
    outputs, paired by ``state_pairs`` (input -> output; default: by name, as
    :class:`sdk.StreamingSession` does; for an :func:`integer_core` pass
    :func:`core_state_pairs` of the compiled graph). The rate of tensor ``s``
    is ``Σ_t #(s_t ≠ silent) / Σ_t size(s_t)``, ``silent`` the raw value of a 0 (its zero
    point in an integer graph; see :mod:`sdk.profile.spikes`).
    """
    from sdk.ops.interpreter import Interpreter

    if not hop_feeds:
        raise InputError("no hops to stream; pass at least one hop of inputs")
    pairs = dict(state_pairs) if state_pairs is not None else _step_pairs(graph)
    unknown = [k for k, v in pairs.items() if k not in graph.inputs or v not in graph.outputs]
    if unknown:
        raise InputError(f"state pairs {unknown[:3]} do not name an input and an output of "
                         f"{graph.name!r}; its inputs are {graph.inputs[:4]}..., outputs "
                         f"{graph.outputs[:4]}...")
    silent = spike_silent_levels(graph)
    spikes = sorted(silent)
    state = {k: np.asarray(v) for k, v in (initial_state or {}).items()}
    for s in pairs:
        if s not in state:
            t = graph.tensor(s)
            if t.shape is None:
                raise InputError(f"state input {s!r} has no shape; pass initial_state=")
            state[s] = np.zeros(t.shape, t.dtype)
    exe = Interpreter(graph)
    fired = dict.fromkeys(spikes, 0)
    seen = dict.fromkeys(spikes, 0)
    wanted = spikes + [pairs[s] for s in pairs]
    for feeds in hop_feeds:
        values = exe.run({**state, **feeds}, outputs=wanted)
        for s in spikes:
            fired[s] += int(np.count_nonzero(values[s] != silent[s]))
            seen[s] += int(values[s].size)
        state = {s: values[o] for s, o in pairs.items()}
    return {s: fired[s] / seen[s] for s in spikes if seen[s]}


def integer_core(graph: Graph) -> Graph:
    """The part of a compiled graph a device runs: without the boundary ``QuantizeLinear`` of
    float inputs and ``DequantizeLinear`` of float outputs (integer I/O; a streaming device
    carries its state as raw integers). A graph without such a boundary is returned as is."""
    from sdk.backends.partition import extract_subgraph
    from sdk.graph.state import inner_input, inner_output

    consumers, producers = graph.consumers(), graph.producers()
    inner_in = {inner_input(graph, n, consumers) for n in graph.inputs} - set(graph.inputs)
    inner_out = [inner_output(graph, n, producers) for n in graph.outputs]
    boundary = {id(n) for n in graph.nodes
                if (n.op == "QuantizeLinear" and n.outputs[0] in inner_in)
                or (n.op == "DequantizeLinear" and n.outputs[0] in graph.outputs
                    and n.inputs[0] in inner_out)}
    if not boundary:
        return graph
    core = extract_subgraph(graph, [n for n in graph.topological_order()
                                    if id(n) not in boundary],
                            f"{graph.name}_integer_core", set(inner_out))
    core.outputs = inner_out
    return core


def core_input_names(graph: Graph) -> dict[str, str]:
    """Graph input name -> the input of :func:`integer_core` that takes its raw integers
    (the same name where the input has no ``QuantizeLinear`` boundary)."""
    from sdk.graph.state import inner_input

    consumers = graph.consumers()
    return {n: inner_input(graph, n, consumers) for n in graph.inputs}
