"""The executed-instruction mix of one inference on the Cortex-M4 firmware in QEMU.

A small TCG plugin (``qemu_insn_plugin.c`` next to this file, built here with the host's C
compiler into ``~/.cache/edge/``) counts every executed guest instruction by address, with
its disassembly, and the flash reads of each load. The firmware itself is unchanged: the
mix is restricted to the functions that run an inference — everything except the link,
flash-programming, CRC, MLPerf text-protocol and port/startup code (their function names
come from compiling those firmware sources on their own) — and divided by the number of
inferences run. The firmware's own TIMER0 count (``-icount``: instructions) of the same
runs is returned beside it as a cross-check.

    mix = measure_mix(integer_graph, feeds, packed_kernels=False, runs=2)
    est = sdk.profile.cycles.estimate_for_target(mix.per_inference, load_target("nucleo-l4r5zi"))
"""

from __future__ import annotations

import bisect
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.errors import DeviceError
from sdk.graph.ir import Graph
from sdk.profile.cycles import InstructionMix, classify, mnemonic, register_count

PLUGIN_SOURCE = Path(__file__).with_name("qemu_insn_plugin.c")
CACHE = Path(os.environ.get("EDGE_CACHE_DIR", Path.home() / ".cache" / "edge"))
# firmware sources whose code is not part of an inference
NOT_INFERENCE = ("src/protocol.c", "src/crc_cobs.c", "src/flash.c", "src/mlperf.c",
                 "m4/port_m4.c", "m4/startup.c")


def mix_unavailable() -> str | None:
    """Why the instruction mix cannot be measured here, or None."""
    from firmware_bridge.build import toolchain_missing
    from firmware_bridge.qemu import qemu_missing

    if not PLUGIN_SOURCE.is_file():
        return f"{PLUGIN_SOURCE} is missing (reinstall the SDK)"
    for tool in ("gcc", "arm-none-eabi-nm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tools/bootstrap.sh installs it)"
    return toolchain_missing("m4") or qemu_missing()


def build_plugin() -> Path:
    """Compile the plugin if it is missing or older than its source; returns the .so."""
    out = CACHE / "qemu-plugin" / "libedgeinsn.so"
    if out.exists() and out.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.so")
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-fvisibility=hidden",
                           "-o", str(tmp), str(PLUGIN_SOURCE)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise DeviceError(f"building the QEMU plugin failed: {proc.stderr.strip()[-300:]}")
    tmp.replace(out)
    return out


@functools.lru_cache(maxsize=4)
def _excluded_functions(elf_mtime: float) -> frozenset[str]:
    """Names of the functions defined by the non-inference firmware sources."""
    from firmware_bridge.build import FIRMWARE_DIR

    names: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="edge-fwsyms-") as tmp:
        for src in NOT_INFERENCE:
            obj = Path(tmp) / (Path(src).stem + ".o")
            proc = subprocess.run(
                ["arm-none-eabi-gcc", "-O2", "-std=c11", "-Isrc", "-mcpu=cortex-m4", "-mthumb",
                 "-mfloat-abi=soft", "-ffunction-sections", "-DEDGE_M4=1", "-c", src, "-o",
                 str(obj)], cwd=FIRMWARE_DIR, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise DeviceError(f"compiling {src} for its symbol names failed: "
                                  f"{proc.stderr.strip()[-200:]}")
            nm = subprocess.run(["arm-none-eabi-nm", "--defined-only", str(obj)],
                                capture_output=True, text=True, check=True).stdout
            names.update(line.split()[-1] for line in nm.splitlines()
                         if len(line.split()) == 3 and line.split()[1] in "tT")
    return frozenset(names)


def _function_ranges(elf: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of every function in the ELF, sorted by start (Thumb bit cleared)."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    ranges = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            start = int(parts[0], 16) & ~1
            ranges.append((start, start + int(parts[1], 16), parts[3]))
    return sorted(ranges)


@dataclass
class MeasuredMix:
    per_inference: InstructionMix
    firmware_instructions: float          # the firmware's own per-op counts, per inference
    outputs: dict[str, np.ndarray]        # the device's outputs of the last run
    runs: int
    functions: dict[str, float]           # instructions per inference by function
    by_function: dict[str, InstructionMix]  # the mix of each function, per inference


def read_counts(text: str) -> dict[int, list]:
    """The plugin's lines → {address: [count, flash reads, 8-byte lines, 32-byte lines,
    disassembly]} (an address translated twice is summed)."""
    rows: dict[int, list] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        addr = int(parts[0], 16)
        vals = [int(v) for v in parts[1:5]]
        if addr in rows:
            rows[addr][:4] = [a + b for a, b in zip(rows[addr][:4], vals, strict=True)]
        else:
            rows[addr] = [*vals, parts[5]]
    return rows


def subtract_counts(more: dict[int, list], less: dict[int, list]) -> dict[int, list]:
    """Per-address difference of two runs' counts (negative remainders are dropped)."""
    out = {}
    for addr, row in more.items():
        base = less.get(addr, [0, 0, 0, 0])
        diff = [max(0, a - b) for a, b in zip(row[:4], base[:4], strict=True)]
        if diff[0]:
            out[addr] = [*diff, row[4]]
    return out


def parse_counts(rows: dict[int, list], excluded: frozenset[str],
                 ranges: list[tuple[int, int, str]],
                 by_function: dict[str, InstructionMix] | None = None,
                 ) -> tuple[InstructionMix, dict[str, float]]:
    """Per-address counts → the instruction mix of the functions not in ``excluded``
    (and, into ``by_function`` when given, each function's own mix)."""
    starts = [r[0] for r in ranges]

    def function_of(addr: int) -> str:
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < ranges[i][1]:
            return ranges[i][2]
        return "?"

    mix = InstructionMix()
    functions: dict[str, float] = {}
    addrs = sorted(rows)
    prev_cls, prev_addr, prev_n = None, -10, 0
    for k, addr in enumerate(addrs):
        n, flash, l8, l32, disas = rows[addr]
        fn = function_of(addr)
        if fn in excluded:
            prev_cls = None
            continue
        functions[fn] = functions.get(fn, 0) + n
        cls = classify(disas)
        targets = [mix]
        if by_function is not None:
            targets.append(by_function.setdefault(fn, InstructionMix()))
        pipelined = (min(n, prev_n) if cls in ("load", "store")
                     and prev_cls in ("load", "store") and addr - prev_addr <= 4 else 0)
        taken = _taken(disas, n, addr, addrs, k, rows) if cls == "branch" else 0.0
        regs = register_count(disas) if cls in ("load_multi", "store_multi") else 0
        to_pc = cls == "load_multi" and "pc" in disas.lower().split("{", 1)[-1]
        for m in targets:
            m.counts[cls] += n
            m.flash_reads += flash
            m.flash_lines_8 += l8
            m.flash_lines_32 += l32
            m.multi_registers += n * regs
            if to_pc:
                m.pops_to_pc += n
                m.taken_branches += n
            m.pipelined_ls += pipelined
            m.taken_branches += taken
        prev_cls, prev_addr, prev_n = cls, addr, n
    return mix, functions


def _taken(disas: str, n: int, addr: int, addrs: list[int], k: int, rows: dict) -> float:
    """How often the branch at ``addr`` was taken: always for an unconditional one; for a
    conditional one, its count minus the count of the instruction after it (fall-through)."""
    word = disas.strip().split(None, 1)[0].lower().split(".", 1)[0]
    base = mnemonic(disas)
    conditional = base in ("cbz", "cbnz") or (base == "b" and word != "b")
    if not conditional:
        return float(n)
    nxt = addrs[k + 1] if k + 1 < len(addrs) else None
    fall = rows[nxt][0] if nxt is not None and nxt - addr <= 4 else 0
    return float(max(0, n - fall))


RECORD_BYTES, SLOTS_OFFSET, FLASH_BYTES = 4096, 8192, 4 << 20   # firmware/src/fw.h, port_m4.c


def _flash_with(packed, flash_path: Path) -> None:
    """Write ``packed`` into the file-backed flash at ``flash_path`` as a completed LOAD
    leaves it: the image in slot 0 and boot record 0 naming it (layout of
    ``firmware/src/flash.c``). Loading over the emulated UART would take minutes for a
    model of a few hundred KB; the boot then verifies the record's and the image's CRC32,
    and :meth:`DeviceModel.load` falls back to a real load if they do not match."""
    import struct

    from firmware_bridge.framing import crc32
    from firmware_bridge.qemu import PSRAM_BYTES

    data = packed.data
    if SLOTS_OFFSET + len(data) > SLOTS_OFFSET + ((FLASH_BYTES - SLOTS_OFFSET) // 2 & ~4095):
        raise DeviceError(f"image of {len(data):,} B does not fit a flash slot")
    head = struct.pack("<5I", 0x544F4F42, 1, 0, len(data), crc32(data[12:]))
    record = head + struct.pack("<I", crc32(head))
    with open(flash_path, "wb") as f:
        f.truncate(PSRAM_BYTES)
        f.write(record)
        f.seek(SLOTS_OFFSET)
        f.write(data)


def _session(packed, feeds: Mapping[str, np.ndarray], runs: int, timeout: float,
             flash_path: Path, invoke_patience: float = 600.0):
    """One QEMU boot with the counting plugin on the flash at ``flash_path`` (which already
    holds ``packed``): run it ``runs`` times. Returns (per-address counts, firmware timer
    ticks of the runs, last outputs, ELF)."""
    from firmware_bridge.client import DeviceClient
    from firmware_bridge.qemu import QemuFirmware
    from firmware_bridge.session import DeviceModel

    plugin = build_plugin()
    with tempfile.TemporaryDirectory(prefix="edge-mix-") as tmp:
        counts_path = Path(tmp) / "counts.txt"

        class _Counting(QemuFirmware):
            def command(self, port: int) -> list[str]:
                return [*super().command(port), "-plugin",
                        f"file={plugin},out={counts_path}"]

        class _PatientClient(DeviceClient):
            def invoke(self, timeout: float = invoke_patience) -> int:
                return super().invoke(timeout)   # counted emulation runs slower

        fw = _Counting(flash_path=flash_path)
        fw.stop_timeout_s = 60.0
        outputs: dict[str, np.ndarray] = {}
        ticks = 0
        with fw:
            client = _PatientClient(fw.url, timeout=timeout)
            try:
                model = DeviceModel(client, packed, load=False)
                model.check_fit()
                model.load()
                for _ in range(runs):
                    outputs = model.run(feeds)
                    ticks += sum(op.ticks for op in model.profile())
            finally:
                client.close()
        if not counts_path.exists():
            raise DeviceError("the QEMU plugin wrote no counts (QEMU did not exit cleanly)")
        return read_counts(counts_path.read_text()), ticks, outputs, fw.elf


def measure_mix(graph: Graph, feeds: Mapping[str, np.ndarray], packed_kernels: bool = True,
                runs: int = 1, timeout: float = 1.0) -> MeasuredMix:
    """The per-inference instruction mix of the integer ``graph`` on the M4 firmware in QEMU:
    two boots with the counting plugin, one that only loads the model and one that also runs
    it ``runs`` times; their difference is ``runs`` inferences and nothing else (boot, link
    and load cancel). See the module docstring."""
    why = mix_unavailable()
    if why:
        raise DeviceError(f"cannot measure the instruction mix: {why}")
    from firmware_bridge.image import pack_image
    from firmware_bridge.qemu import ticks_to_instructions

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    packed = pack_image(graph, packed_kernels=packed_kernels)
    with tempfile.TemporaryDirectory(prefix="edge-mixflash-") as tmp:
        flash = Path(tmp) / "flash.bin"
        _flash_with(packed, flash)
        base, base_ticks, _, _ = _session(packed, feeds, 0, timeout, flash)
        more, ticks, outputs, elf = _session(packed, feeds, runs, timeout, flash)
    excluded = _excluded_functions(elf.stat().st_mtime)
    per_fn: dict[str, InstructionMix] = {}
    mix, functions = parse_counts(subtract_counts(more, base), excluded, _function_ranges(elf),
                                  per_fn)
    scale = 1.0 / runs
    return MeasuredMix(mix.scaled(scale), ticks_to_instructions(ticks - base_ticks) * scale,
                       outputs, runs, {k: v * scale for k, v in sorted(
                           functions.items(), key=lambda kv: -kv[1])},
                       {k: v.scaled(scale) for k, v in per_fn.items()})
