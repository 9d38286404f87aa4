#!/usr/bin/env python3
"""Whole-process start-up and peak memory: ``edge run`` against an equivalent ONNX Runtime
script, and each runtime's peak RSS, every figure from a new process.

* **process**: ``edge run MODEL.edge -i x.npy -o y.npz`` on the bundle's ahead-of-time module
  (``edge aot MODEL.edge``: native code that loads without Numba), and with a warm program
  cache (the compiled program's machine code on disk, loaded through Numba), against
  ``python ort_run.py MODEL.onnx x.npy y.npz`` (import onnxruntime, one session, one run, the
  outputs saved), and ``edge run`` with a cold program cache (a fresh ``$EDGE_CACHE_DIR``: the
  interpreter runs, nothing compiles). Rounds are interleaved; medians of wall time and of the
  child's CPU time; each child's peak RSS (``VmHWM`` read by a wrapper just before it exits).
  Goal (issue 16): ``edge run`` within 2× of the ORT script. The AOT build's own time is
  reported too (a one-off, like a cold compile).
* **first inference**: in a new process with the warm cache, import sdk → Session → first
  run → steady runs; the first run minus the steady run is what start-up adds (goal ≤ 0.3 s).
* **peak RSS** (on unless ``--no-rss``): peak resident memory (``VmHWM``; ``ru_maxrss`` of a
  child keeps the parent's size across ``exec``) of a new process that loads
  one runtime, builds the session and runs it 20 times: the SDK's AOT module
  (``sdk.find_aot``) and its compiled Session, ONNX
  Runtime on the float model, LiteRT + XNNPACK on the integer ``.tflite`` (where the writer
  takes the graph), each beside a process that imports only NumPy (the floor).

The model is ONNX's ``light_squeezenet`` (shipped with the ``onnx`` package: SqueezeNet 1.0's
graph, 224×224, reduced weights), compiled to int8 with 4 random calibration images, and
the sample CNN of tools/bench_backends.py (``--quick`` runs that one only).

    python tools/bench_startup.py --quick --json out.json
    python tools/bench_startup.py --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import sdk

ORT_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
y = s.run(None, {sys.argv[4]: x})
np.savez(sys.argv[3], **{o.name: v for o, v in zip(s.get_outputs(), y)})
"""

# runs a command line's module/script in this process, then prints its peak RSS (KiB) on
# stderr's last line: the whole process's figure, interpreter start-up included
PEAK = """
import runpy, sys
argv = sys.argv[1:]
try:
    if argv[0] == "-m":
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c"] + argv[2:]
        exec(compile(argv[1], "<script>", "exec"), {"__name__": "__main__"})
except SystemExit as exc:
    if exc.code not in (None, 0):
        raise
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
print("peak_rss_kib", hwm[0] if hwm else 0, file=sys.stderr)
"""

FIRST_RUN = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
import sdk
t1, c1 = time.perf_counter(), time.process_time()
sess = sdk.Session(sys.argv[1])
x = np.load(sys.argv[2])
t2, c2 = time.perf_counter(), time.process_time()
sess.run({sess.inputs[0].name: x})
t3, c3 = time.perf_counter(), time.process_time()
steady, steady_cpu = [], []
for _ in range(10):
    a, b = time.perf_counter(), time.process_time()
    sess.run({sess.inputs[0].name: x})
    steady.append(time.perf_counter() - a)
    steady_cpu.append(time.process_time() - b)
print(json.dumps({"import_s": t1 - t0, "import_cpu_s": c1 - c0, "session_s": t2 - t1,
                  "first_run_s": t3 - t2, "first_run_cpu_s": c3 - c2,
                  "steady_run_s": float(np.median(steady)),
                  "steady_run_cpu_s": float(np.median(steady_cpu)),
                  "executor": sess.executor}))
"""

RSS = """
import resource, sys
import numpy as np
kind, path, xpath = sys.argv[1], sys.argv[2], sys.argv[3]
x = np.load(xpath)
if kind == "edge-aot":
    import sdk
    prog, why = sdk.find_aot(path)
    if prog is None:
        raise SystemExit(f"no valid AOT module: {why}")
    name = prog.input_names[0]
    run = lambda: prog.run({name: x})
    info = "sdk.aot module (no Numba)"
elif kind == "edge":
    import sdk
    s = sdk.Session(path, compiled=True)
    run = lambda: s.run({s.inputs[0].name: x})
    info = s.executor
elif kind == "ort-float":
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sys.argv[4]
    run = lambda: s.run(None, {name: x})
    info = "CPUExecutionProvider"
elif kind == "litert-xnnpack":
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    sc, zp = d["quantization"]
    if tuple(d["shape"]) != x.shape and x.ndim == 4:  # the .tflite takes NHWC
        x = x.transpose(0, 2, 3, 1)
    q = np.clip(np.round(x / sc) + zp, -128, 127).astype(d["dtype"]) if sc else x
    def run():
        it.set_tensor(d["index"], q)
        it.invoke()
    info = "XNNPACK delegate (default)"
else:
    run, info = (lambda: None), "numpy only"
for _ in range(20):
    run()
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
print(hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, info)
"""


def _child(args: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one new process."""
    wall, cpu, out, _ = _child_full(args, env)
    return wall, cpu, out


def _child_full(args: list[str], env: dict | None = None) -> tuple[float, float, str, str]:
    """(wall s, CPU s of the child, stdout, stderr) of one new process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {out.stderr.strip()[-400:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out.stdout, out.stderr


def _peak_kib(stderr: str) -> int:
    line = [ln for ln in stderr.splitlines() if ln.startswith("peak_rss_kib ")]
    return int(line[-1].split()[1]) if line else 0


def prepare(work: Path, quick: bool) -> dict[str, dict]:
    """name -> {onnx, edge, tflite|None, x}: float ONNX, int8 bundle, .tflite, input .npy."""
    from bench_backends import cnn_model

    rng = np.random.default_rng(0)
    models = {"cnn 3x32x32": (cnn_model()[0], (1, 3, 32, 32))}
    if not quick:
        import onnx

        sq = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
        if sq.is_file():
            models["squeezenet (onnx light)"] = (onnx.load(sq), (1, 3, 224, 224))
    out = {}
    for name, (model, shape) in models.items():
        stem = work / name.split()[0]
        onnx_path = stem.with_suffix(".onnx")
        import onnx

        onnx.save(model, onnx_path)
        inits = {t.name for t in model.graph.initializer}
        in_name = next(i.name for i in model.graph.input if i.name not in inits)
        calib = {in_name: rng.normal(0, 1, (4,) + shape).astype(np.float32)}
        bundle = sdk.compile_model(onnx_path, calib)
        edge_path = stem.with_suffix(".edge")
        bundle.save(edge_path)
        x_path = stem.with_suffix(".npy")
        np.save(x_path, rng.normal(0, 1, shape).astype(np.float32))
        try:
            tfl = stem.with_suffix(".tflite")
            sdk.write_tflite(bundle.graph, tfl)
            why = ""
        except Exception as exc:  # noqa: BLE001 - the reason is the row
            tfl, why = None, str(exc).splitlines()[0][:100]
        out[name] = {"onnx": onnx_path, "edge": edge_path, "tflite": tfl, "x": x_path,
                     "tflite_why": why, "input": in_name}
    return out


def bench_process(name: str, m: dict, work: Path, rounds: int) -> dict:
    warm = dict(os.environ, EDGE_CACHE_DIR=str(work / "cache-warm"), NUMBA_NUM_THREADS="1",
                OMP_NUM_THREADS="1")
    # fill the warm cache: compile the program once (compiled=True) in its own process
    fill = ("import sys, numpy as np, sdk; s = sdk.Session(sys.argv[1], compiled=True); "
            "s.run({s.inputs[0].name: np.load(sys.argv[2])}); print(s.executor)")
    _child([sys.executable, "-c", fill, str(m["edge"]), str(m["x"])], warm)
    # the ahead-of-time module, in its own cache directory (the warm row must not find it)
    aot_env = dict(warm, EDGE_CACHE_DIR=str(work / f"cache-aot-{m['edge'].stem}"))
    build_wall, build_cpu, _ = _child([sys.executable, "-m", "sdk.cli.main", "aot",
                                       str(m["edge"])], aot_env)
    edge_cli = [sys.executable, "-m", "sdk.cli.main", "run", str(m["edge"]), "-i", str(m["x"]),
                "-o", str(work / "y_edge.npz")]
    ort = [sys.executable, "-c", ORT_SCRIPT, str(m["onnx"]), str(m["x"]),
           str(work / "y_ort.npz"), m["input"]]
    runs = {"edge run (AOT module)": (edge_cli, aot_env),
            "edge run (warm cache)": (edge_cli, warm), "ORT script": (ort, warm)}
    t: dict[str, list[tuple[float, float, int]]] = {k: [] for k in runs}
    cold_t = []
    for r in range(rounds):
        for k, (cmd, env) in runs.items():
            w, c, out, err = _child_full([sys.executable, "-c", PEAK] + cmd[1:], env)
            if k == "edge run (AOT module)" and "ahead-of-time module" not in out:
                raise RuntimeError(f"edge run did not use the AOT module: {err.strip()[-300:]}")
            t[k].append((w, c, _peak_kib(err)))
        if r < 2:  # cold program cache: a fresh directory each time
            cold = dict(warm, EDGE_CACHE_DIR=str(work / f"cache-cold-{r}"))
            w, c, _, err = _child_full([sys.executable, "-c", PEAK] + edge_cli[1:], cold)
            cold_t.append((w, c, _peak_kib(err)))
    row: dict = {"model": name, "process": {},
                 "aot_build": {"wall_s": build_wall, "cpu_s": build_cpu}}
    for k, v in list(t.items()) + [("edge run (cold cache)", cold_t)]:
        row["process"][k] = {"wall_median_s": statistics.median(x[0] for x in v),
                             "cpu_median_s": statistics.median(x[1] for x in v),
                             "peak_rss_kib": max(x[2] for x in v), "n": len(v)}
    p = row["process"]
    for key, label in (("edge_aot", "edge run (AOT module)"), ("edge", "edge run (warm cache)")):
        row[f"{key}_over_ort_wall"] = (p[label]["wall_median_s"]
                                       / p["ORT script"]["wall_median_s"])
        row[f"{key}_over_ort_cpu"] = p[label]["cpu_median_s"] / p["ORT script"]["cpu_median_s"]
        row[f"{key}_over_ort_rss"] = p[label]["peak_rss_kib"] / max(
            p["ORT script"]["peak_rss_kib"], 1)
    firsts = []
    for _ in range(max(1, min(rounds, 3))):
        _, _, out = _child([sys.executable, "-c", FIRST_RUN, str(m["edge"]), str(m["x"])], warm)
        firsts.append(json.loads(out.strip().splitlines()[-1]))
    f = min(firsts, key=lambda d: d["first_run_cpu_s"])  # the least disturbed of the runs
    row["first_run"] = f
    row["first_minus_steady_s"] = f["first_run_s"] - f["steady_run_s"]
    row["first_minus_steady_cpu_s"] = f["first_run_cpu_s"] - f["steady_run_cpu_s"]
    return row


def bench_rss(name: str, m: dict) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    row: dict = {"model": name, "rss_kib": {}, "notes": {}}
    aot_env = dict(env, EDGE_CACHE_DIR=str(m["edge"].parent / f"cache-aot-{m['edge'].stem}"))
    kinds = {"numpy only": ("none", m["x"]), "edge (AOT module)": ("edge-aot", m["edge"]),
             "edge (compiled)": ("edge", m["edge"]), "ort-float": ("ort-float", m["onnx"])}
    if m["tflite"] is not None:
        kinds["litert-xnnpack"] = ("litert-xnnpack", m["tflite"])
    else:
        row["notes"]["litert-xnnpack"] = f"no .tflite: {m['tflite_why']}"
    for label, (kind, path) in kinds.items():
        _, _, out = _child([sys.executable, "-c", RSS, kind, str(path), str(m["x"]),
                            m["input"]], aot_env if kind == "edge-aot" else env)
        kib, info = out.strip().splitlines()[-1].split(" ", 1)
        row["rss_kib"][label] = int(kib)
        row["notes"][label] = info
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the sample CNN only, 3 rounds")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved process rounds")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS processes")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    rounds = a.rounds or (3 if a.quick else 7)
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    models = prepare(work, a.quick)
    rows, rss = [], []
    for name, m in models.items():
        rows.append(bench_process(name, m, work, rounds))
        if not a.no_rss:
            rss.append(bench_rss(name, m))
    load_after = os.getloadavg()[0]
    print(f"new processes, {rounds} interleaved rounds, 1 thread; load average {load:.1f} -> "
          f"{load_after:.1f} on {os.cpu_count()} cores (shared machine: read the ratios)")
    print(f"{'model':<26}{'process':<24}{'wall s':>9}{'CPU s':>9}{'peak MiB':>10}")
    for r in rows:
        for k, v in r["process"].items():
            print(f"{r['model'] if k.startswith('edge run (AOT') else '':<26}{k:<24}"
                  f"{v['wall_median_s']:>9.3f}{v['cpu_median_s']:>9.3f}"
                  f"{v['peak_rss_kib'] / 1024:>10.0f}")
        f = r["first_run"]
        print(f"{'':<26}edge run (AOT) / ORT script: {r['edge_aot_over_ort_wall']:.2f}x wall, "
              f"{r['edge_aot_over_ort_cpu']:.2f}x CPU, {r['edge_aot_over_ort_rss']:.2f}x peak "
              f"RSS (goal <= 2); AOT build {r['aot_build']['cpu_s']:.1f} s CPU once")
        print(f"{'':<26}edge run (warm cache) / ORT script: {r['edge_over_ort_wall']:.2f}x "
              f"wall, {r['edge_over_ort_cpu']:.2f}x CPU, {r['edge_over_ort_rss']:.2f}x peak RSS")
        print(f"{'':<26}new process, warm cache: import sdk {f['import_s']:.2f} s "
              f"({f['import_cpu_s']:.2f} CPU), first run {f['first_run_s']:.3f} s "
              f"({f['first_run_cpu_s']:.3f} CPU), steady {f['steady_run_s'] * 1e3:.2f} ms; "
              f"first - steady {r['first_minus_steady_cpu_s']:.3f} s CPU (goal <= 0.3); "
              f"executor: {f['executor']}")
    if rss:
        print("\npeak RSS of a new process (load, session, 20 runs), MiB")
        for r in rss:
            cells = ", ".join(f"{k} {v / 1024:.0f}" for k, v in r["rss_kib"].items())
            print(f"{r['model']:<26}{cells}")
            for k, v in r["notes"].items():
                if k not in r["rss_kib"]:
                    print(f"{'':<26}{k}: {v}")
    if a.json:
        a.json.write_text(json.dumps({
            "machine": platform.platform(), "cpu_count": os.cpu_count(),
            "load_average_1min": [load, load_after], "rounds": rounds, "quick": a.quick,
            "startup": rows, "rss": rss}, indent=2))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
