#!/usr/bin/env python3
"""int8 GEMM and int8 conv: the SDK's Numba kernels against ONNX Runtime on this machine.

GEMM: ``int32 = (A − a_zp) @ B`` with int8 A (activations, zero point) and int8 B (weights)
— the SDK's ``matmul_int32`` vs ORT ``MatMulInteger`` (B and the zero points as
initializers, as in a real model). Conv: 3×3, 64→64 channels, 56×56, pad 1, per-channel
requantization to int8 — the SDK's ``conv2d`` vs ORT ``QLinearConv``. Shapes: 512³ and the
workloads' layers (KWS 1×64×256 and 1×256×64, ViT 197×192×192 and 197×192×768, SLM decoder
1×512×512). One thread: Numba's serial kernel vs ORT with intra_op_num_threads=1; two threads:
Numba's parallel kernel (numba.set_num_threads(2)) vs ORT with intra_op_num_threads=2.
Outputs are checked before timing: the GEMM must equal ORT's bit for bit, the conv must be
within 1 LSB (ORT requantizes with a float scale). Printed: medians, GOPS (2·MACs/s) and
Numba/ORT speed ratios (> 1 means Numba is faster).

Then, on a CPU with AVX-512 VNNI (or an ARMv8.2 dot-product core), the int8 dot-product peak
of the core is measured (16 independent ``vpdpbusd`` / ``sdot`` chains in registers) and the
dot-product GEMM kernel (sdk/kernels/fast/vnni.py u8×s8, sdk/kernels/fast/armdot.py s8×s8)
is timed on the same shapes beside the portable int16 kernel;
printed as GOPS and as the fraction of the measured peak. These two use the CPU time of this
process (the machine is shared: wall time would count other processes' slices).

Threads (``--threads`` runs only this part): the GEMM kernels a compiled program calls — the
int16 kernel and, where the CPU has it, the u8×s8 VNNI / ARM ``sdot`` kernel — on one thread
and on two (their ``_parallel`` twins, ``numba.set_num_threads(2)``), alternated, at M = N = K
from 64 to 1024; printed: wall medians, GOPS, the 2-thread speed-up, and the crossover (the
smallest M·N·K from which two threads are ≥ 10% faster at every larger size), the default of
``EDGE_GEMM_THREAD_MACS`` (sdk/kernels/fast/gemm.py ``THREAD_MACS``).

Idle worker threads sleep instead of spinning, in both runtimes (ORT's
``session.intra_op.allow_spinning=0``, OpenMP's ``OMP_WAIT_POLICY=PASSIVE`` for Numba): the
calls alternate, and a spinning pool of one runtime would steal the cores of the other.
``--spin`` keeps both runtimes' default spinning.

    python tools/bench_kernels.py --quick            # under a minute
    python tools/bench_kernels.py --threads --json t.json   # the 1-vs-2-thread crossover only
    python tools/bench_kernels.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

if "--spin" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before Numba starts OpenMP

import numba
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdk import quantize_multiplier_array

# a kernel micro-benchmark measures the fast kernels themselves, which are not public API
from sdk.kernels.fast import armdot as farm
from sdk.kernels.fast import conv as fconv
from sdk.kernels.fast import gemm as fgemm
from sdk.kernels.fast import linear as flinear
from sdk.kernels.fast import vnni as fvnni

GEMMS = {"gemm 512x512x512": (512, 512, 512), "kws 1x64x256": (1, 64, 256),
         "kws 1x256x64": (1, 256, 64), "vit 197x192x192": (197, 192, 192),
         "vit 197x192x768": (197, 192, 768), "slm-dec 1x512x512": (1, 512, 512)}
CONV = ("conv3x3 64ch 56x56", 64, 56)


SPIN = "--spin" in sys.argv


def ort_session(nodes, inputs, outputs, inits, threads: int) -> ort.InferenceSession:
    graph = helper.make_graph(nodes, "bench", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not SPIN:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def ort_matmul(b: np.ndarray, a_zp: int, m: int, threads: int) -> ort.InferenceSession:
    k, n = b.shape
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    inits = [helper.make_tensor("b", TensorProto.INT8, b.shape, b.tobytes(), raw=True),
             helper.make_tensor("az", TensorProto.INT8, [], [a_zp]),
             helper.make_tensor("bz", TensorProto.INT8, [], [0])]
    return ort_session([node], [helper.make_tensor_value_info("a", TensorProto.INT8, [m, k])],
                       [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])], inits,
                       threads)


def ort_conv(w, bias, sx, zx, sw, so, zo, hw, threads: int) -> ort.InferenceSession:
    o, c = w.shape[:2]
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "so", "zo", "b"],
                            ["y"], pads=[1, 1, 1, 1])
    inits = [helper.make_tensor("sx", TensorProto.FLOAT, [], [sx]),
             helper.make_tensor("zx", TensorProto.INT8, [], [zx]),
             helper.make_tensor("w", TensorProto.INT8, w.shape, w.tobytes(), raw=True),
             helper.make_tensor("sw", TensorProto.FLOAT, [o], sw.tolist()),
             helper.make_tensor("zw", TensorProto.INT8, [o], [0] * o),
             helper.make_tensor("so", TensorProto.FLOAT, [], [so]),
             helper.make_tensor("zo", TensorProto.INT8, [], [zo]),
             helper.make_tensor("b", TensorProto.INT32, [o], bias.tolist())]
    return ort_session([node],
                       [helper.make_tensor_value_info("x", TensorProto.INT8, [1, c, hw, hw])],
                       [helper.make_tensor_value_info("y", TensorProto.INT8, [1, o, hw, hw])],
                       inits, threads)


def paired_medians(fa: Callable[[], object], fb: Callable[[], object], budget_s: float,
                   min_runs: int) -> tuple[float, float]:
    """Median wall time of ``fa`` and of ``fb``, called alternately so that both see the same
    machine load (this machine's cores are shared; a drift in load hits both equally)."""
    fa(), fb()  # warm-up: Numba compiles, ORT allocates
    ta: list[float] = []
    tb: list[float] = []
    start = time.perf_counter()
    while len(ta) < min_runs or (time.perf_counter() - start < budget_s and len(ta) < 2000):
        for fn, times in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(ta)), float(np.median(tb))


def bench_gemm(name, m, k, n, rng, budget, min_runs) -> dict:
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (k, n), dtype=np.int8)
    a_zp = -3
    row = {"case": name, "ops": 2 * m * k * n}
    for threads in (1, 2):
        sess = ort_matmul(b, a_zp, m, threads)
        want = sess.run(None, {"a": a})[0]
        fn = flinear.matmul_int32 if threads == 1 else flinear.matmul_int32_parallel
        numba.set_num_threads(threads)
        got = fn(a, b, a_zp, 0)
        if not np.array_equal(got, want):
            raise SystemExit(f"{name}: Numba GEMM differs from ORT MatMulInteger")
        row[f"numba_{threads}t_s"], row[f"ort_{threads}t_s"] = paired_medians(
            lambda fn=fn: fn(a, b, a_zp, 0), lambda s=sess: s.run(None, {"a": a}), budget,
            min_runs)
    return row


def bench_conv(rng, budget, min_runs) -> dict:
    name, ch, hw = CONV
    x = rng.integers(-128, 128, (1, ch, hw, hw), dtype=np.int8)
    w = rng.integers(-127, 128, (ch, ch, 3, 3), dtype=np.int8)
    bias = rng.integers(-5000, 5000, ch).astype(np.int32)
    sx, zx, so, zo = 0.02, -5, 0.5, 3
    sw = rng.uniform(0.002, 0.01, ch).astype(np.float32)
    m0, sh = quantize_multiplier_array(np.float64(np.float32(sx)) * sw.astype(np.float64)
                                       / np.float64(np.float32(so)))
    kw = dict(pads=(1, 1, 1, 1), x_zp=zx, m0=m0, shift=sh, out_zp=zo)
    row = {"case": name, "ops": 2 * ch * ch * 9 * hw * hw}
    for threads in (1, 2):
        sess = ort_conv(w, bias, sx, zx, sw, so, zo, hw, threads)
        want = sess.run(None, {"x": x})[0]
        numba.set_num_threads(threads)
        fn = fconv.conv2d if threads == 1 else fconv.conv2d_parallel
        got = fn(x, w, bias, **kw)
        if np.abs(got.astype(np.int32) - want).max() > 1:
            raise SystemExit(f"{name}: Numba conv is more than 1 LSB from ORT QLinearConv")
        row[f"numba_{threads}t_s"], row[f"ort_{threads}t_s"] = paired_medians(
            lambda fn=fn: fn(x, w, bias, **kw), lambda s=sess: s.run(None, {"x": x}), budget,
            min_runs)
    return row


def cpu_median(fn: Callable[[], object], budget_s: float, min_runs: int) -> tuple[float, float]:
    """(median CPU seconds of this process, median wall seconds) per call of ``fn``: on a
    shared machine the CPU time counts only the cycles this process got."""
    fn()
    cpu: list[float] = []
    wall: list[float] = []
    start = time.perf_counter()
    while len(cpu) < min_runs or (time.perf_counter() - start < budget_s and len(cpu) < 2000):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return float(np.median(cpu)), float(np.median(wall))


def _dot_path() -> str | None:
    """The dot-product kernel this CPU runs: "vnni", "sdot" or None (the int16 path)."""
    return "vnni" if fvnni.HAS_VNNI else ("sdot" if farm.HAS_SDOT else None)


def bench_dot_product_peak(budget: float) -> dict:
    """The int8 dot-product peak of this core, measured: rounds of 16 independent
    ``vpdpbusd`` (64 u8×s8 MACs each) or ``sdot`` (16 s8×s8 MACs each) in registers;
    GOPS = 2·MACs / time."""
    path = _dot_path()
    if path is None:
        return {"path": fvnni.gemm_path(), "peak_gops_cpu": None, "peak_gops_wall": None}
    loop, macs = (fvnni.peak_loop, 64) if path == "vnni" else (farm.peak_loop, 16)
    out = np.zeros(16, np.int32)
    rounds = 2_000_000
    loop(10, out)
    best_cpu = best_wall = 0.0
    start = time.perf_counter()
    while time.perf_counter() - start < max(budget, 0.5):
        c0, w0 = time.process_time(), time.perf_counter()
        loop(rounds, out)
        c, w = time.process_time() - c0, time.perf_counter() - w0
        ops = rounds * 16 * macs * 2
        best_cpu, best_wall = max(best_cpu, ops / max(c, 1e-9)), max(best_wall, ops / w)
    return {"path": fvnni.gemm_path(), "peak_gops_cpu": best_cpu / 1e9,
            "peak_gops_wall": best_wall / 1e9}


def bench_vnni_gemm(name, m, k, n, rng, budget, min_runs, peak) -> dict | None:
    """The dot-product GEMM kernel (VNNI, or ``sdot`` on an ARM dot-product core; operands
    packed once, as a compiled program holds its weights) and the portable int16 kernel on the
    same product, one thread, CPU time. Keys ``vnni_*`` hold the dot-product kernel's times
    whichever it is (``path`` says)."""
    path = _dot_path()
    if path is None:
        return None

    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    c = np.empty((m, n), np.int32)
    if path == "vnni":
        kp = fvnni.padded_depth(k)
        au, ws = fvnni.pack_u8(a, kp), fvnni.pack_s8(w, kp)
        want = (a.astype(np.int64) + 128) @ w.astype(np.int64).T
        kernel = fvnni.gemm_u8s8
    else:
        kp = farm.padded_depth(k)
        au, ws = farm.pack_s8(a, np.int32(0), kp), farm.pack_weights(w, kp)
        want = a.astype(np.int64) @ w.astype(np.int64).T
        kernel = farm.gemm_s8s8
    kernel(au, ws, c)
    if not np.array_equal(c, want.astype(np.int32)):
        raise SystemExit(f"{name}: {path} GEMM differs from the int64 product")
    k16 = fgemm.padded_depth(k)
    a16, w16 = fgemm.pack_rows(a, np.int64(0), k16), fgemm.pack_rows(w, np.int64(0), k16)
    c16 = np.empty((m, n), np.int32)
    row = {"case": name, "ops": 2 * m * k * n, "path": path}
    row["vnni_cpu_s"], row["vnni_wall_s"] = cpu_median(
        lambda: kernel(au, ws, c), budget, min_runs)
    if m >= 4:
        row["int16_cpu_s"], row["int16_wall_s"] = cpu_median(
            lambda: fgemm.gemm_nt(a16, w16, c16), budget, min_runs)
    gops = row["ops"] / max(row["vnni_cpu_s"], 1e-12) / 1e9
    row["vnni_gops_cpu"] = gops
    row["fraction_of_peak"] = gops / peak if peak else None
    return row


THREAD_SIZES = (64, 96, 128, 192, 256, 384, 512, 768, 1024)
THREAD_SIZES_QUICK = (64, 128, 256, 512, 1024)


def _thread_kernels(m, k, n, rng) -> dict[str, tuple[Callable, Callable, np.ndarray]]:
    """{path: (one-thread call, two-thread call, int64 reference)} on packed operands."""
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    want = (a.astype(np.int64) @ w.astype(np.int64).T).astype(np.int32)
    out: dict[str, tuple[Callable, Callable, np.ndarray]] = {}
    k16 = fgemm.padded_depth(k)
    a16, w16 = fgemm.pack_rows(a, np.int64(0), k16), fgemm.pack_rows(w, np.int64(0), k16)
    c16 = np.empty((m, n), np.int32)
    out["int16"] = (lambda: (fgemm.gemm_nt(a16, w16, c16), c16)[1],
                    lambda: (fgemm.gemm_nt_parallel(a16, w16, c16), c16)[1], want)
    if fvnni.HAS_VNNI:
        kp = fvnni.padded_depth(k)
        au, ws = fvnni.pack_u8(a, kp), fvnni.pack_s8(w, kp)
        cv = np.empty((m, n), np.int32)
        wv = (want.astype(np.int64) + 128 * w.astype(np.int64).sum(axis=1)[None, :])
        out["vnni"] = (lambda: (fvnni.gemm_u8s8(au, ws, cv), cv)[1],
                       lambda: (fvnni.gemm_u8s8_parallel(au, ws, cv), cv)[1], wv.astype(np.int32))
    if farm.HAS_SDOT:
        kp = farm.padded_depth(k)
        asd, wsd = farm.pack_s8(a, np.int32(0), kp), farm.pack_weights(w, kp)
        cs = np.empty((m, n), np.int32)
        out["sdot"] = (lambda: (farm.gemm_s8s8(asd, wsd, cs), cs)[1],
                       lambda: (farm.gemm_s8s8_parallel(asd, wsd, cs), cs)[1], want)
    return out


def bench_threads(sizes, rng, budget, min_runs) -> dict:
    """One vs two threads on the GEMM kernels of compiled programs, alternated; wall time
    (two threads are meant to cut it), with this process's CPU time beside it."""
    rows = []
    for s in sizes:
        for path, (one, two, want) in _thread_kernels(s, s, s, rng).items():
            numba.set_num_threads(2)
            if not (np.array_equal(one(), want) and np.array_equal(two(), want)):
                raise SystemExit(f"{path} {s}^3: a threaded GEMM differs from the int64 product")
            t1, t2 = paired_medians(one, two, budget, min_runs)
            rows.append({"path": path, "m": s, "k": s, "n": s, "macs": s ** 3,
                         "wall_1t_s": t1, "wall_2t_s": t2, "gops_1t": 2 * s ** 3 / t1 / 1e9,
                         "gops_2t": 2 * s ** 3 / t2 / 1e9, "speedup_2t": t1 / t2})
    numba.set_num_threads(1)
    crossover: dict[str, int | None] = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        pr = [r for r in rows if r["path"] == path]
        cross = None
        for i, r in enumerate(pr):
            if all(q["speedup_2t"] >= 1.1 for q in pr[i:]):
                cross = r["macs"]
                break
        crossover[path] = cross
    return {"rows": rows, "crossover_macs": crossover,
            "threshold_in_use": fgemm.thread_macs()}


def print_threads(res: dict) -> None:
    print(f"\n{'threads: path':<14} {'M=N=K':>6} {'1 thread':>17} {'2 threads':>17} "
          f"{'speed-up':>8}")
    for r in res["rows"]:
        print(f"{r['path']:<14} {r['m']:>6} {r['wall_1t_s'] * 1e3:8.3f}ms {r['gops_1t']:6.1f}G "
              f"{r['wall_2t_s'] * 1e3:8.3f}ms {r['gops_2t']:6.1f}G {r['speedup_2t']:8.2f}")
    for path, c in res["crossover_macs"].items():
        print(f"crossover {path}: " + (f"M·N·K ≥ {c:,} (≈{round(c ** (1 / 3))}³)" if c else
                                       "two threads never ≥ 10% faster at every larger size"))
    print(f"threshold in use (EDGE_GEMM_THREAD_MACS or THREAD_MACS): {res['threshold_in_use']:,}"
          "; wall medians, calls alternated, G = GOPS; the machine is shared (see uptime)")


def print_table(rows: list[dict]) -> None:
    head = (f"{'case':<20} {'numba 1t':>15} {'ort 1t':>15} {'ratio':>6}   "
            f"{'numba 2t':>15} {'ort 2t':>15} {'ratio':>6}")
    print(head)
    print("-" * len(head))

    def cell(row, key):
        s = row[key]
        return f"{s * 1e3:7.3f}ms {row['ops'] / s / 1e9:5.1f}G"

    for r in rows:
        print(f"{r['case']:<20} {cell(r, 'numba_1t_s'):>15} {cell(r, 'ort_1t_s'):>15} "
              f"{r['ort_1t_s'] / r['numba_1t_s']:6.2f}   {cell(r, 'numba_2t_s'):>15} "
              f"{cell(r, 'ort_2t_s'):>15} {r['ort_2t_s'] / r['numba_2t_s']:6.2f}")
    print("time = median per call, G = GOPS (2 ops per MAC), ratio = ORT time / Numba time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timing budget (< 1 minute)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", action="store_true",
                    help="only the 1-vs-2-thread GEMM crossover (also part of the full run)")
    ap.add_argument("--spin", action="store_true",
                    help="keep both runtimes' spinning thread pools (default: sleep when idle)")
    args = ap.parse_args()
    budget, min_runs = (0.25, 5) if args.quick else (1.5, 20)
    rng = np.random.default_rng(args.seed)
    load = os.getloadavg()
    if args.threads:
        res = bench_threads(THREAD_SIZES_QUICK if args.quick else THREAD_SIZES, rng, budget,
                            min_runs)
        print(f"{platform.processor() or platform.machine()}, numba {numba.__version__}, "
              f"threading layer {numba.threading_layer()}, spinning {'on' if SPIN else 'off'}, "
              f"load average {load[0]:.1f} → {os.getloadavg()[0]:.1f}")
        print_threads(res)
        if args.json:
            args.json.write_text(json.dumps({"machine": platform.platform(), "spin": SPIN,
                                             "numba": numba.__version__, "load": [
                                                 load[0], os.getloadavg()[0]],
                                             "threads": res}, indent=2))
        return
    rows = [bench_gemm(name, *shape, rng, budget, min_runs) for name, shape in GEMMS.items()]
    rows.append(bench_conv(rng, budget, min_runs))
    print(f"{platform.processor() or platform.machine()}, numba {numba.__version__}, "
          f"onnxruntime {ort.__version__}, {numba.config.NUMBA_NUM_THREADS} cores visible, "
          f"threading layer {numba.threading_layer()}, spinning {'on' if SPIN else 'off'}")
    print_table(rows)
    numba.set_num_threads(1)
    peak = bench_dot_product_peak(budget)
    vrows = [r for r in (bench_vnni_gemm(name, *shape, rng, budget, min_runs,
                                         peak["peak_gops_cpu"])
                         for name, shape in GEMMS.items()) if r is not None]
    print(f"\nint8 dot-product path: {peak['path']}")
    if peak["peak_gops_cpu"]:
        print(f"measured peak of this core (16 independent {_dot_path()} chains): "
              f"{peak['peak_gops_cpu']:.0f} GOPS per CPU-second of this process "
              f"({peak['peak_gops_wall']:.0f} GOPS wall; the machine is shared)")
        dp = _dot_path()
        print(f"{'case':<20} {dp:>10} {'GOPS':>7} {'of peak':>8} {'int16':>10} "
              f"{dp + '/int16':>10}")
        for r in vrows:
            i16 = r.get("int16_cpu_s")
            print(f"{r['case']:<20} {r['vnni_cpu_s'] * 1e3:8.3f}ms {r['vnni_gops_cpu']:7.1f} "
                  f"{r['fraction_of_peak']:8.1%} "
                  + (f"{i16 * 1e3:8.3f}ms {i16 / r['vnni_cpu_s']:10.2f}" if i16 else
                     f"{'-':>10} {'-':>10}"))
        print("CPU time per call (one thread, packed operands); of peak = GOPS / measured peak")
    else:
        print("no int8 dot-product instruction (VNNI, sdot) on this CPU: the portable int16 path runs")
    threads = bench_threads(THREAD_SIZES_QUICK if args.quick else THREAD_SIZES, rng, budget,
                            min_runs)
    print_threads(threads)
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "spin": SPIN,
                                         "numba": numba.__version__,
                                         "onnxruntime": ort.__version__, "rows": rows,
                                         "dot_product_peak": peak, "vnni_gemm": vrows,
                                         "threads": threads, "load": [
                                             load[0], os.getloadavg()[0]]},
                                        indent=2))


if __name__ == "__main__":
    main()
