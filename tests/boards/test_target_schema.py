"""The board TOML schema of targets/README.md is enforced: an unknown key at any table level, or
a value of the wrong type, is a one-line TargetError naming the file, the key and what was
expected; a binary or unparsable file in EDGE_TARGETS_PATH is skipped (one line naming it)
without hiding the other boards, and asking for that board by name is the one-line error."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdk.errors import TargetError
from targets import ENV_VAR, list_targets, load_target, parse_target, skipped_targets

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "targets"


def _board(tmp_path: Path, base: str, edit: tuple[str, str] | list[tuple[str, str]],
           name: str = "my-board") -> Path:
    text = (BUILTIN_DIR / f"{base}.toml").read_text()
    text = text.replace(f'name = "{base}"', f'name = "{name}"', 1)
    for old, new in edit if isinstance(edit, list) else [edit]:
        if old:
            assert old in text, old
            text = text.replace(old, new, 1)
        else:
            text += new
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


# (base board, (text to replace or "" to append, replacement), key named, expectation named)
UNKNOWN_KEYS = [
    ("raspberry-pi-4", ('delegates = ["xnnpack", "cpu"]',
                        'delegates = ["xnnpack", "cpu"]\ndelegate = "cpu"'), "'delegate'", "delegates"),
    ("raspberry-pi-4", ("simd = \"neon\"", "simd = \"neon\"\nclock_mhz = 1500"), "'cpu.clock_mhz'",
     "clock_hz"),
    ("raspberry-pi-4", ("weights_in = \"dram\"", "weights_in = \"dram\"\nram_gb = 4"),
     "'memory.ram_gb'", "ram_bytes"),
    ("raspberry-pi-4", ("idle_w = 2.7", "idle_w = 2.7\nidle_watts = 2.7"), "'power.idle_watts'",
     "idle_w"),
    ("raspberry-pi-5", ("optional = true", "optional = true\noptinal = true"),
     "'accelerators[0].optinal'", "optional"),
    ("raspberry-pi-4", ("shunt_ohms = 0.1", "shunt_ohms = 0.1\nshunt = 0.1"),
     "'power_sensors[0].shunt'", "shunt_ohms"),
    ("raspberry-pi-4", ("", "\ntables = \"horowitz-45nm\"\n"), "'energy.tables'", "table"),
    ("raspberry-pi-4", ("", "\n[gpu]\ncores = 1\n"), "'gpu'", "accelerators"),
    ("stm32h7", ('counter = "DWT->CYCCNT"', 'counter = "DWT->CYCCNT"\nbus = 1'),
     "'power_sensors[0].bus'", "counter"),
]


@pytest.mark.parametrize("base,edit,key,expected", UNKNOWN_KEYS)
def test_unknown_key_is_an_error_naming_file_key_and_expected(tmp_path, base, edit, key, expected):
    p = _board(tmp_path, base, edit)
    with pytest.raises(TargetError) as e:
        parse_target(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(p) in msg and key in msg and "unknown key" in msg and expected in msg, msg


# (the loader already checked the plain scalars of [cpu], [memory], [power] and [energy]; these
# are the values it passed through unchecked)
WRONG_TYPES = [
    ("raspberry-pi-4", ("shunt_ohms = 0.1", 'shunt_ohms = "0.1"'), "'power_sensors[0].shunt_ohms'",
     "a positive number"),
    ("raspberry-pi-4", ("address = 0x40", 'address = "0x40"'), "'power_sensors[0].address'",
     "an integer"),
    ("raspberry-pi-5", ('command = ["vcgencmd", "pmic_read_adc"]', 'command = "vcgencmd"'),
     "'power_sensors[0].command'", "a list of strings"),
    ("stm32h7", ('counter = "DWT->CYCCNT"', "counter = 3"), "'power_sensors[0].counter'",
     "a string"),
]


@pytest.mark.parametrize("base,edit,key,expected", WRONG_TYPES)
def test_wrong_type_is_an_error_naming_file_key_and_expected(tmp_path, base, edit, key, expected):
    p = _board(tmp_path, base, edit)
    with pytest.raises(TargetError) as e:
        parse_target(p)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(p) in msg and key in msg and expected in msg, msg


def test_ina3221_needs_its_hwmon_glob(tmp_path):
    p = _board(tmp_path, "jetson-orin-nano",
               ('hwmon_glob = "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"\n', ""))
    with pytest.raises(TargetError, match=r"missing key 'power_sensors\[0\]\.hwmon_glob'"):
        parse_target(p)


def _bad_dir(tmp_path: Path) -> tuple[Path, Path, Path]:
    d = tmp_path / "boards"
    d.mkdir()
    binary = d / "junk.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    broken = d / "half.toml"
    broken.write_text('name = "half"\n[cpu\n')
    good = _board(d, "stm32h7", ("", ""), name="lab-h7")
    return binary, broken, good


def test_binary_or_unparsable_file_in_env_path_is_skipped_not_fatal(tmp_path, monkeypatch, caplog):
    binary, broken, _ = _bad_dir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(binary.parent))
    with caplog.at_level(logging.WARNING, logger="targets"):
        boards = list_targets()
    assert "lab-h7" in boards and "raspberry-pi-4" in boards
    skipped = {f: str(e) for f, e in skipped_targets()}
    assert set(skipped) == {binary, broken}
    assert "not UTF-8" in skipped[binary] and "not valid TOML" in skipped[broken]
    assert all("\n" not in m for m in skipped.values())
    warned = [r.getMessage() for r in caplog.records]
    assert any(str(binary) in w for w in warned) and any(str(broken) in w for w in warned)
    # other boards still load by name
    assert load_target("raspberry-pi-4").name == "raspberry-pi-4"
    assert load_target("lab-h7").name == "lab-h7"


def test_asking_for_the_broken_board_is_the_one_line_error(tmp_path, monkeypatch):
    binary, broken, _ = _bad_dir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(binary.parent))
    with pytest.raises(TargetError) as e:
        load_target("junk")
    assert str(binary) in str(e.value) and "not UTF-8" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TargetError, match="not valid TOML") as e:
        load_target(str(broken))
    assert "\n" not in str(e.value)


def test_a_broken_user_file_does_not_silently_give_the_built_in(tmp_path, monkeypatch):
    d = tmp_path / "boards"
    d.mkdir()
    _board(d, "raspberry-pi-4", ("cores = 4", "cores = 0"), name="raspberry-pi-4")
    monkeypatch.setenv(ENV_VAR, str(d))
    with pytest.raises(TargetError, match=r"'cpu\.cores' must be a positive integer"):
        load_target("raspberry-pi-4")
    assert load_target("stm32h7").name == "stm32h7"  # the others still load


def _edge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdk.cli.main", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env}, check=False)


def test_edge_targets_lists_the_good_boards_and_names_the_skipped_file(tmp_path):
    binary, broken, _ = _bad_dir(tmp_path)
    env = {ENV_VAR: str(binary.parent)}
    out = _edge("targets", env=env)
    assert out.returncode == 0, out.stderr
    assert "lab-h7" in out.stdout and "raspberry-pi-4" in out.stdout
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert any(str(binary) in ln and "not UTF-8" in ln for ln in lines), out.stderr
    assert any(str(broken) in ln and "not valid TOML" in ln for ln in lines), out.stderr
    run = _edge("targets", "show", "junk", env=env)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    err = [ln for ln in run.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and str(binary) in err[0], run.stderr
    ok = _edge("targets", "show", "raspberry-pi-4", env=env)
    assert ok.returncode == 0 and "Cortex-A72" in ok.stdout
