"""`edge profile MODEL --target NAME [--json FILE] [--plot FILE.png]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sdk.graph.ir import Graph
    from sdk.profile import ProfileReport, StreamingEnergy


@click.command("profile")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "target", default="laptop", show_default=True,
              help="board name (see `edge targets`) or a path to a board TOML")
@click.option("--runs", default=5, show_default=True, help="timed runs on this machine")
@click.option("--no-run", is_flag=True, help="model only: do not run the graph here")
@click.option("--hops", type=click.IntRange(min=1), default=None,
              help="MODEL is a streaming step graph (a compiled one is profiled without its "
                   "float boundary, as a device steps it): also print energy, time and "
                   "inferences/s "
                   "of one inference of HOPS steps (100 = a 1-s clip of 10 ms hops)")
@click.option("--front-end", is_flag=True,
              help="with --hops: add the integer log-mel front end (sdk.audio) per hop")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="write the full report as JSON")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="write per-layer latency and energy bars (PNG)")
def command(model: str, target: str, runs: int, no_run: bool, hops: int | None,
            front_end: bool, json_path: str | None, plot_path: str | None) -> None:
    """Per-layer latency, MACs, bytes and energy of MODEL on a target: measured here,
    modelled for the target."""
    from rich.progress import Progress

    from sdk.profile.profiler import load_model_graph, profile_graph

    graph = load_model_graph(model)
    if hops is not None:
        from sdk.profile import integer_core
        graph = integer_core(graph)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"profiling {graph.name}", total=runs)
        report = profile_graph(graph, target, runs=runs, measure=not no_run,
                               progress=lambda k, n: bar.update(task, completed=k))
    click.echo(report.render())
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


def _per_inference(report: ProfileReport, target: str, hops: int, front_end: bool,
                   graph: Graph) -> StreamingEnergy:
    """One inference of ``hops`` steps (see :mod:`sdk.profile.stream`)."""
    from sdk.profile import logmel_front_end_count, streaming_energy, table_for
    from targets import load_target

    tgt = load_target(target)
    table = table_for(tgt.energy_table, tgt.energy_overrides, tgt.name)
    fe = None
    if front_end:
        from sdk.runtime.step_graph import pair_states

        states = pair_states(graph.inputs, graph.outputs, None)
        stream = [graph.tensor(i).shape for i in graph.inputs if i not in states]
        if len(stream) != 1 or not stream[0]:
            raise click.UsageError("--front-end needs a step graph with one feature input "
                                   f"[1, n_mels]; this one has {len(stream)} stream inputs")
        fe = logmel_front_end_count(int(stream[0][-1]))
    return streaming_energy(report, tgt, table, hops, fe)


def _render_per_inference(s: StreamingEnergy, report: ProfileReport) -> str:
    fe = s.front_end
    lines = [f"one inference = {s.hops} steps" + (f" + {fe.name} per step" if fe else "")
             + f" (estimate, energy table {report.energy_table}):",
             (f"  energy {s.inference_energy_j * 1e6:.2f} uJ (step graph "
              f"{s.graph_inference_energy_j * 1e6:.2f} uJ); active power x time "
              f"{s.active_power_inference_j * 1e6:.1f} uJ; roofline "
              f"{s.inference_s * 1e3:.2f} ms = {s.inferences_per_s:.2f} inferences/s")]
    return "\n".join(lines)
