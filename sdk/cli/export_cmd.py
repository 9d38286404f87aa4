"""`edge export MODEL.edge --format mender|rauc|swupdate -o FILE`: an OTA artifact for a fleet
that hands the model to each board's `edge agent` (see sdk.agent.export)."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["mender", "rauc", "swupdate"]),
              help="mender: Update Module artifact (type edge-model); rauc: signed plain "
                   "bundle; swupdate: .swu")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="artifact to write (default MODEL.mender / .raucb / .swu)")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False),
              help="Ed25519 key (edge keys generate) the agent checks the deploy against")
@click.option("--device-type", "device_types", multiple=True,
              help="mender: compatible device types (default raspberrypi4); swupdate: the "
                   "hardware revisions accepted (hardware-compatibility, default 1.0)")
@click.option("--cms-cert", type=click.Path(dir_okay=False, exists=True),
              help="rauc (required) and swupdate: PEM X.509 signing certificate the board's "
                   "RAUC keyring / SWUpdate CA trusts")
@click.option("--cms-key", type=click.Path(dir_okay=False, exists=True),
              help="PEM private key of --cms-cert")
@click.option("--compatible", default="edge-model", show_default=True,
              help="rauc: the compatible string of the board's system.conf")
def command(model, fmt, output, sign_key, device_types, cms_cert, cms_key, compatible) -> None:
    """Write a Mender, RAUC or SWUpdate artifact that deploys MODEL through the board agent."""
    from pathlib import Path

    from sdk.agent.export import export

    suffix = {"mender": ".mender", "rauc": ".raucb", "swupdate": ".swu"}[fmt]
    out = Path(output) if output else Path(model).with_suffix(suffix)
    path = export(model, fmt, out, sign_key=sign_key, device_types=tuple(device_types),
                  cms_cert=cms_cert, cms_key=cms_key, compatible=compatible)
    click.echo(f"wrote {path} ({fmt}, {path.stat().st_size:,} bytes)"
               + ("" if sign_key else "; unsigned: the agent takes it only with --allow-unsigned"))
