"""`edge agent`: the board side. Serves the deploy/run API over HTTP(S) with A/B model slots
(see sdk.agent.server); `--install-service` makes it a systemd service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from sdk.errors import InputError


@click.command("agent")
@click.option("--root", type=click.Path(file_okay=False, readable=False),
              help="where slots, token, trusted keys and logs live (default /var/lib/edge-agent "
                   "as root, else ~/.local/share/edge-agent; env EDGE_AGENT_ROOT)")
@click.option("--host", default="0.0.0.0", show_default=True, help="address to listen on")
@click.option("--port", default=4910, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0: any free port; the URL is printed and written to ROOT/agent.url)")
@click.option("--trust", "trust", multiple=True,
              help="a public key to accept signed deploys from: 'ed25519:BASE64' or a .pub file "
                   "from `edge keys generate` (repeatable; kept in ROOT/trusted_keys)")
@click.option("--allow-unsigned", is_flag=True,
              help="accept deploys without a signature when no key is trusted (bench boards)")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True),
              help="PEM certificate: serve HTTPS")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True),
              help="PEM private key of --tls-cert")
@click.option("--backend", default="reference", show_default=True,
              help="what runs the health check: reference (Numba kernels, bit-exact), "
                   "reference-numpy, or a delegate backend (onnxruntime, litert ...)")
@click.option("--tolerance", type=click.IntRange(0, 255),
              help="LSB the health check allows on a delegate backend (default 1; the SDK's "
                   "kernels must be bit-exact)")
@click.option("--target", help="board profile (e.g. raspberry-pi-4, jetson-orin-nano) whose "
                               "power sensor `edge device profile` reads")
@click.option("--max-upload-mb", default=256, show_default=True, type=click.IntRange(1, 65536),
              help="largest deploy or run upload accepted")
@click.option("--health-timeout", default=300.0, show_default=True,
              type=click.FloatRange(1, 86400),
              help="seconds the health check may take before the deploy is rolled back")
@click.option("--install-service", is_flag=True,
              help="write the systemd unit (edge-agent.service) for these options, enable and "
                   "start it, print the token, and exit")
@click.option("--systemd-dir", default="/etc/systemd/system", show_default=True,
              type=click.Path(file_okay=False), help="where --install-service writes the unit")
@click.option("--no-enable", is_flag=True, help="with --install-service: only write the unit")
def command(root, host, port, trust, allow_unsigned, tls_cert, tls_key, backend, tolerance,
            target, max_upload_mb, health_timeout, install_service, systemd_dir,
            no_enable) -> None:
    """Run the board agent: receive signed bundles into A/B slots, health-check, commit or
    roll back, and run the active model for the host."""
    from sdk.agent import server

    root_path = Path(root).resolve() if root else server.default_root()
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if target:
        from targets import load_target

        load_target(target)  # one-line TargetError for an unknown profile
    root_path.mkdir(parents=True, exist_ok=True)
    trusted = server.add_trusted(root_path, list(trust)) if trust else \
        server.load_trusted(root_path)
    config = server.AgentConfig(
        root=root_path, host=host, port=port, allow_unsigned=allow_unsigned,
        tls_cert=tls_cert, tls_key=tls_key, backend=backend, tolerance=tolerance,
        target=target, max_upload_bytes=max_upload_mb << 20, trusted=trusted,
        health_timeout_s=health_timeout)
    if backend != "reference":
        from sdk.backends import BACKENDS

        if backend not in BACKENDS:
            raise InputError(f"--backend {backend!r} is not one of {sorted(BACKENDS)}")
    if install_service:
        from sdk.agent.service import install_service as install

        args = ["--root", str(root_path), "--host", host, "--port", str(port),
                "--backend", backend, "--max-upload-mb", str(max_upload_mb),
                "--health-timeout", str(health_timeout)]
        for flag, val in (("--tls-cert", tls_cert), ("--tls-key", tls_key),
                          ("--target", target), ("--tolerance", tolerance)):
            if val is not None:
                args += [flag, str(Path(val).resolve()) if flag.startswith("--tls") else str(val)]
        if allow_unsigned:
            args.append("--allow-unsigned")
        token, new = server.ensure_token(root_path)
        unit, done = install(args, root_path, Path(systemd_dir), enable=not no_enable)
        click.echo(f"edge agent: {unit} {done}")
        from sdk.agent.service import install_mender_module

        module = install_mender_module()
        if module is not None:
            click.echo(f"edge agent: Mender Update Module installed: {module}")
        click.echo(f"edge agent: trusted keys: {len(trusted)}"
                   + ("" if trusted or allow_unsigned else
                      " (no deploy is accepted until you add one with --trust)"))
        if new:
            click.echo(f"edge agent: access token (stored in {root_path / 'token'}, mode 0600; "
                       f"shown only now): {token}")
        else:
            click.echo(f"edge agent: the access token is in {root_path / 'token'}")
        return
    try:
        asyncio.run(server.serve(config, announce=lambda s: click.echo(s)))
    except KeyboardInterrupt:
        pass
