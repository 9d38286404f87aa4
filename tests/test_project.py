"""Project-wide contracts: the CLI's help/version forms and the torch-free SDK."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _edge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdk.cli.main", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_version_prints_package_version():
    import tomllib

    import sdk

    # the version the package is built with (pyproject.toml), not the CLI's own source of it
    built = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert sdk.__version__ == built
    r = _edge("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"edge, version {built}"


def test_help_lists_core_commands():
    r = _edge("--help")
    assert r.returncode == 0, r.stderr
    for cmd in ("compile", "run", "inspect"):
        assert cmd in r.stdout, f"`edge --help` does not list {cmd!r}"


def _registered_commands() -> list[str]:
    from sdk.cli.main import cli

    return sorted(cli.commands)


@pytest.mark.parametrize("cmd", _registered_commands())
def test_every_command_has_help(cmd):
    r = _edge(cmd, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_every_command_module_is_registered():
    # main._register skips a module that does not exist yet; every listed one must now
    from sdk.cli.main import COMMAND_MODULES, cli

    for mod_name in COMMAND_MODULES:
        mod = __import__(f"sdk.cli.{mod_name}", fromlist=["command"])
        assert cli.commands.get(mod.command.name) is mod.command, mod_name


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_unknown_command_is_one_line_error():
    r = _edge("no-such-command")
    assert r.returncode != 0
    line = _one_line(r.stderr)
    assert "no-such-command" in line and "--help" in line


def test_bad_option_is_one_line_error():
    r = _edge("compile", "--no-such-option")
    assert r.returncode != 0
    line = _one_line(r.stderr)
    assert "--no-such-option" in line and "edge compile --help" in line


def test_sdk_never_imports_torch():
    offenders = []
    for path in (ROOT / "sdk").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "torch" or n.startswith("torch.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"torch is for training only; imported by {offenders}"
