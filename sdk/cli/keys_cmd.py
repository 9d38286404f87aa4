"""`edge keys generate`: an Ed25519 key pair to sign deploys with (`edge deploy --sign`)."""

from __future__ import annotations

import click


@click.group("keys")
def command() -> None:
    """Signing keys for deploys to boards."""


@command.command("generate")
@click.option("-o", "--output", default="edge-signing.key", show_default=True,
              type=click.Path(dir_okay=False),
              help="private key file (mode 0600); the public key goes to OUTPUT.pub")
@click.option("--force", is_flag=True, help="replace existing files")
def generate(output: str, force: bool) -> None:
    """Make a signing key pair; print the public key to give to `edge agent --trust`."""
    from sdk.agent.signing import generate_key

    key, pub, line = generate_key(output, force=force)
    click.echo(f"wrote {key} (private, keep it on the host) and {pub}")
    click.echo(f"public key (on the board: edge agent --trust '{line}'):")
    click.echo(line)
