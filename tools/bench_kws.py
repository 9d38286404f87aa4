#!/usr/bin/env python3
"""Streaming keyword spotting cost: per-hop latency, real-time factor, spike rates, size.

One 10 ms hop = one step of the LMUFormer step graph (samples/kws/models). The same step
graph runs on the SDK's reference backend (Numba kernels and the NumPy specification, through
StreamingSession: state carried as raw integers) and on ONNX Runtime (the float ONNX file; the
compiled integer graph exported as QDQ ONNX), all on one thread, fed with the log-mel frames of
espeak-ng speech. Printed per backend: median and p99 latency per hop, real-time factor
(median / 10 ms), ratio to ONNX Runtime on the same graph, and agreement with the reference.
Then the spike rate (spiking variant) or activation density (ReLU variant) per layer, which the
energy model uses, and parameters and MACs per second of audio beside LMUFormer's ≈1.6 M
parameters.

    python tools/bench_kws.py --quick            # under a minute
    python tools/bench_kws.py --json kws.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sdk
from sdk.audio import HOP_LENGTH, SAMPLE_RATE, StreamingLogMel, logmel
from sdk.models import LMUFormerWeights, initial_state, lmuformer_step
from sdk.models.lmuformer import ACT_SITES, CONV_KERNEL
from sdk.runtime import synthesize_speech

MODELS = ROOT / "samples" / "kws" / "models"
HOP_US = 1e6 * HOP_LENGTH / SAMPLE_RATE
HOPS_PER_S = SAMPLE_RATE / HOP_LENGTH
LMUFORMER_PARAMS = 1.6e6  # LMUFormer (Liu et al. 2024) on Speech Commands, as reported
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "house"]
GOAL_US = 100.0


def speech_features(voice: str, seed: int) -> np.ndarray:
    """Model input frames ``[T, 1, n_mels]`` (log2 units) of keyword speech (noise without
    espeak-ng)."""
    if shutil.which("espeak-ng"):
        audio, _ = synthesize_speech(WORDS, voice=voice, seed=seed)
    else:
        audio = np.random.default_rng(seed).normal(0, 2000, 12 * SAMPLE_RATE).astype(np.int16)
    return (logmel(audio).astype(np.float32) / 256.0)[:, None, :]


def percentiles(times_s: list[float]) -> dict[str, float]:
    us = np.asarray(times_s) * 1e6
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean()), "hops": len(us)}


def time_streaming(ss: sdk.StreamingSession, xs: np.ndarray, warmup: int = 20) -> list[float]:
    ss.reset()
    for x in xs[:warmup]:
        ss.step(x)
    ss.reset()
    times = []
    for x in xs:
        t0 = time.perf_counter()
        ss.step(x)
        times.append(time.perf_counter() - t0)
    return times


class OrtStream:
    """An ONNX Runtime session over a step graph, carrying its (float) state outputs."""

    def __init__(self, model_bytes: bytes, pairs: dict[str, str]) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        self.pairs = pairs
        self.out_names = [o.name for o in self.sess.get_outputs()]
        self.shapes = {i.name: i.shape for i in self.sess.get_inputs()}
        self.reset()

    def reset(self) -> None:
        self.state = {k: np.zeros(self.shapes[k], np.float32) for k in self.pairs}

    def step(self, x: np.ndarray, state: dict[str, np.ndarray] | None = None
             ) -> dict[str, np.ndarray]:
        feeds = {"x": x, **(self.state if state is None else state)}
        out = dict(zip(self.out_names, self.sess.run(self.out_names, feeds)))
        self.state = {k: out[v] for k, v in self.pairs.items()}
        return out

    def time(self, xs: np.ndarray, warmup: int = 20) -> list[float]:
        for x in xs[:warmup]:
            self.step(x)
        self.reset()
        times = []
        for x in xs:
            t0 = time.perf_counter()
            self.step(x)
            times.append(time.perf_counter() - t0)
        return times


def one_step_lsb(ss: sdk.StreamingSession, ort_stream: OrtStream, xs: np.ndarray) -> int:
    """Largest |ORT − reference| on the logits in output LSB, each hop from the SAME state
    (the reference's), so recurrent drift does not accumulate."""
    from sdk.kernels.quantize import dequantize_linear

    q = next(o.quant for o in ss.stream_outputs if o.name == "logits")
    ss.reset()
    worst = 0.0
    for x in xs:
        state = {k: dequantize_linear(v, ss.state_infos[k].quant.scale,
                                      ss.state_infos[k].quant.zero_point)
                 for k, v in ss.get_state().items()}
        ref = ss.step(x).outputs["logits"]
        got = ort_stream.step(x, state)["logits"]
        worst = max(worst, float(np.abs(got - ref).max()) / float(q.scale))
    return round(worst)


def macs_per_hop(w: LMUFormerWeights) -> dict[str, int]:
    """Multiply-accumulates of one step, per layer (dense count)."""
    c = w.config
    h = c.d_model * c.mlp_ratio
    return {"embed (causal conv k=3)": c.d_model * CONV_KERNEL * c.n_mels,
            "lmu input W_u": c.lmu_units * c.d_model,
            "lmu memory Ā·m + B̄·u": c.lmu_units * (c.lmu_order ** 2 + c.lmu_order),
            "lmu readout W_m, W_a": c.d_model * (c.lmu_units * c.lmu_order + c.d_model),
            "mixer 1x1 up": h * c.d_model, "mixer 1x1 down": c.d_model * h,
            "head": c.n_classes * c.d_model}


#: activation site → the layer whose input it is (spikes there are accumulates, not MACs)
SITE_FEEDS = {"v_embed": "lmu input W_u", "v_u": "lmu memory Ā·m + B̄·u",
              "v_lmu": None, "v_mix_in": "mixer 1x1 up", "v_mix_hidden": "mixer 1x1 down",
              "v_head": "head"}


def front_end_macs() -> int:
    """32-bit multiplies of one log-mel hop of the integer front end (sdk.audio's own count:
    window, 512-point real FFT, power, mel filters)."""
    from sdk.audio import logmel_op_count

    return logmel_op_count(40).mul32


def activation_rates(w: LMUFormerWeights, xs: np.ndarray) -> dict[str, float]:
    """Fraction of hops × units firing (spiking) or non-zero (ReLU), per activation site."""
    state = initial_state(w.config)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for x in xs:
        _, state, acts = lmuformer_step(w, x, state)
        for site, a in acts.items():
            sums[site] = sums.get(site, 0.0) + float(np.count_nonzero(a))
            counts[site] = counts.get(site, 0) + a.size
    return {s: sums[s] / counts[s] for s, _ in ACT_SITES if s in sums}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer hops (< 1 min)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--model", type=Path, default=MODELS / "kws_lmuformer_nonspiking.onnx",
                    help="float step graph (.onnx) with its .npz weights beside it")
    args = ap.parse_args(argv)
    import numba

    previous_threads = numba.get_num_threads()
    numba.set_num_threads(1)  # one core, as on a small board
    try:
        return _bench(args)
    finally:
        numba.set_num_threads(previous_threads)


def _bench(args: argparse.Namespace) -> int:
    if not args.model.is_file():
        print(f"error: {args.model} not found; train it with tools/train_kws.py",
              file=sys.stderr)
        return 2
    from sdk.backends.onnxruntime.export import export_qdq

    hops = 300 if args.quick else 1200
    xs = speech_features("en-us+m3", seed=0)
    xs = np.concatenate([xs] * (hops // len(xs) + 1))[:hops]
    calib_xs = speech_features("en+f2", seed=3)

    float_ss = sdk.StreamingSession(args.model)
    ort_float = OrtStream(args.model.read_bytes(), float_ss.pairs)
    try:
        bundle = sdk.compile_model(args.model, float_ss.record_feeds(calib_xs))
        int_note = ""
    except sdk.UnsupportedOpError as exc:  # e.g. LIF neurons before their integer lowering
        bundle, int_note = None, str(exc)

    front = StreamingLogMel()
    audio = np.random.default_rng(1).normal(0, 3000, hops * HOP_LENGTH).astype(np.int16)
    fe_times = []
    for k in range(hops):
        t0 = time.perf_counter()
        front.step(audio[k * HOP_LENGTH:(k + 1) * HOP_LENGTH])
        fe_times.append(time.perf_counter() - t0)
    measured = []
    agreement: dict = {}
    if bundle is not None:
        int_fast = sdk.StreamingSession(bundle, fast=True)
        int_ref = sdk.StreamingSession(bundle, fast=False)
        ort_int = OrtStream(export_qdq(int_fast.graph).SerializeToString(), int_fast.pairs)
        ref_hops = xs[:100] if args.quick else xs[:300]
        measured += [
            ("integer", "edge numba", time_streaming(int_fast, xs), "ort-int"),
            ("integer", "edge numpy-ref", time_streaming(int_ref, ref_hops), "ort-int"),
            ("integer", "onnxruntime QDQ", ort_int.time(xs), "ort-int")]
        agreement["ort_one_step_max_lsb"] = one_step_lsb(int_fast, ort_int, xs[:200])
        int_fast.reset()
        int_ref.reset()
        agreement["numba_equals_numpy_ref"] = bool(np.array_equal(
            int_fast.steps(xs[:100])["logits"], int_ref.steps(xs[:100])["logits"]))
    measured += [
        ("float", "edge reference", time_streaming(float_ss, xs), "ort-float"),
        ("float", "onnxruntime", ort_float.time(xs), "ort-float"),
        ("front end", "log-mel int (numpy)", fe_times, None)]
    base = {against: percentiles(t)["median_us"] for _, b, t, against in measured
            if b.startswith("onnxruntime")}
    rows = []
    for graph, backend, times, against in measured:
        p = percentiles(times)
        p.update(graph=graph, backend=backend, rtf=p["median_us"] / HOP_US,
                 ratio_to_ort=p["median_us"] / base[against] if against else None)
        rows.append(p)
    float_ss.reset()
    yf = float_ss.steps(xs[:200])["logits"]
    ort_float.reset()
    yo = np.stack([ort_float.step(x)["logits"] for x in xs[:200]])
    agreement["float_ort_max_abs_diff"] = float(np.abs(yf - yo).max())

    print(f"per-hop latency, one thread, {hops} hops of espeak-ng speech features "
          f"(hop = {HOP_US / 1e3:.0f} ms; RTF = median / hop; ratio = / ONNX Runtime on the same "
          "graph, < 1 is faster)")
    header = f"{'graph':<10}{'backend':<22}{'median µs':>11}{'p99 µs':>10}{'RTF':>9}{'/ORT':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = f"{r['ratio_to_ort']:.2f}" if r["ratio_to_ort"] is not None else "-"
        print(f"{r['graph']:<10}{r['backend']:<22}{r['median_us']:>11.1f}{r['p99_us']:>10.1f}"
              f"{r['rtf']:>9.4f}{ratio:>8}")
    if bundle is None:
        print(f"integer graph: not measured, the model does not compile: {int_note}")
    else:
        numba = rows[0]
        print(f"agreement: numba == numpy-ref bit for bit: {agreement['numba_equals_numpy_ref']}"
              f"; ORT QDQ vs reference, one step from the same state: ≤ "
              f"{agreement['ort_one_step_max_lsb']} LSB (ORT requantizes with a float multiply);"
              f" float ORT vs reference: max |diff| {agreement['float_ort_max_abs_diff']:.2e}")
        met = "met" if numba["median_us"] <= GOAL_US else "NOT met"
        print(f"goal ≤ {GOAL_US:.0f} µs median per hop: {met} ({numba['median_us']:.1f} µs); "
              f"faster than ORT on the same integer graph: "
              f"{'yes' if numba['ratio_to_ort'] < 1 else 'no'} ({numba['ratio_to_ort']:.2f}x)")

    variants = []
    for npz in sorted(MODELS.glob("kws_lmuformer_*.npz")):
        w = LMUFormerWeights.load(npz)
        rates = activation_rates(w, xs[:300])
        macs = macs_per_hop(w)
        synops = sum(macs[SITE_FEEDS[s]] * r for s, r in rates.items() if SITE_FEEDS.get(s))
        variants.append({"model": npz.stem, "spiking": w.config.spiking,
                         "parameters": w.parameter_count(), "macs_per_hop": macs,
                         "rates": rates, "input_driven_ops_per_hop": synops})
    print()
    print("activity per layer (spiking: spike rate = spikes / (units × hops); ReLU: fraction "
          "non-zero), over 300 hops of speech")
    for v in variants:
        kind = "spike rate" if v["spiking"] else "non-zero"
        print(f"  {v['model']}: " + ", ".join(f"{s} {r:.3f}" for s, r in v["rates"].items())
              + f"  ({kind})")
    print()
    print(f"{'model':<28}{'params':>10}{'vs LMUFormer':>14}{'MACs/hop':>10}{'MMAC/s audio':>14}"
          f"{'ops/s at rates':>16}")
    for v in variants:
        per_hop = sum(v["macs_per_hop"].values())
        print(f"{v['model']:<28}{v['parameters']:>10,}{v['parameters'] / LMUFORMER_PARAMS:>13.1%}"
              f"{per_hop:>10,}{per_hop * HOPS_PER_S / 1e6:>14.2f}"
              f"{v['input_driven_ops_per_hop'] * HOPS_PER_S / 1e6:>13.2f} M")
    print(f"{'LMUFormer (paper)':<28}{LMUFORMER_PARAMS:>10,.0f}{'100.0%':>14}")
    fe = front_end_macs()
    print(f"front end (integer log-mel, FFT): {fe:,} multiplies/hop = {fe * HOPS_PER_S / 1e6:.2f} MMAC/s; "
          f"compiled bundle cost model: "
          f"{format(bundle.manifest.get('macs', 0), ',') if bundle else 'n/a'} MACs/hop; "
          "'ops/s at rates' counts the MACs of layers fed by activations only when the input "
          "unit is active (accumulates for spikes)")

    if args.json:
        args.json.write_text(json.dumps({
            "machine": platform.platform(), "python": platform.python_version(),
            "model": str(args.model), "hops": hops, "quick": args.quick, "latency": rows,
            **agreement, "integer_not_measured": int_note or None, "variants": variants,
            "front_end_macs_per_hop": fe,
            "bundle_macs_per_hop": bundle.manifest.get("macs") if bundle else None,
            "lmuformer_parameters": LMUFORMER_PARAMS}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
