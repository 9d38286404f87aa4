"""Modelled energy of the streaming keyword model on microcontrollers, beside MLPerf Tiny.

The LMUFormer step graph (samples/kws/models) is compiled to integers (calibrated on
espeak-ng speech), its device part (integer I/O, state carried as raw integers) profiled with
``sdk.profile_graph`` on each target, and scaled to MLPerf Tiny's unit of work: one
inference = one 1-second clip = 100 hops of 10 ms, plus the log-mel front end per hop.

MLPerf Tiny v0.5 keyword spotting, TFLite Micro reference (DS-CNN) on NUCLEO-L4R5ZI
(Cortex-M4F at 120 MHz): 7,374 uJ per inference at 5.5 inferences/s, a *measurement* of the
whole board. Ours is an *estimate*: the target's active power x roofline time, the one
energy figure `edge profile` prints (the op-count table only splits it by layer). The roofline
assumes the SIMD peak, so modelled inferences/s are an upper bound.

A spiking model's spike-driven layers (fed by 0/1 spikes: in the integer graph a two-level
``QLut``, the lowered exact-step ``HardSigmoid``; see ``sdk.profile.spikes``) count
accumulates, not MACs, at the firing rates measured over the streamed clip (a model the
integer compiler cannot lower is profiled as its float step graph, likewise).

Usage::

    python tools/report_kws_energy.py --json kws_energy.json           # the ReLU model
    python tools/report_kws_energy.py --model samples/kws/models/kws_lmuformer_spiking.onnx
    edge profile STEP.edge --target mps2-an386 --hops 100 [--front-end]   # same per-hop model

From Python, rates measured over a stream go to the profiler directly::

    rates = sdk.stream_firing_rates(step_graph, [{"x": frame} for frame in frames])
    report = sdk.profile_graph(step_graph, "mps2-an386", firing_rates=rates)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sdk
from sdk.profile import core_state_pairs, stream_firing_rates

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "samples/kws/models/kws_lmuformer_nonspiking.onnx"
MLPERF_KWS_UJ = 7374.0
MLPERF_KWS_INF_PER_S = 5.5
MLPERF_SOURCE = ("MLPerf Tiny v0.5 keyword spotting, TFLite Micro reference DS-CNN on "
                 "NUCLEO-L4R5ZI (Cortex-M4F @ 120 MHz), measured")
CALIBRATION_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
CLIP_WORDS = ["left"]
HOP_S = 0.01


def speech(words: list[str], voice: str, seed: int, wav: str | None) -> np.ndarray:
    """int16 16 kHz audio: a WAV file, else words spoken by espeak-ng."""
    if wav:
        from sdk.audio import load_wav
        return load_wav(wav)
    audio, _ = sdk.synthesize_speech(words, voice=voice, seed=seed)
    return audio


def one_second(audio: np.ndarray, hops: int) -> np.ndarray:
    """The ``hops``·10 ms window of ``audio`` with the most energy (the spoken word)."""
    n = hops * 160
    if len(audio) < n:
        raise sdk.InputError(f"the clip has {len(audio)} samples, fewer than {hops} hops "
                             f"({n}); give a longer recording")
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(n), "valid")[::160]
    start = int(np.argmax(power)) * 160
    return audio[start:start + n]


def build_step(model: Path, calib_audio: np.ndarray) -> tuple[sdk.Graph, str]:
    """The graph a device steps each hop: the integer core of the compiled model, or the
    float step graph where the model cannot be compiled to integers."""
    try:
        bundle = sdk.compile_keyword_model(model, calib_audio)
    except sdk.UnsupportedOpError as exc:
        return sdk.load_onnx(str(model)), f"float step graph (not compiled to integers: {exc})"
    return bundle.graph, "integer step graph (compiled by sdk.compile_keyword_model)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="keyword step graph (.onnx)")
    ap.add_argument("--targets", default="mps2-an386,stm32h7",
                    help="comma-separated board names (see `edge targets`)")
    ap.add_argument("--hops", type=int, default=100,
                    help="hops per inference (100 x 10 ms = MLPerf's 1-second clip)")
    ap.add_argument("--wav", help="the 1-s clip to stream (default: espeak-ng speech)")
    ap.add_argument("--calib-wav", help="calibration audio (default: espeak-ng speech)")
    ap.add_argument("--no-front-end", action="store_true",
                    help="leave the log-mel front end out of the per-inference figures")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    model = Path(a.model)
    if not model.is_file():
        raise SystemExit(f"error: {model} not found; train it with tools/train_kws.py or "
                         "pass --model STEP.onnx")
    try:
        calib = speech(CALIBRATION_WORDS, "en-us+f2", 1, a.calib_wav)
        clip = one_second(speech(CLIP_WORDS, "en-us+m3", 2, a.wav), a.hops)
    except sdk.EdgeError as exc:
        raise SystemExit(f"error: {exc}") from None
    float_step, how = build_step(model, calib)
    ss = sdk.StreamingSession(float_step, fast=False)
    frames = (sdk.logmel(clip, int(ss.stream_inputs[0].shape[-1])).astype(np.float32)
              / np.float32(256.0))[:, None, :]
    recorded = ss.record_feeds(frames)          # every hop's feeds (raw integers if compiled)
    step = sdk.integer_core(ss.graph)
    names = sdk.core_input_names(ss.graph)
    hops = [{names[k]: v[t] for k, v in recorded.items()} for t in range(len(frames))]
    state_inputs = {names[k] for k in ss.pairs}
    rates = stream_firing_rates(
        step, [{k: v for k, v in f.items() if k not in state_inputs} for f in hops],
        initial_state={k: v for k, v in hops[0].items() if k in state_inputs},
        state_pairs=core_state_pairs(ss.graph))
    front = None if a.no_front_end else sdk.logmel_front_end_count(frames.shape[-1])
    mid = hops[len(hops) // 2]
    rows, clocks = [], {}
    for name in a.targets.split(","):
        try:
            tgt = sdk.load_target(name.strip())
        except sdk.EdgeError as exc:
            raise SystemExit(f"error: {exc}") from None
        clocks[tgt.name] = f"{tgt.cpu.core} @ {tgt.cpu.clock_hz / 1e6:g} MHz"
        table = sdk.energy_table(tgt.energy_table, tgt.energy_overrides, tgt.name)
        hop = sdk.profile_graph(step, tgt, feeds=mid, runs=1, firing_rates=rates or None)
        rows.append(sdk.streaming_energy(hop, tgt, table, a.hops, front))

    print(f"keyword model {model.name}: {how}")
    print(f"one inference = one 1-s clip = {a.hops} hops of 10 ms"
          + ("" if front is None else f" + the {front.name} per hop"))
    if rates:
        print("spike rates measured over the streamed clip: "
              + ", ".join(f"{k} {v:.3f}" for k, v in sorted(rates.items())))
    print("energy per inference = the target's active power x modelled (roofline) time, the "
          "one figure `edge profile` reports; first for the step graph alone (as MLPerf's "
          "runner, which feeds precomputed features), then with the front end; inf/s = 1 / "
          "roofline time (an upper bound: the roofline assumes the SIMD peak)")
    head = (f"{'':<24} {'uJ/inf':>9} {'inf/s':>8} {'| +front: uJ/inf':>16} {'inf/s':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.hop.target + ' (estimate)':<24} "
              f"{r.graph_active_power_inference_j * 1e6:9.1f} "
              f"{1 / r.graph_inference_s:8.2f} "
              f"{r.active_power_inference_j * 1e6:16.1f} {r.inferences_per_s:7.2f}")
    print(f"{'MLPerf Tiny KWS (meas.)':<24} {MLPERF_KWS_UJ:9,.0f} {MLPERF_KWS_INF_PER_S:8.2f}")
    print("-" * len(head))
    for r in rows:
        print(f"{r.hop.target} ({clocks[r.hop.target]}): step graph "
              f"{r.hop.total('macs'):,.0f} MACs + {r.hop.total('accumulates'):,.0f} ACs per "
              f"hop, roofline {r.hop.modeled_total_s * 1e6:.1f} us/hop + front end "
              f"{r.front_end_s * 1e6:.1f} us/hop; active power {r.active_w} W; "
              f"MLPerf / ours (step graph) = "
              f"{MLPERF_KWS_UJ / (r.graph_active_power_inference_j * 1e6):.1f}x")
    print(f"MLPerf: {MLPERF_SOURCE}. Ours: a modelled estimate (active power x roofline time), "
          "not a measurement; different models (DS-CNN on 49x10 MFCC vs. the streaming "
          "LMUFormer). The op-count table (energy table named in the JSON) only splits that "
          "figure by layer; `edge profile --qemu-cycles` times an MCU by its instruction mix.")
    if front is not None:
        print("front end as sdk.audio.logmel specifies it (integer radix-2 FFT, "
              f"{front.mul32:,} 32-bit multiplies per hop)")
    if a.json:
        doc = {"model": str(model), "graph": how, "hops_per_inference": a.hops,
               "firing_rates": rates,
               "mlperf": {"uj_per_inference": MLPERF_KWS_UJ,
                          "inferences_per_s": MLPERF_KWS_INF_PER_S, "source": MLPERF_SOURCE},
               "targets": [{**r.to_json(), "profile": r.hop.to_json()} for r in rows]}
        Path(a.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
