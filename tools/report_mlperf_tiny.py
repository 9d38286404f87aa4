#!/usr/bin/env python3
"""MLPerf Tiny's four reference models: SDK-predicted latency and energy per inference on the
published boards, beside the published measurements, with the error.

Each model (``sdk.profile.mlperf_tiny``: DS-CNN, MobileNetV1 0.25, ResNet-8, FC autoencoder,
rebuilt from the published layer lists with random weights) is compiled to integers and run
on the Cortex-M4 firmware in QEMU (mps2-an386) with an instruction-counting TCG plugin; the
executed-instruction mix of one inference is priced by the Cortex-M cycle model
(``sdk.profile.cycles``: per-class costs, taken-branch refills, flash wait states from the
board TOML) at the board's clock. Energy = the board's active power x modelled time.

The firmware's default kernels (``smlad``: int8 weights widened to int16 at pack time, two
MACs per SMLAD; depthwise, Add and pooling as plain C loops) give the SDK's prediction for
its own firmware. Two published stacks are set beside it:

* **TFLite Micro reference kernels** (NUCLEO-L4R5ZI only). Assumed kernel-quality ratio:
  ``TFLM_REFERENCE_RATIO`` = 1.0, i.e. TFLM's reference kernels cost what ours do. Why:
  both are portable C without CMSIS-NN; our dual-MAC inner loops are faster, but our
  depthwise/Add/pooling are plain NCHW loops and every output pays a 64-bit requantization,
  which TFLM's reference kernels also do per output. The ratio is an assumption, not a fit:
  the four models test it (acceptance: within ±30 %).
* **X-CUBE-AI** (ST's optimised library, both boards). Its ratio is *measured* here:
  published / predicted latency per model (X-CUBE-AI uses CMSIS-NN-class SIMD kernels,
  fused layers and NHWC data, so it is expected to be faster than our kernels on
  convolution-heavy models).

``--plain`` also runs the firmware's plain kernels (int8 weights, NCHW tap loops with
per-tap bounds checks): they are 2-9x slower than TFLM's reference kernels, so they are
*not* a stand-in for TFLM; the report prints them for what they are.

    python tools/report_mlperf_tiny.py --quick            # KWS and AD only (< 1 min)
    python tools/report_mlperf_tiny.py --json mlperf.json # all four models
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sdk

estimate_for_target = sdk.estimate_cycles_for_target
measure_mix, mix_unavailable = sdk.measure_instruction_mix, sdk.instruction_mix_unavailable
MODELS, NAMES = sdk.mlperf_tiny.MODELS, sdk.mlperf_tiny.NAMES
build_integer, published = sdk.mlperf_tiny.build_integer, sdk.mlperf_tiny.published
reference_outputs = sdk.mlperf_tiny.reference_outputs

BOARDS = ("nucleo-l4r5zi", "nucleo-h7a3zi")
TFLM_REFERENCE_RATIO = 1.0   # TFLM reference cycles / our smlad kernels' cycles (assumed)
TOLERANCE = 0.30


def _row(m: str, kernels: str, mix, board: str, tgt) -> dict:
    est = estimate_for_target(mix.per_inference, tgt)
    ours_ms = est.seconds * 1e3
    row = {"model": m, "board": board, "kernels": kernels,
           "instructions": mix.per_inference.instructions,
           "firmware_instructions": mix.firmware_instructions,
           "cycles": est.cycles, "flash_stall_cycles": est.flash_stall_cycles,
           "wait_states": est.wait_states, "core_timing_estimate": est.estimate_core,
           "predicted_ms": ours_ms, "predicted_uj": tgt.power.active_w * ours_ms * 1e3,
           "active_w": tgt.power.active_w, "power_source": tgt.power.source,
           "mix": mix.per_inference.to_json(), "cycle_model": est.to_json(),
           "functions": {k: estimate_for_target(v, tgt).cycles
                         for k, v in mix.by_function.items() if v.instructions >= 1000}}
    if kernels != "smlad":
        return row
    tflm = published(m, board, "tflm-reference")
    if tflm:
        ms = ours_ms * TFLM_REFERENCE_RATIO
        uj = tgt.power.active_w * ms * 1e3
        row["tflm_reference"] = {
            "predicted_ms": ms, "predicted_uj": uj, "published_ms": tflm.latency_ms,
            "published_uj": tflm.energy_uj, "latency_error": ms / tflm.latency_ms - 1,
            "energy_error": uj / tflm.energy_uj - 1, "source": tflm.source,
            "ratio_assumed": TFLM_REFERENCE_RATIO}
    xc = published(m, board, "x-cube-ai")
    if xc:
        row["x_cube_ai"] = {
            "published_ms": xc.latency_ms, "published_uj": xc.energy_uj, "source": xc.source,
            "latency_ratio_published_over_ours": xc.latency_ms / ours_ms,
            "energy_ratio_published_over_ours": xc.energy_uj / row["predicted_uj"]}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="KWS and AD only (under a minute)")
    ap.add_argument("--models", help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--plain", action="store_true",
                    help="also run the firmware's plain (int8, NCHW loop) kernels")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    models = (a.models.split(",") if a.models else (["kws", "ad"] if a.quick else
                                                     list(MODELS)))
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise SystemExit(f"error: unknown model(s) {bad}; choose from {','.join(MODELS)}")
    why = mix_unavailable()
    if why:
        print(f"report_mlperf_tiny: skipped, {why}")
        return 0
    boards = {b: sdk.load_target(b) for b in BOARDS}
    rows = []
    t_start = time.monotonic()
    for m in models:
        _, core, feeds = build_integer(m)
        reference = reference_outputs(core, feeds)
        for kernels in (("smlad", "plain") if a.plain else ("smlad",)):
            mix = measure_mix(core, feeds, packed_kernels=kernels == "smlad", runs=1)
            for name, got in mix.outputs.items():
                if not np.array_equal(got, reference[name]):
                    raise SystemExit(f"{m} ({kernels}): device output {name!r} differs from "
                                     "the integer reference; not reporting a wrong kernel")
            rows += [_row(m, kernels, mix, b, t) for b, t in boards.items()]
    wall = time.monotonic() - t_start
    _print(rows, models, wall)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "tolerance": TOLERANCE,
                                            "tflm_reference_ratio": TFLM_REFERENCE_RATIO,
                                            "seconds": wall}, indent=1))
        print(f"wrote {a.json}")
    return 0


def _print(rows: list[dict], models: list[str], wall: float) -> None:
    print("MLPerf Tiny reference models on the published boards. Ours: QEMU instruction mix "
          "of the firmware x Cortex-M cycle model; energy = board active power x modelled "
          "time (the TOMLs' estimates)")
    head = (f"{'model':<5} {'board':<14} {'kern':<5} {'Minstr':>7} {'Mcycles':>8} "
            f"{'ours ms':>8} {'ours uJ':>8} | {'TFLM-ref: est ms':>16} {'pub ms':>7} {'err':>5} "
            f"{'est uJ':>7} {'pub uJ':>7} {'err':>5} | {'X-CUBE-AI ms':>12} {'uJ':>6} "
            f"{'pub/ours':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        t, x = r.get("tflm_reference"), r.get("x_cube_ai")
        tf = (f"{t['predicted_ms']:16.1f} {t['published_ms']:7.1f} {t['latency_error']:+5.0%} "
              f"{t['predicted_uj']:7,.0f} {t['published_uj']:7,.0f} {t['energy_error']:+5.0%}"
              if t else f"{'-':>16} {'':>7} {'':>5} {'':>7} {'':>7} {'':>5}")
        xs = (f"{x['published_ms']:12.1f} {x['published_uj']:6,.0f} "
              f"{x['latency_ratio_published_over_ours']:8.2f}" if x else
              f"{'-':>12} {'':>6} {'':>8}")
        print(f"{r['model']:<5} {r['board']:<14} {r['kernels']:<5} "
              f"{r['instructions'] / 1e6:7.2f} {r['cycles'] / 1e6:8.2f} "
              f"{r['predicted_ms']:8.1f} {r['predicted_uj']:8,.0f} | {tf} | {xs}")
    print("-" * len(head))
    tflm = [r["tflm_reference"] for r in rows if "tflm_reference" in r]
    inside = [t for t in tflm if abs(t["latency_error"]) <= TOLERANCE]
    if tflm:
        print(f"TFLM reference (assumed ratio {TFLM_REFERENCE_RATIO:g} x our smlad kernels) vs "
              f"published on the M4: {len(inside)}/{len(tflm)} models within "
              f"±{TOLERANCE:.0%} in latency; errors "
              + ", ".join(f"{r['model']} {r['tflm_reference']['latency_error']:+.0%}"
                          for r in rows if "tflm_reference" in r))
    for board in BOARDS:
        ratios = [r["x_cube_ai"]["latency_ratio_published_over_ours"] for r in rows
                  if r["board"] == board and "x_cube_ai" in r]
        if ratios:
            g = float(np.exp(np.mean(np.log(ratios))))
            print(f"X-CUBE-AI / ours on {board}: latency ratio geometric mean {g:.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f}) over {len(ratios)} model(s)")
    for m in models:
        print(f"  {m}: {NAMES[m]}")
    print("published: mlcommons/tiny_results_v0.5 (TFLM reference, NUCLEO-L4R5ZI) and "
          "tiny_results_v0.7 (STMicroelectronics X-CUBE-AI, NUCLEO-L4R5ZI and NUCLEO-H7A3ZI-Q); "
          "the Cortex-M7 cycle model is an estimate")
    print(f"took {wall:.0f} s (QEMU with the counting plugin; machine shared with other jobs)")


if __name__ == "__main__":
    raise SystemExit(main())
