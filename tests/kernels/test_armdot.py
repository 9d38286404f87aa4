"""The ARMv8.2 ``sdot`` int8 GEMM (sdk/kernels/fast/armdot.py).

On every machine (fast): the LLVM IR the kernel's register blocks are built from compiles, for
an ``aarch64-linux-gnu`` target, to ``sdot`` (``udot``) instructions — 16 per 16-byte step of a
4×4 block; a function carrying the kernel's own ``+dotprod`` attribute compiles to ``sdot`` even
on a target machine without the feature (what happens under an emulator whose /proc/cpuinfo
LLVM cannot read); the feature is read from real cores' /proc/cpuinfo lines (Pi 4's A72: no;
Pi 5's A76, Jetson Orin's A78AE: yes) or the ``AT_HWCAP`` bit; and a compiled int8
fully-connected layer calls ``gemm_s8s8`` exactly when the CPU has the feature (and no VNNI).

Opt-in (minutes: Numba JIT under QEMU): ``EDGE_EMULATED_PI=1 .venv/bin/python -m pytest
tests/kernels/test_armdot.py -o addopts="" -q -s`` runs a probe in the emulated arm64 Pi image
(sdk/agent/emulated_pi.py) under ``qemu-aarch64 -cpu max`` (has dot product: the sdot path,
bit-exact against the NumPy specification on ragged shapes, all zero points, uint8 inputs,
int32 wrap-around, two threads, and a compiled program) and ``-cpu cortex-a72`` (no dot product:
the int16/portable path picked, and the sdot kernel, forced there, dies of SIGILL: its machine
code holds the dot-product instructions).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from llvmlite import binding as llvm
from llvmlite import ir

from sdk.backends import sample_graphs as sg
from sdk.kernels.fast import armdot, vnni
from sdk.ops.codegen import CompiledProgram

TRIPLE = "aarch64-unknown-linux-gnu"
A72 = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
       "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n")
A76 = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
       "crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
       "CPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\n")
A78AE = ("processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
         "crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm "
         "paca pacg\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n")


def _asm(rows: int, cols: int, tm_features: str, signed: bool = True,
         fn_features: str | None = None) -> str:
    """aarch64 assembly of one register block as the kernel emits it (optimised like Numba's
    O3 pipeline, then code generation)."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    i8p, i64 = ir.IntType(8).as_pointer(), ir.IntType(64)
    mod = ir.Module("block")
    mod.triple = TRIPLE
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i8p] * 3 + [i64] * 4), "block")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    a, bt, c, kp, lda, ldb, ldc = fn.args
    zero = ir.Constant(i64, 0)
    armdot.emit_dot_block(b, a, bt, c, kp, lda, ldb, ldc, zero, zero, rows, cols, signed)
    b.ret_void()
    if fn_features is not None:
        class _Codegen:
            _tm_features = fn_features

        class _Context:
            @staticmethod
            def codegen():
                return _Codegen()

        armdot._with_dotprod(_Context(), fn)
    m = llvm.parse_assembly(str(mod))
    m.verify()
    tm = llvm.Target.from_triple(TRIPLE).create_target_machine(cpu="generic",
                                                               features=tm_features, opt=3)
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(m, pb)
    return tm.emit_assembly(m)


def _count(asm: str, op: str) -> int:
    return len(re.findall(rf"^\s*{op}\s+v\d+\.4s, v\d+\.16b, v\d+\.16b", asm, re.MULTILINE))


def test_the_4x4_block_compiles_to_16_sdot_per_step_on_an_aarch64_dotprod_target() -> None:
    asm = _asm(4, 4, "+neon,+dotprod")
    assert _count(asm, "sdot") == 16
    assert _count(asm, "udot") == 0
    # the 16 accumulators stay in vector registers: the loop has 8 loads of 16 bytes, no spills
    assert "sp]" not in asm.split("sdot", 1)[1].rsplit("sdot", 1)[0]
    assert _count(_asm(1, 4, "+neon,+dotprod"), "sdot") == 4
    assert _count(_asm(4, 4, "+neon,+dotprod", signed=False), "udot") == 16


def test_the_kernels_own_dotprod_attribute_selects_sdot_without_it_in_the_target() -> None:
    # an emulator's /proc/cpuinfo can hide the feature from LLVM's host detection; the
    # function holding the block carries +dotprod itself (kept beside the process's features)
    asm = _asm(4, 4, "+neon", fn_features="+neon,+crc")
    assert _count(asm, "sdot") == 16


@pytest.mark.parametrize("cpuinfo,hwcap,want", [
    (A72, None, False), (A76, None, True), (A78AE, None, True),
    (A76 + "\n" + A72.replace("processor\t: 0", "processor\t: 1"), None, False),  # one core lacks it
    (A72, 0xECFFFFFB, False),          # /proc/cpuinfo wins where it has Features lines
    ("processor\t: 0\nflags\t\t: fpu vme\n", 0xECFFFFFB, True),  # qemu -cpu max: the host's file
    ("processor\t: 0\nflags\t\t: fpu vme\n", 0x8FB, False),      # qemu -cpu cortex-a72
    (None, None, False),
])
def test_dot_product_is_read_from_cpuinfo_features_or_hwcap(cpuinfo, hwcap, want) -> None:
    assert armdot.dotprod_from(cpuinfo, hwcap) is want


def test_this_x86_host_does_not_take_the_sdot_path() -> None:
    import platform

    if platform.machine() in ("aarch64", "arm64"):
        pytest.skip("an arm64 host: HAS_SDOT follows its own features")
    assert not armdot.HAS_SDOT and not vnni.gemm_path().startswith("sdot")


def test_compiled_fully_connected_calls_sdot_exactly_when_the_cpu_has_it(monkeypatch) -> None:
    g = sg.fc_graph(batch=2, k=100, n=64)
    monkeypatch.setattr(vnni, "HAS_VNNI", False)
    monkeypatch.setattr(armdot, "HAS_SDOT", True)
    src = CompiledProgram(g, ["x"], ["y"], load=False).source
    assert "gemm_s8s8(pack_s8(" in src and ", 112)" in src   # depth 100 padded to 112
    assert "from sdk.kernels.fast.armdot import gemm_s8s8, pack_s8" in src
    assert vnni.gemm_path().startswith("sdot")
    monkeypatch.setattr(armdot, "HAS_SDOT", False)            # Pi 4's A72: the int16 path
    src = CompiledProgram(g, ["x"], ["y"], load=False).source
    assert "gemm_s8s8" not in src and "armdot" not in src and "gemm_nt(" not in src
    assert "fc_small(" in src                                  # 2 rows: the small-FC loop
    assert not vnni.gemm_path().startswith("sdot")


# -- opt-in: the real instruction under qemu-aarch64 -------------------------------------------

PROBE = r'''
import json, sys, time
import numpy as np
import numba
from sdk.kernels.fast import armdot, vnni
from sdk.kernels.linear import matmul_int32
res = {"has_sdot": armdot.HAS_SDOT, "path": vnni.gemm_path(), "cases": 0, "mismatches": []}
if armdot.HAS_SDOT:
    t0 = time.time()
    rng = np.random.default_rng(7)
    for m, k, n in [(1, 40, 12), (3, 7, 5), (4, 16, 4), (5, 33, 9), (9, 130, 67),
                    (16, 64, 70)]:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        au = rng.integers(0, 256, (m, k), dtype=np.uint8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        for zp in (-128, -3, 0, 17, 127):
            for x in (a, au):
                for par in (False, True):
                    res["cases"] += 1
                    got = armdot.matmul_nt(x, w, zp, parallel=par)
                    if not np.array_equal(got, matmul_int32(x, w.T, zp, 0)):
                        res["mismatches"].append([m, k, n, zp, str(x.dtype), par])
    k = 140_000  # sum of products leaves int32: wraps like the specification
    a, w = np.full((1, k), 127, np.int8), np.full((4, k), 127, np.int8)
    res["cases"] += 1
    if not np.array_equal(armdot.matmul_nt(a, w, -128), matmul_int32(a, w.T, -128, 0)):
        res["mismatches"].append("wrap")
    res["kernel_s"] = round(time.time() - t0, 1)
    out = np.zeros(4, np.int32)  # bench_kernels' peak loop: 16 sdot chains, 100 rounds
    armdot.peak_loop(100, out)
    av = np.array([(3 * t + 1) % 127 for t in range(16)]).reshape(4, 4)
    bv = np.array([(5 * t + 2) % 127 - 60 for t in range(16)]).reshape(4, 4)
    res["peak_loop_exact"] = bool(np.array_equal(out, 120 + 16 * 100 * (av * bv).sum(axis=1)))
    from sdk.backends import sample_graphs as sg
    from sdk.ops.codegen import CompiledProgram
    from sdk.ops.interpreter import Interpreter
    t0 = time.time()
    g = sg.fc_graph(batch=8, k=100, n=36)
    prog = CompiledProgram(g, ["x"], ["y"])
    x = rng.integers(-128, 128, (8, 100), dtype=np.int8)
    res["program_sdot"] = "gemm_s8s8(" in prog.source
    res["program_equal"] = bool(np.array_equal(prog.run({"x": x})[0],
                                               Interpreter(g, fast=False).run({"x": x})["y"]))
    res["program_s"] = round(time.time() - t0, 1)
    # the same layer with its GEMM on threads (threshold 1), compiled, then loaded from the
    # cache by a second process (Numba's pool must be up before that machine code loads)
    import os, subprocess
    code = ("import numpy as np\nfrom sdk.backends import sample_graphs as sg\n"
            "from sdk.ops.codegen import CompiledProgram\n"
            "from sdk.ops.interpreter import Interpreter\n"
            "g = sg.fc_graph(batch=8, k=100, n=36)\n"
            "p = CompiledProgram(g, ['x'], ['y'])\n"
            "was = sum(p._fn.stats.cache_hits.values()) > 0\n"  # loaded, not compiled
            "x = np.random.default_rng(2).integers(-128, 128, (8, 100)).astype(np.int8)\n"
            "ok = np.array_equal(p.run({'x': x})[0], "
            "Interpreter(g, fast=False).run({'x': x})['y'])\n"
            "print('gemm_s8s8_parallel(' in p.source, was, ok)\n")
    env = dict(os.environ, EDGE_GEMM_THREAD_MACS="1")
    res["threaded_program"] = [subprocess.run([sys.executable, "-c", code], env=env,
                                              capture_output=True, text=True).stdout.strip()
                               for _ in range(2)]
else:  # the kernel forced on a core without the extension: its machine code holds sdot
    import subprocess
    code = ("import numpy as np\nfrom sdk.kernels.fast import armdot\n"
            "c = np.empty((4, 4), np.int32)\n"
            "armdot.gemm_s8s8(np.ones((4, 16), np.int8), np.ones((4, 16), np.int8), c)\n")
    res["forced_sdot_rc"] = subprocess.run([sys.executable, "-c", code],
                                           capture_output=True).returncode
print("PROBE " + json.dumps(res))
'''


def _probe(cpu: str) -> dict:
    from sdk.agent import emulated_pi

    rootfs = emulated_pi.build()
    emulated_pi.sync_sdk(rootfs)
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp" / "armdot_probe.py").write_text(PROBE)
    (rootfs / "var" / "cache" / "numba").mkdir(parents=True, exist_ok=True)
    cmd = [*emulated_pi.proot_cmd(rootfs), "/usr/bin/env", "NUMBA_CACHE_DIR=/var/cache/numba",
           "EDGE_CACHE_DIR=/var/cache/edge-programs", "HOME=/root", "NUMBA_NUM_THREADS=2",
           "/opt/edge/bin/python", "/tmp/armdot_probe.py"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False,
                       env=dict(os.environ, QEMU_CPU=cpu))
    line = [x for x in r.stdout.splitlines() if x.startswith("PROBE ")]
    assert r.returncode == 0 and line, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return json.loads(line[0][6:])


@pytest.mark.skipif(os.environ.get("EDGE_EMULATED_PI") != "1",
                    reason="opt-in (minutes of JIT under emulation): set EDGE_EMULATED_PI=1")
@pytest.mark.skipif(any(shutil.which(t) is None for t in ("proot", "qemu-aarch64-static")),
                    reason="proot / qemu-user-static not installed")
@pytest.mark.slow
def test_sdot_gemm_on_an_emulated_dotprod_core_is_bit_exact_and_a72_keeps_the_portable_path(
        ) -> None:
    a72 = _probe("cortex-a72")
    print(f"\nqemu -cpu cortex-a72: {a72}")
    assert not a72["has_sdot"] and a72["path"].split()[0] in ("int16", "portable")
    assert a72["forced_sdot_rc"] == -4     # SIGILL: the kernel's instructions are not the A72's
    mx = _probe("max")
    print(f"qemu -cpu max: {mx}")
    assert mx["has_sdot"] and mx["path"].startswith("sdot")
    assert mx["cases"] == 6 * 5 * 2 * 2 + 1 and mx["mismatches"] == []
    assert mx["program_sdot"] and mx["program_equal"] and mx["peak_loop_exact"]
    assert mx["threaded_program"][1] == "True True True", mx["threaded_program"]
    assert mx["threaded_program"][0].startswith("True") and mx["threaded_program"][0].endswith(
        "True")
