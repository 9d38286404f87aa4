"""`edge profile MODEL --target NAME [--json FILE] [--plot FILE.png]`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sdk.errors import ModelFormatError


def load_model_graph(path: str):
    """The graph to profile: a bundle's integer graph (.edge), or an ONNX model (a QDQ model
    is compiled to integers; a float model is profiled as float)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".edge":
        from sdk.compile.bundle import load_bundle
        return load_bundle(path).graph
    if suffix == ".onnx":
        import onnx

        from sdk.compile.pipeline import compile_model, is_qdq_model
        from sdk.frontends import load_onnx
        if is_qdq_model(onnx.load(path, load_external_data=False)):
            return compile_model(path).graph
        return load_onnx(path)
    raise ModelFormatError(f"{path}: expected a .edge bundle or an .onnx model")


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

    from sdk.profile.profiler import profile_graph

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
