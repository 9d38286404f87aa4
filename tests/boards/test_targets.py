"""Board profiles: every built-in TOML loads with its published figures; user boards come from
a path or EDGE_TARGETS_PATH; a malformed file names the file, the key and what was expected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sdk.errors import TargetError
from targets import ENV_VAR, list_targets, load_target, parse_target

BUILTIN = ["laptop", "raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "coral-dev-board",
           "corstone-300-ethos-u55", "stm32h7", "mps2-an386"]
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "targets"


def test_all_required_boards_are_built_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert set(BUILTIN) <= set(list_targets())


@pytest.mark.parametrize("name", BUILTIN)
def test_board_profile_is_complete(name: str) -> None:
    t = load_target(name)
    assert t.name == name and t.cpu.cores >= 1 and t.cpu.clock_hz > 0
    assert t.memory.ram_bytes > 0 and t.memory.flash_bytes > 0
    assert t.delegates and t.power.active_w > t.power.idle_w >= 0
    assert t.power_sensors, "every board names how its power is read"
    json.dumps(t.to_json())


def test_published_figures() -> None:
    pi5 = load_target("raspberry-pi-5")
    assert (pi5.cpu.core, pi5.cpu.cores, pi5.cpu.clock_hz) == ("Cortex-A76", 4, 2.4e9)
    hailo = pi5.accelerator()
    assert hailo.name == "Hailo-8L" and hailo.optional and hailo.peak_int8_ops_per_s == 13e12
    assert pi5.accelerator(include_optional=False) is None
    u55 = load_target("corstone-300-ethos-u55").accelerator()
    assert u55.macs_per_cycle == 128
    assert u55.peak_int8_ops_per_s == 2 * u55.macs_per_cycle * u55.clock_hz
    tpu = load_target("coral-dev-board").accelerator()
    assert tpu.kind == "tpu" and tpu.peak_int8_ops_per_s == 4e12
    jetson = load_target("jetson-orin-nano")
    assert jetson.delegates == ("tensorrt", "cuda", "cpu") and jetson.cpu.cores == 6
    h7 = load_target("stm32h7")
    assert h7.is_mcu and h7.memory.ram_bytes == 1 << 20 and h7.memory.flash_bytes == 2 << 20
    assert h7.cpu.clock_hz == 480e6 and h7.memory.weights_in == "flash"
    an386 = load_target("mps2-an386")
    assert an386.cpu.core == "Cortex-M4" and an386.cpu.clock_hz == 25e6


def test_laptop_describes_this_host() -> None:
    t = load_target("laptop")
    assert t.host and t.cpu.cores == os.cpu_count()


def _copy(tmp_path: Path, name: str, new_name: str) -> Path:
    text = (BUILTIN_DIR / f"{name}.toml").read_text()
    text = text.replace(f'name = "{name}"', f'name = "{new_name}"', 1)
    p = tmp_path / f"{new_name}.toml"
    p.write_text(text)
    return p


def test_user_board_by_path(tmp_path: Path) -> None:
    p = _copy(tmp_path, "stm32h7", "my-h7")
    assert load_target(str(p)).name == "my-h7"


def test_user_boards_from_env_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy(tmp_path, "stm32h7", "my-h7")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert load_target("my-h7").source_file == str(tmp_path / "my-h7.toml")
    assert "laptop" in list_targets()


def test_unknown_target_lists_known_ones() -> None:
    with pytest.raises(TargetError, match="unknown target 'nope'.*stm32h7"):
        load_target("nope")


@pytest.mark.parametrize("edit, key, expected", [
    (('clock_hz = 480e6', 'clock_hz = "fast"'), "cpu.clock_hz", "a positive number"),
    (('cores = 1', 'cores = 0'), "cpu.cores", "a positive integer"),
    (('weights_in = "flash"', 'weights_in = "rom"'), "memory.weights_in", "one of"),
    (('delegates = ["cmsis-nn", "reference"]', 'delegates = "cmsis-nn"'), "delegates",
     "a list of strings"),
    (('kind = "mcu-cycles"', 'kind = "multimeter"'), "power_sensors[0].kind", "one of"),
    (('ram_bytes = 1048576\n', ''), "memory.ram_bytes", "missing key"),
])
def test_malformed_toml_names_file_key_and_expectation(tmp_path: Path, edit: tuple[str, str],
                                                       key: str, expected: str) -> None:
    p = _copy(tmp_path, "stm32h7", "bad-board")
    text = p.read_text()
    assert edit[0] in text
    p.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(TargetError) as err:
        parse_target(p)
    msg = str(err.value)
    assert str(p) in msg and f"'{key}'" in msg and expected in msg


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.toml"
    p.write_text('name = "x"\n[cpu\n')
    with pytest.raises(TargetError, match=f"{p} is not valid TOML"):
        parse_target(p)


def test_env_path_that_is_not_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(TargetError, match="not a directory"):
        list_targets()


def test_energy_overrides_are_checked(tmp_path: Path) -> None:
    from sdk.profile.energy import table_for
    p = _copy(tmp_path, "stm32h7", "tuned")
    p.write_text(p.read_text() + "\n[energy.pj]\nint8_mul = 0.15\n")
    t = parse_target(p)
    table = table_for(t.energy_table, t.energy_overrides, t.name)
    assert table["int8_mul"] == 0.15 and "tuned overrides" in table.name
    p.write_text(p.read_text().replace("int8_mul = 0.15", "int4_mul = 0.1"))
    t = parse_target(p)
    with pytest.raises(TargetError, match="unknown keys \\['int4_mul'\\]"):
        table_for(t.energy_table, t.energy_overrides, t.name)
