"""Read board profiles from TOML (stdlib ``tomllib``) into :class:`targets.model.Target`.

Where boards come from, in order (a later one with the same name replaces an earlier one):

1. the TOML files shipped in this package (``targets/*.toml``);
2. every ``*.toml`` in the directories named by ``EDGE_TARGETS_PATH`` (``os.pathsep``-separated);
3. an explicit path given to :func:`load_target` (``edge ... --target ./myboard.toml``).

Every key is checked against the schema in ``targets/README.md``: an unknown key (at any
table level) or a value of the wrong type raises :class:`sdk.errors.TargetError` naming the
file, the key and what was expected. A file that cannot be read as UTF-8 TOML is one such error
too; :func:`list_targets` skips it with a warning (``skipped_targets()`` says which and why) so
one bad file in ``EDGE_TARGETS_PATH`` never hides the other boards.
"""

from __future__ import annotations

import logging
import os
import platform
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdk.errors import TargetError
from targets.model import Accelerator, Cpu, Memory, Power, PowerSensor, Target

ENV_VAR = "EDGE_TARGETS_PATH"
BUILTIN_DIR = Path(__file__).resolve().parent
MEMORY_LEVELS = ("sram", "dram", "flash")
ACCELERATOR_KINDS = ("npu", "gpu", "tpu")
SENSOR_KINDS = ("rapl", "ina3221", "pi5-pmic", "ina219", "ina226", "mcu-cycles")

log = logging.getLogger("targets")

# the schema of targets/README.md: the keys each table may hold
TOP_KEYS = ("name", "description", "notes", "host", "mcu", "delegates", "cpu", "memory", "power",
            "accelerators", "power_sensors", "energy")
CPU_KEYS = ("arch", "core", "cores", "clock_hz", "int8_macs_per_cycle", "simd")
MEMORY_KEYS = ("ram_bytes", "flash_bytes", "storage", "bandwidth_bytes_per_s",
               "flash_bandwidth_bytes_per_s", "weights_in", "activations_in")
POWER_KEYS = ("active_w", "idle_w", "source")
ACCELERATOR_KEYS = ("name", "kind", "peak_int8_ops_per_s", "macs_per_cycle", "clock_hz",
                    "onchip_sram_bytes", "bandwidth_bytes_per_s", "ops", "delegate", "optional",
                    "power_w")
ENERGY_KEYS = ("table", "pj")
# per sensor kind: its own keys -> (reader method, required)
SENSOR_KEYS: dict[str, dict[str, tuple[str, bool]]] = {
    "rapl": {"root": ("string", False), "domain": ("string", False)},
    "ina3221": {"hwmon_glob": ("string", True), "iio_glob": ("string", False),
                "rail": ("string", False)},
    "pi5-pmic": {"command": ("strings", False)},
    "ina219": {"bus": ("count", False), "address": ("count", False),
               "shunt_ohms": ("number", False)},
    "ina226": {"bus": ("count", False), "address": ("count", False),
               "shunt_ohms": ("number", False)},
    "mcu-cycles": {"counter": ("string", False)},
}


class _Reader:
    """Typed access to one TOML table, with errors that name file and dotted key."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str = "") -> None:
        self.path, self.table, self.prefix = path, table, prefix

    def _fail(self, key: str, expected: str, got: Any = None, missing: bool = False) -> TargetError:
        where = f"{self.prefix}{key}"
        if missing:
            return TargetError(f"target file {self.path}: missing key '{where}' ({expected})")
        return TargetError(f"target file {self.path}: key '{where}' must be {expected}, "
                           f"got {got!r}")

    def only(self, allowed: tuple[str, ...] | list[str], what: str = "") -> None:
        """Refuse any key of this table that the schema does not name."""
        for key in self.table:
            if key not in allowed:
                where = what or (f"table [{self.prefix[:-1]}]" if self.prefix else "the top level")
                raise TargetError(f"target file {self.path}: unknown key '{self.prefix}{key}' "
                                  f"(expected one of {', '.join(allowed)} in {where}; "
                                  "see targets/README.md)")

    def get(self, key: str, expected: str, check: Callable[[Any], bool],
            default: Any = ..., convert: Callable[[Any], Any] = lambda v: v) -> Any:
        if key not in self.table:
            if default is ...:
                raise self._fail(key, expected, missing=True)
            return default
        value = self.table[key]
        if not check(value):
            raise self._fail(key, expected, value)
        return convert(value)

    def number(self, key: str, default: Any = ..., positive: bool = True) -> float:
        ok = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
              and (v > 0 if positive else v >= 0))
        what = "a positive number" if positive else "a number >= 0"
        return self.get(key, what, ok, default, float)

    def integer(self, key: str, default: Any = ..., positive: bool = True) -> int:
        ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)
              and (v > 0 if positive else v >= 0))
        what = "a positive integer" if positive else "an integer >= 0"
        return self.get(key, what, ok, default, int)

    def string(self, key: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        if choices:
            return self.get(key, f"one of {list(choices)}",
                            lambda v: isinstance(v, str) and v in choices, default)
        return self.get(key, "a string", lambda v: isinstance(v, str), default)

    def boolean(self, key: str, default: Any = ...) -> bool:
        return self.get(key, "true or false", lambda v: isinstance(v, bool), default)

    def strings(self, key: str, default: Any = ...) -> tuple[str, ...]:
        return self.get(key, "a list of strings",
                        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
                        default, tuple)

    def sub(self, key: str, required: bool = True) -> _Reader | None:
        if key not in self.table:
            if required:
                raise self._fail(key, "a table", missing=True)
            return None
        value = self.table[key]
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value)
        return _Reader(self.path, value, f"{self.prefix}{key}.")

    def subs(self, key: str) -> list[_Reader]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(key, "an array of tables ([[" + key + "]])", value)
        return [_Reader(self.path, v, f"{self.prefix}{key}[{i}].") for i, v in enumerate(value)]

    def energy_numbers(self, key: str) -> dict[str, float]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self._fail(key, "a table of numbers (picojoules)", value)
        out: dict[str, float] = {}
        for k, v in value.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise self._fail(f"{key}.{k}", "a number >= 0 (picojoules)", v)
            out[k] = float(v)
        return out


def _host_cpu() -> tuple[str, int]:
    return platform.machine() or "unknown", os.cpu_count() or 1


def _host_ram_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def parse_target(path: str | os.PathLike[str]) -> Target:
    """Parse and check one board TOML file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist") from None
    except OSError as exc:
        raise TargetError(f"target file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TargetError(f"target file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start}); a board file is TOML text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise TargetError(f"target file {path} is not valid TOML: {first}") from None
    r = _Reader(path, data)
    r.only(TOP_KEYS)
    name = r.string("name")
    host = r.boolean("host", False)

    c = r.sub("cpu")
    c.only(CPU_KEYS)
    arch = c.string("arch")
    cores = c.integer("cores")
    if host:  # the laptop profile describes whatever machine runs the SDK
        arch, cores = _host_cpu()
    cpu = Cpu(arch=arch, core=c.string("core"), cores=cores, clock_hz=c.number("clock_hz"),
              int8_macs_per_cycle=c.number("int8_macs_per_cycle"), simd=c.string("simd", ""))

    m = r.sub("memory")
    m.only(MEMORY_KEYS)
    ram = m.integer("ram_bytes")
    if host:
        ram = _host_ram_bytes() or ram
    memory = Memory(ram_bytes=ram, flash_bytes=m.integer("flash_bytes"),
                    bandwidth_bytes_per_s=m.number("bandwidth_bytes_per_s"),
                    weights_in=m.string("weights_in", choices=MEMORY_LEVELS),
                    activations_in=m.string("activations_in", choices=MEMORY_LEVELS),
                    storage=m.string("storage", ""),
                    flash_bandwidth_bytes_per_s=m.number("flash_bandwidth_bytes_per_s", 0.0,
                                                         positive=False))

    p = r.sub("power")
    p.only(POWER_KEYS)
    power = Power(active_w=p.number("active_w"), idle_w=p.number("idle_w", positive=False),
                  source=p.string("source", ""))

    accelerators = []
    for a in r.subs("accelerators"):
        a.only(ACCELERATOR_KEYS)
        accelerators.append(Accelerator(
            name=a.string("name"), kind=a.string("kind", choices=ACCELERATOR_KINDS),
            peak_int8_ops_per_s=a.number("peak_int8_ops_per_s"),
            macs_per_cycle=a.integer("macs_per_cycle", positive=False),
            clock_hz=a.number("clock_hz", positive=False),
            onchip_sram_bytes=a.integer("onchip_sram_bytes", positive=False),
            bandwidth_bytes_per_s=a.number("bandwidth_bytes_per_s"),
            ops=a.strings("ops"), delegate=a.string("delegate"),
            optional=a.boolean("optional", False), power_w=a.number("power_w", 0.0, positive=False)))

    sensors = []
    for s in r.subs("power_sensors"):
        kind = s.string("kind", choices=SENSOR_KINDS)
        own = SENSOR_KEYS[kind]
        s.only(("kind", *own), f"a {kind!r} sensor")
        params: dict[str, Any] = {}
        for key, (method, required) in own.items():
            if key in s.table or required:
                if method == "count":
                    params[key] = s.integer(key, positive=False)
                else:
                    params[key] = getattr(s, method)(key)
        if "command" in params:
            params["command"] = list(params["command"])
        sensors.append(PowerSensor(kind=kind, params=params))

    e = r.sub("energy", required=False)
    table, overrides = "horowitz-45nm", {}
    if e is not None:
        e.only(ENERGY_KEYS)
        table = e.string("table", "horowitz-45nm")
        overrides = e.energy_numbers("pj")

    delegates = r.strings("delegates")
    if not delegates:
        raise TargetError(f"target file {path}: key 'delegates' must list at least one "
                          "delegate (e.g. [\"cpu\"])")
    return Target(name=name, description=r.string("description", ""), cpu=cpu, memory=memory,
                  power=power, delegates=delegates, accelerators=tuple(accelerators),
                  power_sensors=tuple(sensors), energy_table=table, energy_overrides=overrides,
                  is_mcu=r.boolean("mcu", False), host=host, source_file=str(path),
                  notes=r.string("notes", ""))


def search_dirs() -> list[Path]:
    """The built-in directory, then each directory in ``EDGE_TARGETS_PATH``."""
    dirs = [BUILTIN_DIR]
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part:
            dirs.append(Path(part))
    return dirs


_SKIPPED: list[tuple[Path, TargetError]] = []
_WARNED: set[str] = set()


def skipped_targets() -> list[tuple[Path, TargetError]]:
    """The board files the last :func:`list_targets` skipped, with the error for each."""
    return list(_SKIPPED)


def list_targets() -> dict[str, Target]:
    """All known boards by name (user directories override built-ins of the same name).

    A file that does not parse or check is skipped with a one-line warning (logger
    ``targets``) and recorded in :func:`skipped_targets`; the other boards are still listed.
    """
    found: dict[str, Target] = {}
    skipped: list[tuple[Path, TargetError]] = []
    for d in search_dirs():
        if not d.is_dir():
            if d != BUILTIN_DIR:
                raise TargetError(f"{ENV_VAR} names {d}, which is not a directory")
            continue
        for f in sorted(d.glob("*.toml")):
            try:
                t = parse_target(f)
            except TargetError as exc:
                skipped.append((f, exc))
                if str(exc) not in _WARNED:  # once per process, however often boards are listed
                    _WARNED.add(str(exc))
                    log.warning("skipped board file %s: %s", f, exc)
                continue
            found[t.name] = t
    _SKIPPED[:] = skipped
    return found


def load_target(name_or_path: str | os.PathLike[str] | Target) -> Target:
    """A board by name (built-in or from ``EDGE_TARGETS_PATH``) or by path to a TOML file."""
    if isinstance(name_or_path, Target):
        return name_or_path
    s = str(name_or_path)
    if s.endswith(".toml") or os.sep in s:
        return parse_target(s)
    boards = list_targets()
    for f, exc in _SKIPPED:  # the broken file meant to define this board: its own error
        if f.stem == s:
            raise exc
    if s not in boards:
        skipped = (f"; skipped broken file(s): {', '.join(str(f) for f, _ in _SKIPPED)}"
                   if _SKIPPED else "")
        raise TargetError(f"unknown target {s!r}; known targets: {', '.join(sorted(boards))} "
                          f"(add your own with a TOML file path or a directory in ${ENV_VAR})"
                          f"{skipped}")
    return boards[s]
