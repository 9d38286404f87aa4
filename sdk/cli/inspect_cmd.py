"""`edge inspect MODEL.edge|MODEL.tflite [--json]`: ops, tensor sizes, parameters, MACs, arena
plan, the executor a Session uses on this machine (compiled program or interpreter, and why)
and the int8 GEMM path picked from the CPU's features."""

from __future__ import annotations

import json
import sys

import click

from sdk.ops.cost import node_macs


def open_bundle(model: str):
    """The Bundle at ``model``: a ``.edge`` file, or an int8 ``.tflite`` model imported with
    :func:`sdk.read_tflite` and bundled as is (it is already integer: no calibration)."""
    from pathlib import Path

    from sdk.compile.bundle import Bundle, load_bundle
    from sdk.errors import ModelFormatError

    path = Path(model)
    if path.suffix.lower() == ".tflite":
        from sdk.frontends.tflite_import import read_tflite

        if not path.is_file():
            raise ModelFormatError(f"{model}: no such model file; check the path")
        return Bundle.from_graph(read_tflite(path))
    return load_bundle(model)


def bundle_report(bundle, entry: str | None = None) -> dict:
    """Per-node rows and totals of one entry of a bundle (the main one by default), and the
    list of its entries, as plain data."""
    g = bundle.entry(entry)
    name = entry or bundle.entry_names[0]
    plan = bundle.plans.get(name) if entry else bundle.memory_plan
    rows = []
    for n in g.nodes:
        out = g.tensors.get(n.outputs[0]) if n.outputs else None
        params = sum(g.tensor(i).nbytes for i in n.inputs if i and g.tensor(i).is_constant)
        rows.append({"name": n.name, "op": n.op,
                     "output": n.outputs[0] if n.outputs else "",
                     "shape": list(out.shape) if out is not None and out.shape is not None else None,
                     "dtype": out.dtype if out is not None else None,
                     "output_bytes": out.nbytes if out is not None and out.shape is not None
                     and all(d > 0 for d in out.shape) else None,
                     "param_bytes": params, "macs": node_macs(g, n),
                     "arena_offset": plan.slots[out.name].offset
                     if plan is not None and out is not None and out.name in plan.slots else None})
    m = bundle.manifest
    listed = m.get("entries") or [{"name": name, "inputs": m["inputs"], "outputs": m["outputs"],
                                   "state": [], "macs": m["macs"], "memory": m.get("memory", {}),
                                   "parameter_bytes": m["parameter_bytes"]}]
    e = next((x for x in listed if x["name"] == name), listed[0])
    entries = [{"name": x["name"], "inputs": [i["name"] for i in x["inputs"]],
                "outputs": [o["name"] for o in x["outputs"]],
                "state": [f"{d['input']}->{d['output']} ({d['kind']})" for d in x.get("state", [])],
                "macs": x["macs"], "arena_bytes": (x.get("memory") or {}).get("peak_arena_bytes")}
               for x in listed]
    from sdk.ops.codegen import describe

    return {"model_name": m["model_name"], "format_version": m["format_version"],
            "entry": name, "entries": entries, "executor": describe(g),
            "inputs": e["inputs"], "outputs": e["outputs"], "nodes": rows,
            "total_param_bytes": e["parameter_bytes"], "total_macs": e["macs"],
            "quantization": m.get("quantization", {}), "memory": e.get("memory", {})}


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--entry", default=None, help="the entry graph to show (default: the main one)")
def command(model: str, as_json: bool, entry: str | None) -> None:
    """Show a bundle's (or an int8 .tflite model's) entries, operators, tensor sizes,
    parameters and MACs."""
    from rich.console import Console
    from rich.table import Table

    report = bundle_report(open_bundle(model), entry)
    if model.lower().endswith(".edge"):  # what `edge run` does with the main entry
        from sdk.aot import find

        prog, why = find(model)
        report["aot"] = {"module": str(prog.directory) if prog is not None else None,
                         "refused": why}
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"[bold]{report['model_name']}[/bold]  (bundle format "
                  f"v{report['format_version']})")
    if len(report["entries"]) > 1 or report["entries"][0]["state"]:
        for x in report["entries"]:
            arena = "?" if x["arena_bytes"] is None else f"{x['arena_bytes']:,}"
            state = f", state {', '.join(x['state'])}" if x["state"] else ""
            mark = "*" if x["name"] == report["entry"] else " "
            console.print(f" {mark}entry {x['name']}: {', '.join(x['inputs'])} -> "
                          f"{', '.join(x['outputs'])}; {x['macs']:,} MACs, arena {arena} "
                          f"bytes{state}", highlight=False)
    for kind in ("inputs", "outputs"):
        for io in report[kind]:
            q = io["quant"] or {}
            console.print(f"  {kind[:-1]} {io['name']}: {io['shape']} float32 ↔ "
                          f"{io['quant_dtype']} scale={q.get('scale')} zp={q.get('zero_point')}")
    table = Table(show_lines=False)
    for col, just in (("#", "right"), ("node", "left"), ("op", "left"), ("output shape", "left"),
                      ("dtype", "left"), ("out bytes", "right"), ("param bytes", "right"),
                      ("MACs", "right"), ("arena offset", "right")):
        table.add_column(col, justify=just)
    for k, r in enumerate(report["nodes"]):
        table.add_row(str(k), r["name"], r["op"], str(r["shape"]), str(r["dtype"]),
                      str(r["output_bytes"] if r["output_bytes"] is not None else "?"),
                      str(r["param_bytes"]), f"{r['macs']:,}",
                      "-" if r["arena_offset"] is None else str(r["arena_offset"]))
    console.print(table)
    console.print(f"total: {len(report['nodes'])} nodes, {report['total_param_bytes']:,} parameter "
                  f"bytes, {report['total_macs']:,} MACs")
    console.print(memory_line(report["memory"]), highlight=False)
    console.print(executor_line(report["executor"]), highlight=False)
    if "aot" in report:
        a = report["aot"]
        console.print("edge run: " + (f"ahead-of-time module {a['module']} (no Numba)"
                                      if a["module"] else
                                      f"no ahead-of-time module ({a['refused']})"
                                      if a["refused"] else
                                      "no ahead-of-time module (`edge aot` builds one)"),
                      highlight=False, soft_wrap=True)


def executor_line(ex: dict) -> str:
    """One line: how a Session runs this entry on this machine (compiled program or
    interpreter, and why) and the int8 GEMM path picked from the CPU's features."""
    size = (f", {ex['lines']} generated lines" if ex.get("lines")
            and "generated lines" not in ex["why"] else "")
    threads = f", {ex['gemm_threads']}" if ex.get("gemm_threads") else ""
    return (f"executor: {ex['executor']} ({ex['why']}{size}); int8 GEMM path: "
            f"{ex['gemm_path']}{threads}")


def memory_line(memory: dict) -> str:
    """One line for a bundle's arena plan totals (the manifest's ``memory`` entry)."""
    if not memory.get("planned"):
        return f"memory: {memory.get('note') or 'no arena plan in this bundle'}"
    note = f" ({memory['note']})" if memory.get("note") else ""
    return (f"memory: peak arena {memory['peak_arena_bytes']:,} bytes (no reuse: "
            f"{memory['unplanned_bytes']:,}), weights {memory['weight_bytes']:,} bytes, "
            f"flash {memory['flash_bytes']:,} bytes{note}")
