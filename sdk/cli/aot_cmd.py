"""`edge aot MODEL.edge [--beside | --out DIR]`: compile a bundle's program ahead of time."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sdk.errors import ModelFormatError


@click.command("aot")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--beside", is_flag=True,
              help="write MODEL.edge.aot/ next to the bundle (to ship with it to a board of "
                   "the same CPU, Python and NumPy) instead of the program cache")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="write the module directory here (`edge run` looks only in "
                   "MODEL.edge.aot/ and the cache: move it to one of those)")
@click.option("--check", is_flag=True,
              help="build nothing: say whether `edge run` finds a valid module, or why not")
def command(model: str, beside: bool, out_dir: str | None, check: bool) -> None:
    """Compile a bundle's program ahead of time into a native module (numba.pycc, this
    CPU) that `edge run` loads without importing Numba. Needs a C compiler; takes as long
    as a cold compile of the program."""
    from sdk import aot

    if Path(model).suffix.lower() != ".edge" or not Path(model).is_file():
        raise ModelFormatError(f"{model}: expected an existing .edge bundle")
    if beside and out_dir:
        raise click.UsageError("--beside and --out both name the directory; give one")
    if check:
        prog, why = aot.find(model)
        if prog is None:
            raise aot.AotError(why or f"{model}: no ahead-of-time module (build one with "
                                      "`edge aot`)")
        click.echo(f"valid: {prog.directory}")
        return
    t0 = time.perf_counter()
    target = aot.build(model, aot.beside(model) if beside else out_dir)
    size = sum(p.stat().st_size for p in target.iterdir())
    click.echo(f"wrote {target} ({size / 1024:.0f} KiB, {time.perf_counter() - t0:.1f} s); "
               "`edge run` uses it on this CPU, Python and NumPy")
