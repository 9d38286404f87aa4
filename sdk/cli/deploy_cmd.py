"""`edge deploy MODEL.edge --device URL [--sign KEY]`: send a bundle to a board's agent, which
installs it into its inactive slot, health-checks it and commits or rolls back."""

from __future__ import annotations

import click

from sdk.errors import DeviceError


@click.command("deploy")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--device", help="the agent's URL, e.g. http://raspberrypi.local:4910 "
                               "(env EDGE_DEVICE)")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False),
              help="Ed25519 private key (from `edge keys generate`) to sign the deploy with")
@click.option("--token", help="the agent's access token (env EDGE_DEVICE_TOKEN, or "
                              "~/.config/edge/devices.toml)")
@click.option("--ca", type=click.Path(dir_okay=False),
              help="CA/certificate file that signs the agent's HTTPS certificate")
@click.option("--selftest", type=click.Path(dir_okay=False, exists=True),
              help="self-test .npz to send instead of computing one on the reference kernels")
@click.option("--signature", "signature", type=click.Path(dir_okay=False, exists=True),
              help="a signature.json made earlier (e.g. inside an `edge export` artifact) "
                   "instead of --sign")
@click.option("--selftest-cases", default=3, show_default=True, type=click.IntRange(1, 64),
              help="random cases in the computed self-test")
@click.option("--timeout", default=600.0, show_default=True, type=click.FloatRange(1, 86400),
              help="seconds to wait for the upload and the health check")
def command(model, device, sign_key, token, ca, selftest, signature, selftest_cases,
            timeout) -> None:
    """Deploy a compiled bundle to a board running `edge agent`."""
    from pathlib import Path

    from sdk.agent.client import DeviceClient, prepare_deploy

    if signature and sign_key:
        raise click.UsageError("give --sign KEY or --signature FILE, not both")
    if signature and not selftest:
        raise click.UsageError("--signature signs one self-test: pass it with --selftest")
    client = DeviceClient(device, token=token, ca=ca, timeout=timeout)
    data, st_bytes, sig, name = prepare_deploy(model, sign_key, selftest, selftest_cases)
    if signature:
        sig = Path(signature).read_bytes()
    try:
        res = client.deploy(data, st_bytes, sig)
    except DeviceError as exc:
        raise DeviceError(f"deploy of {name!r} failed: {exc}") from None
    t = res.get("self_test", {})
    click.echo(f"deployed {name!r} to {client.url}: slot {res['slot']}, "
               f"{'signed by key ' + res['signed_by'] if res.get('signed_by') else 'unsigned'}, "
               f"health check passed ({t.get('reason', '')}), committed")
