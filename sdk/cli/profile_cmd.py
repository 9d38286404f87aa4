"""`edge profile MODEL --target NAME [--json FILE] [--plot FILE.png]`, or on a device:
`edge profile MODEL.edge --backend mcu --port URL [--json FILE]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sdk.errors import DeviceError

if TYPE_CHECKING:
    from sdk.graph.ir import Graph
    from sdk.profile import ProfileReport, StreamingEnergy


@click.command("profile")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "target", default=None,
              help="board name (see `edge targets`) or a path to a board TOML [default: "
                   "laptop]; with --backend mcu: refuse a model that does not fit it")
@click.option("--backend", help="mcu: run MODEL on the device at --port and print its per-op "
                                "counts (QEMU instruction counts in emulation, cycles on a board)")
@click.option("--port", help="serial URL of the device for --backend mcu (see `edge emulate`)")
@click.option("--runs", default=5, show_default=True,
              help="timed runs (on the device with --backend mcu)")
@click.option("--no-run", is_flag=True, help="model only: do not run the graph here")
@click.option("--hops", type=click.IntRange(min=1), default=None,
              help="MODEL is a streaming step graph (a compiled one is profiled without its "
                   "float boundary, as a device steps it): also print energy, time and "
                   "inferences/s "
                   "of one inference of HOPS steps (100 = a 1-s clip of 10 ms hops)")
@click.option("--front-end", is_flag=True,
              help="with --hops: add the integer log-mel front end (sdk.audio) per hop")
@click.option("--qemu-cycles", is_flag=True,
              help="Cortex-M target: run MODEL's integer part on the M4 firmware in QEMU, "
                   "count its instruction mix and time it with the cycle model "
                   "(docs/profiling.md) instead of the roofline")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="write the full report as JSON")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="write per-layer latency and energy bars (PNG)")
def command(model: str, target: str | None, backend: str | None, port: str | None, runs: int,
            no_run: bool, hops: int | None, front_end: bool, qemu_cycles: bool,
            json_path: str | None, plot_path: str | None) -> None:
    """Per-layer latency, MACs, bytes and energy of MODEL on a target: measured here,
    modelled for the target. With --backend mcu --port URL: the device's own per-op counts."""
    from rich.progress import Progress

    from sdk.profile.profiler import load_model_graph, profile_graph

    if qemu_cycles and (backend is not None or port is not None or hops is not None):
        raise click.UsageError("--qemu-cycles times one run of MODEL on the emulated firmware; "
                               "drop --backend/--port/--hops with it")
    if backend is not None or port is not None:
        _check_device_options(backend, port, no_run, hops, front_end, plot_path)
        _profile_on_device(load_model_graph(model), port, target, runs, json_path)
        return
    target = target or "laptop"
    graph = load_model_graph(model)
    if hops is not None:
        from sdk.profile import integer_core
        graph = integer_core(graph)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"profiling {graph.name}", total=runs)
        report = profile_graph(graph, target, runs=runs, measure=not no_run,
                               progress=lambda k, n: bar.update(task, completed=k))
    from sdk.backends.emulator import fit_report

    fit = fit_report(graph, target)  # the one fit decision (compile --target and flash too)
    report.fit_problems = list(fit.problems)
    if qemu_cycles:
        _time_with_cycle_model(report, graph, target)
    click.echo(report.render(per="step" if hops is not None else "inference"))
    per_inference = None
    if hops is not None:
        per_inference = _per_inference(report, target, hops, front_end, graph)
        click.echo(_render_per_inference(per_inference, report))
    elif front_end:
        raise click.UsageError("--front-end needs --hops N")
    if json_path:
        doc = report.to_json()
        if per_inference is not None:
            doc["per_inference"] = per_inference.to_json()
        Path(json_path).write_text(json.dumps(doc, indent=1))
        click.echo(f"wrote {json_path}")
    if plot_path:
        report.plot(plot_path)
        click.echo(f"wrote {plot_path}")
    from sdk.exits.report import profile_exits  # an early-exit bundle: its curve and costs

    exits_text = profile_exits(model, report, plot_path)
    if exits_text:
        click.echo(exits_text)
    from sdk.errors import TargetError

    if not fit.fits:
        raise TargetError(fit.message(graph.name))


def _time_with_cycle_model(report: ProfileReport, graph: Graph, target: str) -> None:
    """Replace the roofline time of the headline by the cycle model's time of the instruction
    mix the firmware executes in QEMU (one line naming the problem where it cannot)."""
    from sdk.errors import TargetError
    from sdk.profile import integer_core
    from sdk.profile.cycles import core_timing, estimate_for_target
    from sdk.profile.profiler import random_feeds
    from sdk.profile.qemu_mix import measure_mix, mix_unavailable
    from targets import load_target

    tgt = load_target(target)
    if not tgt.is_mcu:
        raise TargetError(f"--qemu-cycles needs a microcontroller target; {tgt.name!r} is not "
                          "one (see `edge targets`)")
    core_timing(tgt.cpu.core)                  # a core without a cycle model: one-line error
    why = mix_unavailable()
    if why:
        raise TargetError(f"--qemu-cycles: {why}")
    core = integer_core(graph)
    mix = measure_mix(core, random_feeds(core), runs=1)
    est = estimate_for_target(mix.per_inference, tgt)
    report.cycle_estimate = {**est.to_json(), "instructions": mix.per_inference.instructions,
                             "roofline_s": report.modeled_total_s}
    report.latency_model = (f"cycle model: QEMU instruction mix of the firmware x "
                            f"{est.core} timings{' (estimate)' if est.estimate_core else ''}, "
                            f"{est.wait_states} flash wait states")
    report.notes[:] = [n for n in report.notes
                       if not n.startswith("modelled latency is a roofline estimate")]
    report.notes.append("the per-layer 'model us' column is the roofline estimate")
    report.notes.append(f"cycle model: {mix.per_inference.instructions:,.0f} instructions, "
                        f"{est.cycles:,.0f} cycles = {est.seconds * 1e3:.4g} ms at "
                        f"{tgt.cpu.clock_hz / 1e6:g} MHz (roofline "
                        f"{report.modeled_total_s * 1e3:.4g} ms)")


def _check_device_options(backend: str | None, port: str | None, no_run: bool,
                          hops: int | None, front_end: bool, plot_path: str | None) -> None:
    """One-line errors for a device profile asked for the wrong way."""
    if backend not in (None, "mcu"):
        raise DeviceError(f"edge profile --backend supports only 'mcu' (the device's per-op "
                          f"counts), not {backend!r}; for this machine and a modelled board "
                          "use --target NAME without --backend")
    from sdk.backends.mcu import require_port

    require_port(port)
    host_only = [flag for flag, on in (("--no-run", no_run), ("--hops", hops is not None),
                                       ("--front-end", front_end), ("--plot", plot_path))
                 if on]
    if host_only:
        raise DeviceError(f"{', '.join(host_only)}: only for a profile on this machine; the "
                          "device reports per-op counts only, so drop them with --backend mcu")


def _profile_on_device(graph: Graph, port: str, target: str | None, runs: int,
                       json_path: str | None) -> None:
    """Load the integer part of ``graph`` on the device at ``port``, run it ``runs`` times,
    print the per-op counts (unit named from the device's HELLO) and write them as JSON."""
    from sdk.backends.mcu import profile_on_device, render_profile

    tgt = None
    if target is not None:
        from targets import load_target
        tgt = load_target(target)
    report = profile_on_device(graph, port, runs=runs, target=tgt)
    click.echo(render_profile(report))
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=1))
        click.echo(f"wrote {json_path}")


def _per_inference(report: ProfileReport, target: str, hops: int, front_end: bool,
                   graph: Graph) -> StreamingEnergy:
    """One inference of ``hops`` steps (see :mod:`sdk.profile.stream`)."""
    from sdk.profile import logmel_front_end_count, streaming_energy, table_for
    from targets import load_target

    tgt = load_target(target)
    table = table_for(tgt.energy_table, tgt.energy_overrides, tgt.name)
    fe = None
    if front_end:
        from sdk.graph.state import state_pairs_of

        states = state_pairs_of(graph, kind=None)
        stream = [graph.tensor(i).shape for i in graph.inputs if i not in states]
        if len(stream) != 1 or not stream[0]:
            raise click.UsageError("--front-end needs a step graph with one feature input "
                                   f"[1, n_mels]; this one has {len(stream)} stream inputs")
        fe = logmel_front_end_count(int(stream[0][-1]))
    return streaming_energy(report, tgt, table, hops, fe)


def _render_per_inference(s: StreamingEnergy, report: ProfileReport) -> str:
    """One energy figure per inference (active power x modelled time of the window), with the
    op-count table's split between the step graph and the front end."""
    fe = s.front_end
    graph_share = (s.graph_inference_energy_j / s.inference_energy_j
                   if s.inference_energy_j > 0 else 1.0)
    lines = [f"one inference = {s.hops} steps" + (f" + {fe.name} per step" if fe else "")
             + ":",
             (f"  energy per inference: {s.active_power_inference_j * 1e6:.4g} uJ  <- "
              f"modelled: active power {report.active_w:g} W "
              f"({report.power_source or 'target profile'}) x modelled time "
              f"{s.inference_s * 1e3:.4g} ms (roofline) = {s.inferences_per_s:.2f} "
              "inferences/s"),
             (f"  split by the op-count table {report.energy_table}: step graph "
              f"{graph_share:.0%}" + (f", front end {1 - graph_share:.0%}" if fe else ""))]
    return "\n".join(lines)
