"""``profile_graph``: measure on this machine, model on the target, report both.

1. If the reference backend implements every op, the graph runs once to trace tensor shapes
   and spike firing rates, then ``runs`` more times with per-node wall clocks (the median is
   reported). When the target is this machine (``host = true``) and a power sensor is
   readable, the timed runs are wrapped in it; otherwise the report says "no sensor" and why.
2. Every node is counted (:mod:`sdk.profile.opcount`), placed on the target's CPU or
   accelerator and timed with the roofline model (:mod:`sdk.profile.roofline`), and priced
   with the target's energy table (:mod:`sdk.profile.energy`), plus static power × modelled
   time: those figures only split the energy per inference across layers. The energy per
   inference itself is the sensor's measurement, else the board's active power × the
   modelled time (:attr:`ProfileReport.energy_per_inference_j`).
3. The arena is planned (:mod:`sdk.compile.memory_plan`) for peak RAM and flash.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from sdk.compile.memory_plan import plan_memory
from sdk.errors import EdgeError, GraphError, ModelFormatError, TargetError
from sdk.graph.ir import Graph, qrange
from sdk.profile.energy import PJ, compute_energy_pj, memory_energy_pj, table_for
from sdk.profile.opcount import count_graph
from sdk.profile.report import LayerRow, ProfileReport
from sdk.profile.roofline import estimate_node
from sdk.profile.spikes import firing_rate, spike_silent_levels, spike_tensors
from targets import Target, load_target
from targets.sensors import open_meter

Progress = Callable[[int, int], None]


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs covering each input's integer range (floats: standard normal)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        if t.shape is None:
            raise GraphError(f"graph input {name!r} has no shape; pass inputs to profile "
                             "(feeds=...) so the graph can run")
        if t.dtype in ("float32",):
            feeds[name] = rng.standard_normal(t.shape).astype(np.float32)
        elif t.dtype == "bool":
            feeds[name] = rng.random(t.shape) < 0.5
        else:
            lo, hi = qrange(t.dtype) if t.dtype != "int64" else (0, 16)
            feeds[name] = rng.integers(lo, hi + 1, t.shape).astype(t.dtype)
    return feeds


def host_ram_bytes() -> int:
    """Physical memory of this machine (bytes); 16 GiB when the OS does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 16 << 30


def check_host_sizes(graph: Graph, generated_inputs: bool = True,
                     limit: int | None = None) -> None:
    """Refuse, before any array is allocated, a graph whose declared shapes make one tensor
    larger than ``limit`` bytes (default: half of this machine's RAM), as one line naming the
    tensor, its bytes and the limit. ``generated_inputs``: the float inputs are generated as
    float64 first (:func:`random_feeds`), so they are counted at 8 bytes per element."""
    why = " (half this machine's RAM)" if limit is None else ""
    limit = host_ram_bytes() // 2 if limit is None else limit
    produced = {o for nd in graph.nodes for o in nd.outputs}
    for name, t in graph.tensors.items():
        if t.is_constant or t.shape is None or (name not in graph.inputs and name not in produced):
            continue
        if any(not isinstance(d, (int, np.integer)) or d <= 0 for d in t.shape):
            continue  # dynamic: known only after a run
        elements = 1
        for d in t.shape:
            elements *= int(d)
        try:
            item = np.dtype(t.dtype).itemsize
        except TypeError:
            item = 1
        how = ""
        if generated_inputs and name in graph.inputs and t.dtype == "float32":
            item, how = 8, " (its random input is drawn as float64)"
        if elements * item > limit:
            raise TargetError(
                f"tensor {name!r} {list(t.shape)} {t.dtype} needs {elements * item:,} bytes to "
                f"run here{how}, over the limit of {limit:,} bytes{why}; "
                "profile with --no-run to model it only, or declare a smaller shape")


def _measure(graph: Graph, target: Target, feeds: Mapping[str, np.ndarray], runs: int,
             progress: Progress | None, notes: list[str]):
    from sdk.ops.interpreter import Interpreter

    exe = Interpreter(graph)
    wanted = [n for n in graph.tensors if not graph.tensors[n].is_constant
              and (n in graph.inputs or any(n in nd.outputs for nd in graph.nodes))]
    values = exe.run(dict(feeds), outputs=wanted)          # trace (and warm up)
    shapes = {k: tuple(v.shape) for k, v in values.items()}
    rates = {s: firing_rate(values[s], silent)
             for s, silent in spike_silent_levels(graph).items() if s in values}
    if target.host:
        meter, why = open_meter(target)
    else:
        meter, why = None, (f"target {target.name!r} is not this machine; its energy is "
                            "modelled (measure on the board with its own sensor)")
    per_node: dict[str, list[float]] = {}
    totals: list[float] = []

    def timed_runs() -> None:
        for k in range(runs):
            timings = exe.profile(dict(feeds))
            for t in timings:
                per_node.setdefault(t.name, []).append(t.seconds)
            totals.append(sum(t.seconds for t in timings))
            if progress:
                progress(k + 1, runs)

    measured_energy = None
    if meter is not None:
        _, m = meter.measure(timed_runs)
        measured_energy = m.energy_j / runs
        sensor = meter.name
        notes.append(f"measured energy is the whole {meter.name} domain during the runs "
                     "(includes everything else the machine was doing)")
    else:
        timed_runs()
        sensor = f"no sensor ({why})"
    medians = {k: statistics.median(v) for k, v in per_node.items()}
    return shapes, rates, medians, statistics.median(totals), sensor, measured_energy


def profile_graph(graph: Graph, target: str | Target = "laptop",
                  feeds: Mapping[str, np.ndarray] | None = None, runs: int = 5,
                  measure: bool = True, progress: Progress | None = None,
                  shapes: dict[str, tuple[int, ...]] | None = None,
                  firing_rates: Mapping[str, float] | None = None) -> ProfileReport:
    """Profile ``graph`` for ``target``: per-layer counts, measured and modelled latency,
    modelled energy, peak arena and flash (see the module docstring).

    ``firing_rates`` (spike tensor -> rate in [0, 1]) replaces the rates traced from
    ``feeds``, e.g. rates measured over a whole streamed clip
    (:func:`sdk.profile.stream.stream_firing_rates`)."""
    tgt = load_target(target)
    table = table_for(tgt.energy_table, tgt.energy_overrides, tgt.name)
    notes: list[str] = []
    medians: dict[str, float] = {}
    rates: dict[str, float] = {}
    measured_total = measured_energy = None
    measured_on = ""
    sensor = "no sensor (the graph was not run)"
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if measure:
        check_host_sizes(graph, generated_inputs=feeds is None)  # before anything is allocated
        try:
            traced, rates, medians, measured_total, sensor, measured_energy = _measure(
                graph, tgt, feeds if feeds is not None else random_feeds(graph), runs,
                progress, notes)
            shapes = {**traced, **(shapes or {})}
            measured_on = f"{platform.machine()} host, reference backend, median of {runs}"
        except EdgeError as exc:
            notes.append(f"not run on this machine ({exc}); latency and energy are modelled "
                         "only")
            sensor = "no sensor (the graph was not run)"
    if firing_rates is not None:
        spikes = spike_tensors(graph)
        bad = {k: v for k, v in firing_rates.items() if k not in spikes or not 0 <= v <= 1}
        if bad:
            raise GraphError(f"firing_rates {sorted(bad)[:3]} are not spike tensors of "
                             f"{graph.name!r} with a rate in [0, 1]; spike tensors: "
                             f"{sorted(spikes)[:6]}")
        rates = {**rates, **firing_rates}
        notes.append(f"firing rates of {len(firing_rates)} spike tensors given by the caller "
                     "(measured over a run), not traced from this input")
    counts = count_graph(graph, shapes, rates)
    plan = plan_memory(graph, shapes=shapes)
    scratch_plan = plan_memory(graph, shapes=shapes, in_place=True)
    if scratch_plan.arena_bytes < plan.arena_bytes:
        notes.append(f"peak arena with in-place convolutions (scratch kernels): "
                     f"{scratch_plan.arena_bytes:,} B instead of {plan.arena_bytes:,} B")
    rows = []
    for c in counts:
        est = estimate_node(c, tgt)
        rows.append(LayerRow(
            name=c.node, op=c.op, unit=est.unit, arithmetic=c.arithmetic, macs=c.macs,
            accumulates=c.accumulates, adds=c.adds, muls=c.muls, requants=c.requants,
            other=c.other, weight_bytes=c.weight_bytes,
            activation_bytes=c.activation_read_bytes + c.activation_write_bytes,
            measured_s=medians.get(c.node), modeled_s=est.latency_s, bound=est.bound,
            energy_compute_j=compute_energy_pj(c, table) * PJ,
            energy_memory_j=memory_energy_pj(c, table, tgt.memory.weights_in,
                                             tgt.memory.activations_in) * PJ,
            energy_static_j=tgt.power.idle_w * est.latency_s,
            fp32_compute_j=compute_energy_pj(c, table, "fp32") * PJ))
    spiking = [c for c in counts if c.spike_driven]
    if spiking and rates:
        notes.append("spike-driven layers counted at the traced firing rates: " + ", ".join(
            f"{c.node} {c.accumulates / max(c.accumulates_if_all_spike, 1):.2f}"
            for c in spiking))
    elif spiking:
        notes.append("spike-driven layers counted as if every input spiked (upper bound)")
    notes.append(f"modelled latency is a roofline estimate for {tgt.name}" + (
        " (on a microcontroller a lower bound, every MAC at the SIMD peak; `edge profile "
        "--qemu-cycles` times the firmware's instruction mix with the cycle model instead)"
        if tgt.is_mcu else ""))
    report = ProfileReport(
        model=graph.name, target=tgt.name, energy_table=table.name,
        energy_table_source=table.source, rows=rows, peak_arena_bytes=plan.arena_bytes,
        weight_bytes=plan.weight_bytes, flash_bytes=plan.flash_bytes,
        ram_available_bytes=tgt.memory.ram_bytes, flash_available_bytes=tgt.memory.flash_bytes,
        measured_on=measured_on, runs=runs if measured_total is not None else 0,
        measured_total_s=measured_total, sensor=sensor, measured_energy_j=measured_energy,
        notes=notes, active_w=tgt.power.active_w, power_source=tgt.power.source)
    if not report.fits:
        notes.append(f"does not fit {tgt.name}: needs {plan.arena_bytes:,} B arena "
                     f"(has {tgt.memory.ram_bytes:,} B RAM) and {plan.flash_bytes:,} B flash "
                     f"(has {tgt.memory.flash_bytes:,} B)")
    return report


def load_model_graph(path: str | os.PathLike[str]) -> Graph:
    """The graph to profile: a bundle's integer graph (.edge), an int8 .tflite model's integer
    graph, or an ONNX model (a QDQ model is compiled to integers; a float model is profiled as
    float)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".edge":
        from sdk.compile.bundle import load_bundle
        return load_bundle(path).graph
    if suffix == ".onnx":
        from sdk.compile.pipeline import compile_model, is_qdq_model
        from sdk.frontends import load_onnx
        from sdk.frontends.onnx_import import read_onnx_model

        model, _ = read_onnx_model(path)  # ModelFormatError for a truncated or non-ONNX file
        if is_qdq_model(model):
            return compile_model(path).graph
        return load_onnx(path)
    if suffix == ".tflite":
        from sdk.frontends.tflite_import import read_tflite
        return read_tflite(path)  # an int8 .tflite is already an integer graph
    raise ModelFormatError(f"{path}: expected a .edge bundle or an .onnx model (or an int8 "
                           ".tflite model)")


def profile_model(path: str | os.PathLike[str], target: str | Target = "laptop",
                  **kwargs) -> ProfileReport:
    """:func:`profile_graph` on a model file (.edge or .onnx); keyword arguments pass on."""
    return profile_graph(load_model_graph(path), target, **kwargs)
