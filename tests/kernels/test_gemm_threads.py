"""Threads for large int8 GEMMs (sdk/kernels/fast/gemm.py ``thread_macs``): the parallel
kernels give the serial kernels' bits on ragged shapes; GEMMs of at least
``EDGE_GEMM_THREAD_MACS`` (default ``THREAD_MACS``, the crossover measured by
``tools/bench_kernels.py --threads``) use them — in the kernel API and in compiled programs —
and smaller ones stay on one thread; a bad setting is refused in one line; a compiled program
calling a parallel kernel is cached and loads in a new process (Numba's thread pool must be up
before such machine code loads, or the process crashes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from sdk.backends import sample_graphs as sg
from sdk.kernels.fast import gemm, vnni
from sdk.kernels.linear import matmul_int32
from sdk.ops.codegen import CompiledProgram

ROOT = Path(__file__).resolve().parents[2]
SHAPES = [(1, 40, 130), (5, 33, 67), (9, 130, 200), (64, 96, 129)]


@pytest.fixture
def two_threads():
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_parallel_gemms_give_the_serial_bits(m, k, n, two_threads) -> None:
    rng = np.random.default_rng(m * 7 + n)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    want = matmul_int32(a, w.T, -5, 0)
    assert np.array_equal(gemm.matmul_nt_2d(a, w, -5, parallel=True), want)
    assert np.array_equal(gemm.matmul_2d(a, np.ascontiguousarray(w.T), -5, 0, parallel=True),
                          want)
    if vnni.HAS_VNNI:
        assert np.array_equal(vnni.matmul_nt(a, w, -5, parallel=True), want)


def test_the_threshold_is_configurable_and_checked(monkeypatch) -> None:
    monkeypatch.delenv(gemm.THREAD_ENV, raising=False)
    assert gemm.thread_macs() == gemm.THREAD_MACS
    big = round(gemm.THREAD_MACS ** (1 / 3)) + 1
    assert gemm.threads_pay(big, big, big) and not gemm.threads_pay(8, 8, 8)
    monkeypatch.setenv(gemm.THREAD_ENV, "512")
    assert gemm.thread_macs() == 512 and gemm.threads_pay(8, 8, 8)
    for bad in ("0", "-3", "lots", "1e6"):
        monkeypatch.setenv(gemm.THREAD_ENV, bad)
        with pytest.raises(ValueError, match="EDGE_GEMM_THREAD_MACS=.*positive integer") as e:
            gemm.thread_macs()
        assert "\n" not in str(e.value)


def test_compiled_programs_use_threads_from_the_threshold_on(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path))
    g = sg.fc_graph(batch=8, k=96, n=80)            # 61,440 MACs
    monkeypatch.setenv(gemm.THREAD_ENV, str(8 * 96 * 80 + 1))
    src = CompiledProgram(g, ["x"], ["y"], load=False).source
    assert "_parallel(" not in src and "get_num_threads" not in src
    monkeypatch.setenv(gemm.THREAD_ENV, str(8 * 96 * 80))
    src = CompiledProgram(g, ["x"], ["y"], load=False).source
    kernel = "gemm_u8s8_parallel(" if vnni.HAS_VNNI else "gemm_nt_parallel("
    assert kernel in src and "numba.get_num_threads()" in src
    conv = sg.conv_graph()                            # 8 × 100 pixels × 36 deep: 28,800 MACs
    monkeypatch.setenv(gemm.THREAD_ENV, str(8 * 100 * 36))
    assert "gemm_nt_parallel(" in CompiledProgram(conv, ["x"], ["y"], load=False).source
    monkeypatch.setenv(gemm.THREAD_ENV, str(8 * 100 * 36 + 1))
    assert "gemm_nt_parallel(" not in CompiledProgram(conv, ["x"], ["y"], load=False).source


def test_a_threaded_program_is_exact_and_loads_from_the_cache_in_a_new_process(
        tmp_path) -> None:
    script = (
        "import numpy as np\n"
        "from sdk.backends import sample_graphs as sg\n"
        "from sdk.ops.codegen import CompiledProgram\n"
        "from sdk.ops.interpreter import Interpreter\n"
        "g = sg.fc_graph(batch=8, k=96, n=80)\n"
        "p = CompiledProgram(g, ['x'], ['y'], load=False)\n"
        "assert '_parallel(' in p.source\n"
        "was = p.cached\n"
        "p.load()\n"
        "x = np.random.default_rng(1).integers(-128, 128, (8, 96)).astype(np.int8)\n"
        "ok = np.array_equal(p.run({'x': x})[0], Interpreter(g, fast=False).run({'x': x})['y'])\n"
        "print('cached' if was else 'cold', ok)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGE_CACHE_DIR=str(tmp_path),
               EDGE_GEMM_THREAD_MACS="1000", NUMBA_NUM_THREADS="2")
    outs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=env, timeout=600, check=False) for _ in range(2)]
    for r in outs:
        assert r.returncode == 0, r.stderr[-1500:]
    assert outs[0].stdout.split() == ["cold", "True"]
    assert outs[1].stdout.split() == ["cached", "True"]   # the second process loads, not JIT


def test_the_kernel_api_is_exact_with_threads_taken_from_the_threshold(monkeypatch,
                                                                      two_threads) -> None:
    from sdk.kernels.fast.linear import matmul_int32 as fast

    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (3, 16, 64), dtype=np.int8)
    b = rng.integers(-128, 128, (64, 48), dtype=np.int8)
    monkeypatch.setenv(gemm.THREAD_ENV, "1")              # every GEMM takes the threads
    assert np.array_equal(fast(a, b, 3, 0), matmul_int32(a, b, 3, 0))


def test_the_prepared_interpreter_binds_the_threaded_gemm_from_the_threshold_on(
        monkeypatch) -> None:
    from sdk.ops.interpreter import Interpreter

    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", max(2, numba.config.NUMBA_NUM_THREADS))
    assert gemm.gemm_nt_for(8, 80, 96) is gemm.gemm_nt
    monkeypatch.setenv(gemm.THREAD_ENV, "1")
    assert gemm.gemm_nt_for(8, 80, 96) is gemm.gemm_nt_parallel
    rng = np.random.default_rng(5)
    for g, shape in ((sg.fc_graph(batch=8, k=96, n=80), (8, 96)),
                     (sg.conv_graph(), (1, 4, 10, 10))):
        x = rng.integers(-128, 128, shape).astype(np.int8)
        name, out = g.inputs[0], g.outputs[0]
        assert np.array_equal(Interpreter(g, fast=True).run({name: x})[out],
                              Interpreter(g, fast=False).run({name: x})[out])
