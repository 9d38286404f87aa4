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
    import sdk

    r = _edge("--version")
    assert r.returncode == 0, r.stderr
    assert sdk.__version__ in r.stdout


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


def test_unknown_command_is_one_line_error():
    r = _edge("no-such-command")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr


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
