"""Peak arena against TFLite Micro on the same compiled model, and the keyword-spotting
model's modelled energy on the Cortex-M4 target beside MLPerf Tiny's measurement.

The model is MLPerf Tiny's keyword-spotting architecture (DS-CNN), compiled by the SDK and
written as .tflite by the SDK's writer; TFLite Micro's host interpreter allocates it and
reports its arena. TFLite Micro's *head* is its planned tensor memory (byte sizes do not
depend on the pointer width); its *tail* holds runtime structures sized for this 64-bit host
(a 32-bit MCU's tail is smaller), so the like-for-like ratio is against the head.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from arena_executor import run_in_arena
from kws_dscnn import dscnn_bundle, dscnn_macs

from sdk.compile.memory_plan import PLACEMENTS, live_bytes_bound, plan_memory
from sdk.compile.tflite_writer import write_tflite
from sdk.ops.interpreter import Interpreter
from sdk.profile.profiler import profile_graph

# MLPerf Tiny v0.5 keyword spotting, TFLite Micro reference on NUCLEO-L4R5ZI (Cortex-M4F,
# 120 MHz): 7,374 uJ per inference at 5.5 inferences/s.
MLPERF_KWS_UJ = 7374.0
MLPERF_KWS_INF_PER_S = 5.5
MLPERF_CLOCK_HZ = 120e6


@pytest.fixture(scope="module")
def kws(tmp_path_factory: pytest.TempPathFactory):
    return dscnn_bundle(tmp_path_factory.mktemp("kws"))


def test_peak_arena_against_tflite_micro(kws, tmp_path: Path) -> None:
    if importlib.util.find_spec("tflite_micro") is None:
        pytest.skip("tflite-micro is not installed (pip install -e '.[dev]')")
    from tflm_arena import tflite_tensor_graph, tflm_arena

    path = tmp_path / "kws.tflite"
    write_tflite(kws.graph, path)
    tflm = tflm_arena(path)
    same_tensors = plan_memory(tflite_tensor_graph(path), in_place=False).arena_bytes
    default = plan_memory(kws.graph)                 # element-wise in place only
    tflm_order = plan_memory(kws.graph, placement="size-first-fit")
    ours = plan_memory(kws.graph, in_place=True)     # + in-place convs with scratch
    x = np.random.default_rng(7).standard_normal((1, 1, 49, 10)).astype(np.float32)
    got = run_in_arena(kws.graph, ours, {"mfcc": x})
    want = Interpreter(kws.graph, fast=False).run({"mfcc": x})
    np.testing.assert_array_equal(got["logits"], want["logits"])
    print(f"\nDS-CNN keyword spotting, arena bytes: TFLite Micro total {tflm['total']} "
          f"(head {tflm['head']}, tail {tflm['tail']}, 64-bit host)")
    print(f"  SDK greedy plan of the same .tflite tensors, no in-place: {same_tensors} "
          f"({same_tensors / tflm['head']:.2f}x TFLM head)")
    print(f"  SDK plan of the compiled graph, element-wise in place (default): "
          f"{default.arena_bytes} ({default.arena_bytes / tflm['head']:.2f}x TFLM head)")
    print(f"  default placement: best of {sorted(PLACEMENTS)}; TFLM's order alone "
          f"{tflm_order.arena_bytes}; live-bytes floor for this node order "
          f"{live_bytes_bound(default)} ({live_bytes_bound(default) / tflm['head']:.2f}x): "
          "no placement or order of this chain goes lower without in-place kernels")
    print(f"  SDK plan of the compiled graph with in-place convs: {ours.arena_bytes} "
          f"({ours.arena_bytes / tflm['head']:.2f}x TFLM head, "
          f"{ours.arena_bytes / tflm['total']:.2f}x TFLM total); goal <= 0.80x")
    assert same_tensors <= tflm["head"] and default.arena_bytes <= tflm["head"]
    assert live_bytes_bound(default) <= default.arena_bytes <= tflm_order.arena_bytes
    assert ours.arena_bytes <= 0.8 * tflm["head"]


def test_kws_energy_on_cortex_m4_beside_mlperf(kws) -> None:
    r = profile_graph(kws.graph, "mps2-an386", measure=False)
    assert r.total("macs") == dscnn_macs()
    cycles = r.modeled_total_s * 25e6
    mlperf_cycles = MLPERF_CLOCK_HZ / MLPERF_KWS_INF_PER_S
    active_uj = r.modeled_total_s * 0.009 * 1e6
    print(f"\nDS-CNN KWS ({dscnn_macs():,} MACs) on mps2-an386 (Cortex-M4): roofline "
          f"{cycles / 1e6:.2f} M cycles, modelled {r.energy_j * 1e6:.1f} uJ "
          f"({r.energy_table}), active power x time {active_uj:.1f} uJ")
    print(f"  MLPerf Tiny KWS, TFLite Micro on NUCLEO-L4R5ZI: {MLPERF_KWS_UJ:,.0f} uJ at "
          f"{MLPERF_KWS_INF_PER_S} inf/s = {mlperf_cycles / 1e6:.1f} M cycles at 120 MHz; "
          f"the roofline assumes the ideal 2 MAC/cycle, "
          f"{mlperf_cycles / cycles:.1f}x fewer cycles than measured")
    # a roofline is a lower bound: it may not claim more speed than the SIMD peak allows
    assert cycles >= dscnn_macs() / 2
    assert cycles < mlperf_cycles
