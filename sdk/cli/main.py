"""`edge` entry point. Each command lives in its own module under sdk/cli/ and is registered
here; a command module defines a click command (or group) named ``command``."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

import sdk
from sdk.errors import EdgeError

# module name under sdk.cli -> registered lazily so one broken command cannot break the rest
COMMAND_MODULES = [
    "compile_cmd", "run_cmd", "aot_cmd", "inspect_cmd", "demo_cmd",
    "targets_cmd", "profile_cmd", "emulate_cmd", "flash_cmd",
    # Linux boards (agent, deploy, device, keys, export) and generation; skipped until built
    "agent_cmd", "deploy_cmd", "device_cmd", "keys_cmd", "export_cmd", "generate_cmd",
]


class _LazyGroup(click.Group):
    """A group that imports a command's module when that command runs (``edge run`` imports
    run_cmd only: other modules pull in Numba, ONNX Runtime ...); :attr:`commands` (help,
    listing, tests) imports them all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._table: dict[str, click.Command] = {}
        self._complete = False
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:  # type: ignore[override]
        if not self._complete:
            self._complete = True
            _register()
        return self._table

    @commands.setter
    def commands(self, value: Any) -> None:
        self._table = dict(value or {})

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        self._table[name or cmd.name] = cmd

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._table and f"{cmd_name}_cmd" in COMMAND_MODULES:
            _load(f"{cmd_name}_cmd")
        found = self._table.get(cmd_name)
        return found if found is not None else self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(sdk.__version__, prog_name="edge")
def cli() -> None:
    """Edge SDK: compile models to integer graphs, run, profile and deploy them."""


def _load(mod_name: str) -> None:
    try:
        mod = importlib.import_module(f"sdk.cli.{mod_name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"sdk.cli.{mod_name}":
            return  # command not built yet
        raise
    cli.add_command(mod.command)


def _register() -> None:
    for mod_name in COMMAND_MODULES:
        _load(mod_name)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edge", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `edge`: the help text
        exc.show()
        return exc.exit_code
    except click.exceptions.UsageError as exc:  # one line, not click's usage block
        where = exc.ctx.command_path if exc.ctx else "edge"
        click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
        return exc.exit_code
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except EdgeError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
