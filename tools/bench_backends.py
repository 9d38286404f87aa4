#!/usr/bin/env python3
"""Latency of every backend on this machine, side by side, for the same integer models.

For each model (a CNN, a transformer-ish attention block, a recurrent step graph, one large
fully-connected layer) the identical integer graph runs on: the NumPy reference kernels, the
Numba kernels, ONNX Runtime (QDQ export), LiteRT with XNNPACK, LiteRT's optimized built-in
kernels, and LiteRT's reference kernels. Nodes a backend cannot take fall back to the Numba
kernels (the plan is printed with --plans). Printed: median latency per backend, its ratio to
ONNX Runtime and to LiteRT+XNNPACK measured in the same run, and the largest output
difference from the NumPy reference in LSB (0 = same bits).

    python tools/bench_backends.py --quick            # under a minute
    python tools/bench_backends.py --json out.json    # full sizes, machine-readable too
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdk import LiteRTBackend, OrtBackend, ReferenceBackend, compile_for
from sdk import sample_graphs as sg


def models(quick: bool) -> dict:
    if quick:
        return {"cnn 3x32x32": sg.cnn_graph(hw=32, width=16),
                "attention t32 d64": sg.attention_graph(t=32, d=64),
                "rnn step 40->128": sg.step_graph(n_in=40, n_state=128, n_out=12),
                "segmentation 8->16": sg.segmentation_graph(),
                "fc 64x512x512": sg.fc_graph(batch=64, k=512, n=512)}
    return {"cnn 3x96x96": sg.cnn_graph(hw=96, width=32),
            "attention t128 d128": sg.attention_graph(t=128, d=128),
            "rnn step 40->256": sg.step_graph(n_in=40, n_state=256, n_out=12),
            "segmentation 8->16": sg.segmentation_graph(),
            "fc 512x512x512": sg.fc_graph(batch=512, k=512, n=512)}


def backends(threads: int) -> dict:
    return {"numpy-ref": ReferenceBackend(fast=False),
            "numba": ReferenceBackend(fast=True),
            "onnxruntime": OrtBackend(providers=["cpu"], threads=threads),
            "litert-xnnpack": LiteRTBackend(["xnnpack"], num_threads=threads),
            "litert-cpu": LiteRTBackend(["cpu"], num_threads=threads),
            "litert-ref": LiteRTBackend(["reference"], num_threads=threads)}


def measure(exe, feeds, budget_s: float, min_runs: int = 3, max_runs: int = 200) -> list[float]:
    exe.run(feeds)  # warm-up (Numba compiles here)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs
                                     or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        exe.run(feeds)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small models, short runs (< 1 min)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--threads", type=int, default=1, help="threads for ORT and LiteRT")
    ap.add_argument("--plans", action="store_true", help="print each backend's partition plan")
    args = ap.parse_args(argv)
    budget = 0.4 if args.quick else 2.0
    results = []
    for mname, graph in models(args.quick).items():
        feeds = sg.random_feeds(graph, seed=0)
        row: dict = {"model": mname, "backends": {}}
        expected = None
        for bname, backend in backends(args.threads).items():
            exe = compile_for(graph, backend, "laptop")
            if args.plans:
                print(exe.plan)
            out = exe.run(feeds)
            if expected is None:
                expected = out
            diff = max(int(np.abs(out[o].astype(np.int64) - expected[o]).max()) for o in out)
            times = measure(exe, feeds, budget)
            row["backends"][bname] = {
                "median_s": float(np.median(times)), "runs": len(times), "max_lsb_diff": diff,
                "fallback_nodes": len(exe.plan.fallbacks), "nodes": len(exe.plan.assignments)}
        results.append(row)
    _print(results, args.threads)
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.platform(), "threads": args.threads,
                                         "quick": args.quick, "results": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _print(results: list[dict], threads: int) -> None:
    print(f"median latency per backend ({threads} thread(s)); ratio = backend / reference "
          "column (>1 is slower); diff = max |out - numpy-ref| in LSB; fb = nodes on fallback")
    header = f"{'model':<22}{'backend':<16}{'median ms':>11}{'/ORT':>8}{'/XNNPACK':>10}{'diff':>6}{'fb':>5}"
    print(header)
    print("-" * len(header))
    for row in results:
        b = row["backends"]
        ort, xnn = b["onnxruntime"]["median_s"], b["litert-xnnpack"]["median_s"]
        for k, (name, r) in enumerate(b.items()):
            print(f"{row['model'] if k == 0 else '':<22}{name:<16}{r['median_s'] * 1e3:>11.4f}"
                  f"{r['median_s'] / ort:>8.2f}{r['median_s'] / xnn:>10.2f}"
                  f"{r['max_lsb_diff']:>6}{r['fallback_nodes']:>5}")


if __name__ == "__main__":
    sys.exit(main())
