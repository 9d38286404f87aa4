"""The README's checkable claims: every `edge ...` command it shows exists with the flags shown,
every repository path it names exists, the benchmark tools take --quick and --json, `make
demo` is described as what the Makefile runs, ORT / LiteRT are not called bit-exact, and the
tour's first lines make the model.onnx, calib.npz and x.npz the rest of it uses."""

from __future__ import annotations

import glob
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from sdk.cli.main import cli, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 3)
    return README[start:end if end > 0 else len(README)]


def _tour_block() -> str:
    tour = _section("A tour of the command line")
    m = re.search(r"```bash\n(.*?)```", tour, re.DOTALL)
    assert m, "the tour has a bash block"
    return m.group(1)


def _edge_lines() -> list[str]:
    """Every `edge ...` command line of the tour, and every backticked `edge ...` elsewhere."""
    lines = [ln.split("  #")[0].strip() for ln in _tour_block().splitlines()]
    found = [ln for ln in lines if ln.startswith("edge ")]
    found += [m.group(1) for m in re.finditer(r"`(edge [^`]+)`", README)]
    found += [ln.split("  #")[0].strip() for ln in README.splitlines()
              if ln.startswith("edge ") and ln.split("  #")[0].strip() not in found]
    assert len(found) >= 15
    return found


def _resolve(tokens: list[str]) -> tuple[list[str], click.Command]:
    path, cmd = [], cli
    for tok in tokens:
        if isinstance(cmd, click.Group) and tok in cmd.commands:
            path.append(tok)
            cmd = cmd.commands[tok]
        elif not tok.startswith("-"):
            continue
    return path, cmd


@pytest.mark.parametrize("line", sorted(set(_edge_lines())))
def test_every_edge_command_in_the_readme_exists_with_its_flags(line, capsys):
    tokens = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    path, cmd = _resolve(tokens)
    assert path, f"{line!r}: no such edge command"
    rc = main([*path, "--help"])
    help_text = capsys.readouterr().out
    assert rc in (0, None) and "Usage:" in help_text, line
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    for flag in (t.split("=")[0] for t in tokens if t.startswith("-")):
        assert flag in opts and flag in help_text, f"{line!r}: edge {' '.join(path)} has no {flag}"


_PATH = re.compile(r"(?<![\w./-])((?:sdk|docs|tools|samples|targets|firmware_bridge|tests)"
                   r"/[\w./*-]*[\w*])")


def test_every_repository_path_named_in_the_readme_exists():
    named = set(_PATH.findall(README)) | {m for m in re.findall(r"`([\w./-]+\.(?:md|py|toml|sh))`",
                                                               README) if "/" in m}
    assert len(named) >= 20
    missing = [p for p in sorted(named) if not glob.glob(str(ROOT / p))]
    assert not missing, f"README names paths that do not exist: {missing}"


def _bench_tools() -> list[str]:
    return sorted(set(re.findall(r"(tools/bench_\w+\.py)", _section("Benchmarks"))))


def test_benchmarks_section_claims_quick_and_json():
    text = _section("Benchmarks")
    assert "--quick" in text and "--json" in text
    assert len(_bench_tools()) >= 5


@pytest.mark.parametrize("tool", _bench_tools())
def test_benchmark_tool_accepts_quick_and_json(tool):
    out = subprocess.run([sys.executable, str(ROOT / tool), "--help"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--quick" in out.stdout and "--json" in out.stdout, tool


def test_make_demo_is_described_as_what_the_makefile_runs():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n\t(.+)$", makefile, re.MULTILINE).group(1).strip()
    assert recipe in README, f"README does not say that make demo runs {recipe!r}"
    setup = _section("Set up on a fresh machine")
    assert "emulator mode" not in setup.split("```")[1], "make demo does not use the emulator"
    cmd = recipe.split("edge", 1)[1].split()
    _, demo = _resolve(cmd)
    assert demo.name == "kws"


def test_ort_and_litert_are_not_called_bit_exact():
    flat = " ".join(README.split())
    for sentence in re.split(r"(?<=\.)\s", flat):
        if re.search(r"bit[- ]exact|bit for bit", sentence) and re.search(
                r"ONNX Runtime|LiteRT", sentence):
            assert "tolerance" in sentence and "docs/backends.md" in sentence, sentence
    numerics = (ROOT / "docs" / "backends.md").read_text()
    assert "LSB" in numerics


def test_the_readme_names_tflite_for_the_commands_that_take_it():
    for cmd in ("compile", "run", "inspect", "profile"):
        assert any(ln.startswith(f"edge {cmd} ") and ".tflite" in ln
                   for ln in _tour_block().splitlines()), cmd


def test_the_tour_setup_lines_make_its_files(tmp_path, monkeypatch, capsys):
    """The tour's lines before its first `edge compile` are run as written (in a temporary
    directory); then the tour's compile and run of model.onnx / model.edge work on them."""
    monkeypatch.chdir(tmp_path)
    setup = []
    for ln in _tour_block().splitlines():
        cmd = ln.split("  #")[0].strip()
        if cmd.startswith("edge compile"):
            break
        if cmd and not cmd.startswith(("source ", "edge demo kws")):
            setup.append(cmd)
    assert setup and setup[0].startswith("edge demo")
    for cmd in setup:
        if cmd.startswith("edge "):
            assert main([*shlex.split(cmd)[1:], "--runs", "1"]) == 0, cmd
        elif cmd.startswith("python "):
            args = shlex.split(cmd)
            assert subprocess.run([sys.executable, *args[1:]], check=False).returncode == 0, cmd
        elif cmd.startswith("cp "):
            a, b = shlex.split(cmd)[1:]
            Path(b).write_bytes(Path(a).read_bytes())
        else:
            pytest.fail(f"the test does not know how to run {cmd!r}")
    for name in ("model.onnx", "calib.npz", "x.npz", "x.npy"):
        assert Path(name).is_file(), name
    assert main(["compile", "model.onnx", "--calib", "calib.npz", "-o", "model.edge"]) == 0
    assert main(["run", "model.edge", "--input", "x.npz", "--output", "y.npz"]) == 0
    assert main(["run", "model.onnx", "--input", "x.npy", "--output", "y.npz"]) == 0
    assert np.load("y.npz")["logits"].shape == (1, 10)
    capsys.readouterr()
