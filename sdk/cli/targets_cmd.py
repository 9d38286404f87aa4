"""`edge targets [--json]` lists the boards; `edge targets show NAME` prints one."""

from __future__ import annotations

import json

import click


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def _bytes(n: int) -> str:
    for factor, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} B"


@click.group("targets", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print the boards as JSON")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List the known boards (built-in and from $EDGE_TARGETS_PATH)."""
    if ctx.invoked_subcommand is not None:
        return
    from targets import list_targets

    boards = list_targets()
    if as_json:
        click.echo(json.dumps([t.to_json() for t in boards.values()], indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "CPU", "RAM", "flash", "accelerator", "delegates")
    for t in boards.values():
        acc = t.accelerator()
        acc_text = (f"{acc.name} {_si(acc.peak_int8_ops_per_s, 'OPS')}"
                    + (" (optional)" if acc.optional else "")) if acc else "-"
        table.add_row(t.name, f"{t.cpu.cores}x {t.cpu.core} @ {_si(t.cpu.clock_hz, 'Hz')}",
                      _bytes(t.memory.ram_bytes), _bytes(t.memory.flash_bytes), acc_text,
                      " > ".join(t.delegates))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


@command.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print the board as JSON")
def show(name: str, as_json: bool) -> None:
    """Print one board: NAME, or a path to a TOML file."""
    from targets import load_target

    t = load_target(name)
    if as_json:
        click.echo(json.dumps(t.to_json(), indent=1))
        return
    lines = [f"{t.name}: {t.description}", f"  file: {t.source_file}",
             (f"  cpu: {t.cpu.cores}x {t.cpu.core} ({t.cpu.arch}, {t.cpu.simd or 'scalar'}) @ "
              f"{_si(t.cpu.clock_hz, 'Hz')}, {t.cpu.int8_macs_per_cycle:g} int8 MAC/cycle/core"),
             (f"  memory: {_bytes(t.memory.ram_bytes)} RAM, {_bytes(t.memory.flash_bytes)} "
              f"flash/storage ({t.memory.storage}), "
              f"{_si(t.memory.bandwidth_bytes_per_s, 'B/s')}; "
              f"weights in {t.memory.weights_in}, activations in {t.memory.activations_in}")]
    for a in t.accelerators:
        lines.append(f"  accelerator: {a.name} ({a.kind}{', optional' if a.optional else ''}) "
                     f"{_si(a.peak_int8_ops_per_s, 'OPS')} int8, "
                     f"{a.macs_per_cycle or 'unpublished'} MAC/cycle, SRAM "
                     f"{_bytes(a.onchip_sram_bytes) if a.onchip_sram_bytes else 'n/a'}, "
                     f"{_si(a.bandwidth_bytes_per_s, 'B/s')}, delegate {a.delegate}")
        lines.append(f"    accepts: {', '.join(a.ops)}")
    lines.append(f"  delegates: {' > '.join(t.delegates)}")
    lines.append(f"  power: active {t.power.active_w:g} W, idle {t.power.idle_w:g} W"
                 + (f" ({t.power.source})" if t.power.source else ""))
    for s in t.power_sensors:
        params = ", ".join(f"{k}={v}" for k, v in s.params.items())
        lines.append(f"  sensor: {s.kind}" + (f" ({params})" if params else ""))
    lines.append(f"  energy table: {t.energy_table}"
                 + (f" with overrides {t.energy_overrides}" if t.energy_overrides else ""))
    click.echo("\n".join(lines))
