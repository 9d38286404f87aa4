"""Encoder-decoder vs decoder-only generation: first-token latency, tokens/s and memory,
integer (edge runtime, KV caches) beside ONNX Runtime float (past-KV graphs), same thread.

"Return of the Encoder" claims that at the same parameter budget the encoder-decoder has a
lower first-token latency and a higher throughput on edge devices. This measures both
directions on our runtime, one thread everywhere (``NUMBA_NUM_THREADS=1``, ORT
``intra_op_num_threads=1``), runs interleaved (enc-dec int, dec-only int, enc-dec ORT,
dec-only ORT, repeated; medians):

* rows ``g2p``: the committed G2P models (samples/slm) on held-out words (their natural
  input length, ~8 tokens; greedy until ``</s>``);
* rows ``text``: the committed sentence-restoration models (samples/slm/text) on held-out
  fortune sentences (16-50 input characters, greedy until ``</s>``);
* rows ``L=16/64/256``: **synthetic-size benchmark models**: the same two architectures and
  parameter counts (the committed G2P models' configs, ``samples/slm/<kind>.json``; seeded
  random weights, calibrated on random tokens) compiled for inputs of L tokens and 32 output tokens
  (the encoder length / the decoder-only cache capacity L + 33); generation is forced to
  exactly 32 tokens (no stop token), so both models do the same work per output token.

First token: input ids → the first output token's logits (enc-dec: encoder + cross K/V +
one decoder step; dec-only: prefill). Tokens/s: the following decode steps. Times are CPU
time of this process (one thread everywhere; a load spike from other processes counts less).
The integer side runs ``GenerationSession.stream`` (the loop ``generate`` runs: table
lookups, step, cache update, argmax) on the node interpreter unless ``--compiled``; ORT runs
the same greedy loop over its past-KV step. The summary's ``int8/ort`` rows are the integer
÷ ORT float tokens/s of the same model (issue 13's goal: ≥ 1.5). Memory: weights
+ the int8 KV caches (+ cross K/V) + the entries' planned arena (ours); float32 weights + the
final past-KV tensors (+ cross K/V) for ORT.

    .venv/bin/python tools/bench_slm.py [--quick] [--json out.json] [--lengths 16,64,256] [--cases g2p,text,L] [--compiled]
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # run as a script: one thread (imported by a test or a
    # process whose Numba threads already run, changing it would break its next compile)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slm_eval import SLM, OrtGenerator

import sdk
from sdk.models.slm import SLMConfig, load_weights

OUT_TOKENS = 32


def random_weights(cfg: SLMConfig, seed: int) -> dict[str, np.ndarray]:
    """Seeded weights under the names sdk.models.slm reads (scaled like a trained model)."""
    rng = np.random.default_rng(seed)
    w = {"emb": rng.normal(0, cfg.d ** -0.5, (cfg.vocab, cfg.d))}
    qd, kd = cfg.heads * cfg.dh, cfg.kv_heads * cfg.dh

    def block(p: str, cross: bool) -> None:
        w[f"{p}.n1"], w[f"{p}.n2"] = rng.uniform(0.8, 1.2, cfg.d), rng.uniform(0.8, 1.2, cfg.d)
        shapes = {"q": (cfg.d, qd), "k": (cfg.d, kd), "v": (cfg.d, kd), "o": (qd, cfg.d)}
        for n, s in shapes.items():
            w[f"{p}.{n}"] = rng.normal(0, s[0] ** -0.5, s)
            if cross:
                w[f"{p}.c{n}"] = rng.normal(0, s[0] ** -0.5, s)
        if cross:
            w[f"{p}.nc"] = rng.uniform(0.8, 1.2, cfg.d)
        w[f"{p}.f1"] = rng.normal(0, cfg.d ** -0.5, (cfg.d, cfg.ff))
        w[f"{p}.f2"] = rng.normal(0, cfg.ff ** -0.5, (cfg.ff, cfg.d))

    for i in range(cfg.enc_layers):
        block(f"enc.{i}", False)
    for j in range(cfg.dec_layers):
        block(f"dec.{j}", cfg.encdec)
    if cfg.encdec:
        w["enc.norm"] = rng.uniform(0.8, 1.2, cfg.d)
    w["dec.norm"] = rng.uniform(0.8, 1.2, cfg.d)
    return {k: v.astype(np.float32) for k, v in w.items()}


def synthetic(kind: str, L: int, seed: int = 0, compiled: bool = False):
    """(cfg, weights, int GenerationSession, ORT generator) for inputs of L tokens."""
    import dataclasses

    base = SLMConfig.from_json(json.loads((SLM / f"{kind}.json").read_text())["config"])
    if kind == "encdec":
        cfg = dataclasses.replace(base, max_src=L, capacity=OUT_TOKENS + 1)
    else:
        cfg = dataclasses.replace(base, capacity=L + OUT_TOKENS + 1)
    w = random_weights(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    samples = [(list(rng.integers(5, 34, L)), list(rng.integers(34, 73, OUT_TOKENS)))
               for _ in range(4)]
    import warnings

    with warnings.catch_warnings():  # full masks: the mask arithmetic is constant here
        warnings.simplefilter("ignore", sdk.errors.CalibrationWarning)
        bundle = sdk.compile_generation_model(cfg, w, samples, name=f"bench_{kind}_{L}")
    return cfg, w, sdk.GenerationSession(bundle, compiled=compiled), OrtGenerator(cfg, w, threads=1)


def int_memory(gs) -> dict:
    b = gs.bundle
    weights = int(b.manifest["weight_store_bytes"]) if "weight_store_bytes" in b.manifest \
        else int(b.manifest["parameter_bytes"])
    state = gs.step.new_state()
    kv = int(sum(v.nbytes for v in state.values.values()))
    cross = 0
    if gs.encoder is not None:
        cross = int(sum(np.prod(o.shape) * np.dtype(o.dtype).itemsize
                        for o in gs.encoder.outputs))
    arena = max(int(p.arena_bytes) for p in b.plans.values())
    return {"weights": weights, "kv_cache": kv, "cross_kv": cross, "arena": arena,
            "total": weights + kv + cross + arena}


def ort_memory(cfg, w, L: int, n_out: int) -> dict:
    weights = int(sum(v.nbytes for v in w.values())) + int(w["emb"].nbytes)  # emb + emb^T
    rows = (n_out + 1) if cfg.encdec else (L + 1 + n_out)
    kv = 2 * cfg.dec_layers * cfg.kv_heads * rows * cfg.dh * 4
    cross = 2 * cfg.dec_layers * cfg.kv_heads * L * cfg.dh * 4 if cfg.encdec else 0
    return {"weights": weights, "kv_cache": kv, "cross_kv": cross, "total": weights + kv + cross}


def run_int(gs, ids, n_out):
    """Greedy through the loop a user runs (``GenerationSession.stream``, which
    ``generate`` drives too): (CPU seconds to the first token, total CPU seconds, decoder
    steps + 1). ``n_out``: exactly that many tokens (no stop token), else until ``</s>``."""
    config = sdk.GenerationConfig(max_new_tokens=n_out or None,
                                  stop_tokens=() if n_out else None)
    info: dict = {}
    t0 = time.process_time()
    first, n = None, 0
    for _ in gs._iterate(ids, config, info):  # = gs.stream(ids, config), plus why it ended
        if first is None:
            first = time.process_time() - t0
        n += 1
    total = time.process_time() - t0
    # a decoder step follows every token but the last of a full budget
    return (total if first is None else first), total, n + (info["finished"] == "stop")


def run_ort(g, ids, n_out):
    from sdk.text import EOS

    t0 = time.process_time()
    feeds, past, lg, pos = g.start(ids)
    first = time.process_time() - t0
    n = 1
    budget = n_out or g.cfg.capacity - pos + 1
    while n < budget:
        t = int(np.argmax(lg))
        if not n_out and t == EOS:
            break
        lg, past = g._step(feeds, past, t, pos)
        pos += 1
        n += 1
    return first, time.process_time() - t0, n


def measure(pairs, inputs, n_out, reps):
    """pairs: name -> (kind, runner, obj); interleaved; medians of first-token s and tok/s."""
    res = {k: {"first": [], "tps": []} for k in pairs}
    for name, (_, runner, obj) in pairs.items():  # warm-up: JIT, ORT sessions per length
        for ids in inputs:
            runner(obj, ids[name.split()[0]], n_out)
    for r in range(reps):
        for ids in inputs:
            for name, (_, runner, obj) in pairs.items():
                first, total, n = runner(obj, ids[name.split()[0]], n_out)
                res[name]["first"].append(first)
                if n > 1:
                    res[name]["tps"].append((n - 1) / max(total - first, 1e-9))
    return {k: {"first_ms": 1000 * statistics.median(v["first"]),
                "tokens_per_s": statistics.median(v["tps"]) if v["tps"] else float("nan")}
            for k, v in res.items()}


def text_rows(quick: bool, reps: int, compiled: bool) -> list[dict]:
    """Rows ``text``: the committed sentence-restoration models (samples/slm/text) on
    held-out fortune sentences (inputs of 16-50 characters; greedy until ``</s>``)."""
    import slm_text_data

    text = SLM / "text"
    tok = sdk.TextTokenizer()
    pairs = slm_text_data.heldout_pairs()[:: 40][: (3 if quick else 8)]
    runners, mem = {}, {}
    for kind in ("encdec", "deconly"):
        cfg, w = load_weights(text / f"{kind}.npz")
        gs = sdk.GenerationSession(text / f"{kind}.edge", compiled=compiled)
        runners[f"{kind} int8"] = (kind, run_int, gs)
        runners[f"{kind} ort"] = (kind, run_ort, OrtGenerator(cfg, w, threads=1))
        mem[f"{kind} int8"] = int_memory(gs)
        mem[f"{kind} ort"] = ort_memory(cfg, w, cfg.max_src, slm_text_data.MAX_CHARS + 1)
    inputs = [{k: tok.encode_source(s) for k in ("encdec", "deconly")} for s, _ in pairs]
    got = measure(runners, inputs, 0, reps)
    return [{"case": "text", "model": k, **v, "memory": mem[k]} for k, v in got.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="L=16 and the G2P rows, few repeats")
    ap.add_argument("--lengths", default="16,64,256")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cases", default="g2p,text,L",
                    help="which rows: g2p (the committed G2P models), text (the sentence "
                    "models), L (the synthetic L=... models); comma-separated")
    ap.add_argument("--compiled", action="store_true",
                    help="integer steps as one generated Numba program (sdk.ops.codegen; "
                    "compiled on first use, minutes per model; cached on disk) instead of the "
                    "node interpreter")
    args = ap.parse_args()
    lengths = [16] if args.quick else [int(x) for x in args.lengths.split(",")]
    cases = set(args.cases.split(","))
    if "L" not in cases:
        lengths = []
    reps = 1 if args.quick else args.reps
    tok = sdk.G2PTokenizer()
    rows = []

    # the committed G2P models on held-out words
    import slm_data

    words = slm_data.heldout_words()[:: 300][: (4 if args.quick else 10)]
    pairs, mem = {}, {}
    for kind in ("encdec", "deconly") if "g2p" in cases else ():
        cfg, w = load_weights(SLM / f"{kind}.npz")
        gs = sdk.GenerationSession(SLM / f"{kind}.edge", compiled=args.compiled)
        pairs[f"{kind} int8"] = (kind, run_int, gs)
        pairs[f"{kind} ort"] = (kind, run_ort, OrtGenerator(cfg, w, threads=1))
        mem[f"{kind} int8"] = int_memory(gs)
        mem[f"{kind} ort"] = ort_memory(cfg, w, cfg.max_src, 21)
    inputs = [{k: tok.encode_word(x) for k in ("encdec", "deconly")} for x in words]
    got = measure(pairs, inputs, 0, reps) if pairs else {}
    for k, v in got.items():
        rows.append({"case": "g2p", "model": k, **v, "memory": mem[k]})
    if "text" in cases:
        rows += text_rows(args.quick, reps, args.compiled)

    for L in lengths:
        pairs, mem = {}, {}
        for kind in ("encdec", "deconly"):
            cfg, w, gs, og = synthetic(kind, L, compiled=args.compiled)
            pairs[f"{kind} int8"] = (kind, run_int, gs)
            pairs[f"{kind} ort"] = (kind, run_ort, og)
            mem[f"{kind} int8"] = int_memory(gs)
            mem[f"{kind} ort"] = ort_memory(cfg, w, L, OUT_TOKENS)
        rng = np.random.default_rng(L)
        inputs = [{k: list(rng.integers(5, 34, L)) for k in ("encdec", "deconly")}
                  for _ in range(2 if args.quick else 3)]
        got = measure(pairs, inputs, OUT_TOKENS, reps)
        for k, v in got.items():
            rows.append({"case": f"L={L}", "model": k, **v, "memory": mem[k]})

    print("one thread each; machine shared with other jobs (timings are noisy); integer "
          + ("compiled programs" if args.compiled else "node interpreter"))
    print(f"{'case':6s} {'model':14s} {'first ms':>9s} {'tok/s':>8s} {'mem KiB':>8s} "
          f"{'KV KiB':>7s}")
    for r in rows:
        m = r["memory"]
        print(f"{r['case']:6s} {r['model']:14s} {r['first_ms']:9.2f} {r['tokens_per_s']:8.1f} "
              f"{m['total'] / 1024:8.1f} {(m['kv_cache'] + m['cross_kv']) / 1024:7.1f}")
    summary = []
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {r["model"]: r for r in rows if r["case"] == case}
        for rt in ("int8", "ort"):
            e, d = by[f"encdec {rt}"], by[f"deconly {rt}"]
            summary.append({"case": case, "runtime": rt,
                            "first_token_change": e["first_ms"] / d["first_ms"] - 1,
                            "throughput_ratio": e["tokens_per_s"] / d["tokens_per_s"]})
        for kind in ("encdec", "deconly"):
            summary.append({"case": case, "runtime": f"{kind} int8/ort",
                            "throughput_ratio": by[f"{kind} int8"]["tokens_per_s"]
                            / by[f"{kind} ort"]["tokens_per_s"],
                            "first_token_change": by[f"{kind} int8"]["first_ms"]
                            / by[f"{kind} ort"]["first_ms"] - 1})
    print("\nenc-dec vs dec-only (paper: first token -47 %, throughput x4.7); int8 vs ORT float")
    for s in summary:
        goal = ""
        if s["runtime"].endswith("int8/ort"):  # issue 13: integer >= 1.5x ORT float tokens/s
            s["goal_1.5x_ort_tokens_per_s"] = bool(s["throughput_ratio"] >= 1.5)
            goal = f"   (goal x1.5: {'met' if s['goal_1.5x_ort_tokens_per_s'] else 'MISSED'})"
        print(f"{s['case']:6s} {s['runtime']:18s} first token {100 * s['first_token_change']:+6.1f} %"
              f"   throughput x{s['throughput_ratio']:.2f}{goal}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary,
                                         "out_tokens": OUT_TOKENS, "threads": 1}, indent=1) + "\n")


if __name__ == "__main__":
    main()
