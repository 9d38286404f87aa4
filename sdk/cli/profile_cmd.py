"""`edge profile MODEL --target NAME [--json FILE] [--plot FILE.png]`."""

from __future__ import annotations

import sys

import click


@click.command("profile")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "target", default="laptop", show_default=True,
              help="board name (see `edge targets`) or a path to a board TOML")
@click.option("--runs", default=5, show_default=True, help="timed runs on this machine")
@click.option("--no-run", is_flag=True, help="model only: do not run the graph here")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="write the full report as JSON")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="write per-layer latency and energy bars (PNG)")
def command(model: str, target: str, runs: int, no_run: bool, json_path: str | None,
            plot_path: str | None) -> None:
    """Per-layer latency, MACs, bytes and energy of MODEL on a target: measured here,
    modelled for the target."""
    from rich.progress import Progress

    from sdk.profile.profiler import load_model_graph, profile_graph

    graph = load_model_graph(model)
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"profiling {graph.name}", total=runs)
        report = profile_graph(graph, target, runs=runs, measure=not no_run,
                               progress=lambda k, n: bar.update(task, completed=k))
    click.echo(report.render())
    if json_path:
        report.save_json(json_path)
        click.echo(f"wrote {json_path}")
    if plot_path:
        report.plot(plot_path)
        click.echo(f"wrote {plot_path}")
