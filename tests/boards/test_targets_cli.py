"""`edge targets [--json]` and `edge targets show NAME` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EDGE = [sys.executable, "-m", "sdk.cli.main"]


def edge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    return subprocess.run(check=False, args=[*EDGE, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_targets_lists_every_board() -> None:
    out = edge("targets")
    assert out.returncode == 0, out.stderr
    for name in ("laptop", "raspberry-pi-5", "jetson-orin-nano", "stm32h7", "mps2-an386"):
        assert name in out.stdout


def test_targets_json() -> None:
    out = edge("targets", "--json")
    boards = {b["name"]: b for b in json.loads(out.stdout)}
    assert boards["coral-dev-board"]["accelerators"][0]["name"] == "Edge TPU"


def test_show_one_board() -> None:
    out = edge("targets", "show", "corstone-300-ethos-u55")
    assert out.returncode == 0
    assert "Ethos-U55-128" in out.stdout and "128 MAC/cycle" in out.stdout


def test_show_user_board_from_env(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "targets" / "stm32h7.toml"
    (tmp_path / "lab.toml").write_text(src.read_text().replace('name = "stm32h7"',
                                                               'name = "lab-board"'))
    out = edge("targets", "show", "lab-board", env={"EDGE_TARGETS_PATH": str(tmp_path)})
    assert out.returncode == 0 and "lab-board" in out.stdout


def test_show_unknown_board_is_one_line_error() -> None:
    out = edge("targets", "show", "nope")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown target 'nope'" in out.stderr
