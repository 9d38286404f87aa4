"""`edge device status|rollback|logs|run|profile --device URL`: talk to a board's agent."""

from __future__ import annotations

import io
import json
from pathlib import Path

import click
import numpy as np

_device = click.option("--device", help="the agent's URL, e.g. http://raspberrypi.local:4910 "
                                        "(env EDGE_DEVICE)")
_token = click.option("--token", help="the agent's access token (env EDGE_DEVICE_TOKEN, or "
                                      "~/.config/edge/devices.toml)")
_ca = click.option("--ca", type=click.Path(dir_okay=False),
                   help="CA/certificate file that signs the agent's HTTPS certificate")


def _client(device, token, ca, timeout: float = 600.0):
    from sdk.agent.client import DeviceClient

    return DeviceClient(device, token=token, ca=ca, timeout=timeout)


@click.group("device")
def command() -> None:
    """Status, rollback, logs, runs and profiles of a board running `edge agent`."""


@command.command("status")
@_device
@_token
@_ca
@click.option("--json", "as_json", is_flag=True, help="print the agent's answer as JSON")
def status(device, token, ca, as_json) -> None:
    """The active model, its slot and signer, and the last deploy or rollback (and why)."""
    c = _client(device, token, ca)
    s = c.status()
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    m = s.get("model")
    click.echo(f"device {c.url}: edge agent {s['sdk_version']}, health check on "
               f"{s['backend']}, up {s['uptime_s']:.0f} s, signing {s['signing']}")
    if m:
        click.echo(f"active: {m['model_name']!r} in slot {s['active_slot']} "
                   f"({s['state']}), sha256 {str(m['bundle_sha256'])[:16]}, signed by "
                   f"{m.get('signed_by') or 'nobody'}, since {m.get('committed_at') or '?'}")
    else:
        click.echo("active: no model")
    prev = s.get("previous_slot")
    if prev and s["slots"].get(prev):
        click.echo(f"previous: {s['slots'][prev]['model_name']!r} in slot {prev} "
                   "(edge device rollback returns to it)")
    ev = s.get("last_event")
    if ev:
        what = ev.get("kind")
        if what == "rollback":
            click.echo(f"last event: rollback at {ev.get('at')} of {ev.get('model_name')!r}: "
                       f"{ev.get('reason')}")
        else:
            click.echo(f"last event: {what} of {ev.get('model_name')!r} at {ev.get('at')}")
    if s.get("deploy_in_progress"):
        d = s["deploy_in_progress"]
        click.echo(f"in progress: {d['what']} since {d['since']} ({d['phase']})")
    demo = s.get("demo")
    if demo:
        click.echo(f"demo: {demo.get('kind')} {demo.get('state')} on {demo.get('model')!r} "
                   f"from {demo.get('source')!r} since {demo.get('since')} "
                   "(edge demo ... --device stops it on Ctrl-C)")


@command.command("rollback")
@_device
@_token
@_ca
def rollback(device, token, ca) -> None:
    """Make the previous committed model active again."""
    c = _client(device, token, ca)
    r = c.rollback()
    click.echo(f"rolled back {c.url} to {r['model_name']!r} in slot {r['slot']}")


@command.command("logs")
@_device
@_token
@_ca
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(1, 10000))
def logs(device, token, ca, lines) -> None:
    """The tail of the agent's log."""
    click.echo(_client(device, token, ca).logs(lines), nl=False)


@command.command("run")
@_device
@_token
@_ca
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npz keyed by input name")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help=".npz to write, keyed by output name")
@click.option("--integer", is_flag=True,
              help="raw integer tensors in and out (no Quantize/Dequantize boundary)")
def run(device, token, ca, input_path, output, integer) -> None:
    """Run the board's active model on an .npz of inputs."""
    from sdk.errors import InputError

    p = Path(input_path)
    if not p.is_file():
        raise InputError(f"{p}: no such input file; check the path")
    if p.suffix.lower() != ".npz":
        raise InputError(f"{p}: edge device run takes an .npz keyed by input name")
    c = _client(device, token, ca)
    out, ms = c.run_npz(p.read_bytes(), integer=integer)
    if output:
        buf = io.BytesIO()
        np.savez(buf, **out)
        Path(output).write_bytes(buf.getvalue())
    for k, v in out.items():
        flat = np.asarray(v).ravel()
        head = ", ".join(f"{x:.4g}" if flat.dtype.kind == "f" else str(x) for x in flat[:6])
        click.echo(f"{k}: {v.dtype} {list(v.shape)} [{head}{', ...' if flat.size > 6 else ''}]")
    click.echo(f"ran on {c.url} in {ms:.3f} ms (on the board)"
               + (f"; wrote {output}" if output else ""))


@command.command("profile")
@_device
@_token
@_ca
@click.option("--runs", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="print the agent's answer as JSON")
def profile(device, token, ca, runs, as_json) -> None:
    """Latency of the active model measured on the board, and energy where its power sensor
    answers (Jetson INA3221, Pi 5 PMIC, an INA219 on a Pi 4; agent --target)."""
    c = _client(device, token, ca)
    r = c.profile(runs)
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return
    lat = r["latency_ms"]
    click.echo(f"{r['model_name']!r} on {c.url} ({r['backend']}, {r['runs']} runs): median "
               f"{lat['median']:.3f} ms, p90 {lat['p90']:.3f} ms, min {lat['min']:.3f} ms")
    if r.get("energy_mj_per_inference") is not None:
        click.echo(f"energy: {r['energy_mj_per_inference']:.4f} mJ per inference "
                   f"({r['energy_sensor']}, mean {r['mean_power_w']:.2f} W)")
    else:
        click.echo(f"energy: not measured ({r.get('energy_note')})")
