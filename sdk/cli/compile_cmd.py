"""`edge compile MODEL.onnx --calib CALIB.npz -o OUT.edge`."""

from __future__ import annotations

from pathlib import Path

import click

from sdk.cli.arrays import load_arrays
from sdk.cli.inspect_cmd import memory_line
from sdk.errors import CalibrationError
from sdk.quant.observers import OBSERVERS


@click.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--calib", type=click.Path(dir_okay=False),
              help="calibration .npz: one array per model input, first axis = samples "
                   "(not needed for QDQ models)")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="bundle to write (default: MODEL with the .edge suffix)")
@click.option("--observer", type=click.Choice(sorted(OBSERVERS)), default="minmax",
              show_default=True, help="how calibration picks each activation's range")
@click.option("--activation-bits", type=click.Choice(["8", "16"]), default="8",
              show_default=True, help="integer width of activations")
@click.option("--per-channel/--per-tensor", default=True, show_default=True,
              help="weight scales per output channel or per tensor")
@click.option("--mixed-precision/--no-mixed-precision", default=True, show_default=True,
              help="int16 for attention scores, LayerNorm inputs and the residual stream")
@click.option("--target", help="board profile (`edge targets`): check RAM/flash/op limits and "
                               "print which nodes run on which backend")
@click.option("--backend", help="backend for the plan (default: the target's); see "
                                "sdk.backends.BACKENDS")
def command(model: str, calib: str | None, output: str | None, observer: str,
            activation_bits: str, per_channel: bool, mixed_precision: bool,
            target: str | None = None, backend: str | None = None) -> None:
    """Quantize an ONNX model to integers and write a .edge bundle."""
    from sdk.compile import compile_model
    from sdk.errors import ModelFormatError

    if not Path(model).is_file():
        raise ModelFormatError(f"{model}: no such model file; check the path")
    data = load_arrays(calib, [], CalibrationError, "calibration") if calib else None
    bundle = compile_model(model, data, observer=observer,
                           activation_bits=int(activation_bits), per_channel=per_channel,
                           mixed_precision=mixed_precision)
    out = Path(output) if output else Path(model).with_suffix(".edge")
    if target or backend:  # emulator-mode limits fail before anything is written
        from sdk.backends import check_fits, default_backend, partition

        if target:
            click.echo(f"fits {check_fits(bundle.graph, target)}")
        click.echo(str(partition(bundle.graph, backend or default_backend(target), target)))
    bundle.save(out)
    m = bundle.manifest
    ops = sorted(set(m["ops"]))
    click.echo(f"compiled {m['model_name']}: {len(m['ops'])} nodes ({', '.join(ops)})")
    click.echo(f"  parameters {m['parameter_bytes']} bytes, {m['macs']} MACs per inference")
    click.echo(f"  {memory_line(m['memory'])}")
    for io in m["inputs"] + m["outputs"]:
        q = io["quant"]
        if q:
            click.echo(f"  {io['name']}: {io['shape']} {io['quant_dtype']} "
                       f"scale={q['scale']:.6g} zero_point={q['zero_point']}")
    click.echo(f"wrote {out} ({out.stat().st_size} bytes)")
