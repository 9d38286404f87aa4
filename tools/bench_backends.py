#!/usr/bin/env python3
"""Latency of every backend on this machine, side by side and interleaved, for the same models.

Two sets of models:

* float ONNX models compiled by the SDK (``sdk.compile_model``): the keyword-spotting step
  graph of samples/kws (one 10 ms hop, state fed), a small CNN on 3×32×32, a ViT (128² image,
  16×16 patches, D=192, 4 blocks, 3 heads, MLP 768) and a decoder token step
  4×(512→2048→512, ReLU, residual), and the committed segmentation model
  (samples/seg/seg_vit_mask.onnx, its integer bundle from ``sdk.compile_segmenter``). Each
  runs as the float ONNX model on ONNX Runtime
  ("ort-float"), and as the SDK's integer graph on: the compiled whole-graph program ("edge"),
  the prepared interpreter ("edge-interp"), ONNX Runtime (QDQ export, "ort-qdq") and LiteRT
  with XNNPACK ("litert-xnnpack"). Inputs and outputs are float everywhere (the integer
  backends quantize and dequantize at the boundary).
* the language-model token step of samples/slm (``encdec.edge``, one greedy step at KV
  position 8 through ``sdk.GenerationSession``: compiled "edge", "edge-interp") against ONNX
  Runtime's float past-KV step of the same weights ("ort-float"); no LiteRT export.
* the integer sample graphs of ``sdk.sample_graphs`` (no float twin): "edge", "edge-interp",
  the NumPy specification ("numpy-ref", small sizes), "ort-qdq", "litert-xnnpack",
  "litert-cpu".

Backends are measured interleaved: each round runs every backend on the model once for a
short batch, and the reported figure is the median over rounds of the per-call time — so a
load spike from another process hits every column alike. The time is the CPU time of this
process (every backend runs on the calling thread: one thread, ORT's spinning off), which on
a shared, overloaded machine counts only the cycles the backend got; the wall-clock median is
in the JSON too (``wall_median_s``). Printed and in the JSON: medians,
and per model the ratios edge ÷ peer (< 1: the SDK is faster), with the goals of issue 16
(edge ≤ LiteRT+XNNPACK, edge ≤ ORT float ÷ 1.2). ``diff`` is the largest output difference
from the reference column (LSB for integer graphs; absolute float difference for the float
models, whose reference is edge-interp; edge must equal it: 0).

    python tools/bench_backends.py --quick            # under a minute (smaller models)
    python tools/bench_backends.py --json out.json    # full sizes, machine-readable too
    python tools/bench_backends.py --quick --only cnn --startup   # + new-process start-up
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sdk
from sdk import LiteRTBackend, OrtBackend, ReferenceBackend, compile_for
from sdk import sample_graphs as sg

KWS_MODEL = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.onnx"
SEG_MODEL = ROOT / "samples" / "seg" / "seg_vit_mask.onnx"
SLM = ROOT / "samples" / "slm"
SEG_NAME = "seg vit (samples/seg)"
LM_NAME = "lm step encdec (samples/slm)"


# -- float models (onnx.helper) -----------------------------------------------------------
class _Onnx:
    """A tiny ONNX graph builder with seeded weights."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.k = 0

    def const(self, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.k += 1
        name = f"c{self.k}"
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        self.k += 1
        out = f"{op.lower()}_{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.k}", **attrs))
        return out

    def weight(self, *shape: int, fan_in: int) -> str:
        return self.const((self.rng.standard_normal(shape) / np.sqrt(fan_in))
                          .astype(np.float32))

    def linear(self, x: str, n_in: int, n_out: int) -> str:
        y = self.node("MatMul", [x, self.weight(n_in, n_out, fan_in=n_in)])
        return self.node("Add", [y, self.const(
            (0.1 * self.rng.standard_normal(n_out)).astype(np.float32))])

    def layernorm(self, x: str, d: int) -> str:
        return self.node("LayerNormalization", [
            x, self.const((1 + 0.1 * self.rng.standard_normal(d)).astype(np.float32)),
            self.const((0.1 * self.rng.standard_normal(d)).astype(np.float32))], axis=-1)

    def model(self, name: str, inputs: dict[str, tuple], output: str):
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v))
             for k, v in inputs.items()],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def cnn_model(hw: int = 32, width: int = 16):
    """Conv 3×3 + ReLU → depthwise 3×3 / 2 → pointwise 1×1 → residual add + ReLU → max pool
    → flatten → fully connected (10 logits): the sample CNN's structure, in float."""
    b = _Onnx(1)
    c1 = b.node("Relu", [b.node("Conv", ["x", b.weight(width, 3, 3, 3, fan_in=27),
                                         b.const(np.zeros(width, np.float32))],
                                pads=[1, 1, 1, 1])])
    dw = b.node("Conv", [c1, b.weight(width, 1, 3, 3, fan_in=9),
                         b.const(np.zeros(width, np.float32))],
                pads=[1, 1, 1, 1], strides=[2, 2], group=width)
    pw = b.node("Conv", [dw, b.weight(width, width, 1, 1, fan_in=width),
                         b.const(np.zeros(width, np.float32))])
    res = b.node("Relu", [b.node("Add", [dw, pw])])
    pool = b.node("MaxPool", [res], kernel_shape=[2, 2], strides=[2, 2])
    flat = b.node("Flatten", [pool], axis=1)
    q = hw // 4
    y = b.linear(flat, width * q * q, 10)
    return b.model("cnn", {"x": (1, 3, hw, hw)}, y), {"x": (1, 3, hw, hw)}


def vit_model(img: int = 128, patch: int = 16, d: int = 192, blocks: int = 4, heads: int = 3,
              mlp: int = 768):
    """A ViT encoder: patch embedding (conv k=s=patch), position embedding, ``blocks`` pre-LN
    blocks (multi-head attention, GELU MLP), final LayerNorm, the first token's features, 10-class head."""
    b = _Onnx(2)
    t = (img // patch) ** 2
    dh = d // heads
    e = b.node("Conv", ["x", b.weight(d, 3, patch, patch, fan_in=3 * patch * patch),
                        b.const(np.zeros(d, np.float32))], strides=[patch, patch])
    e = b.node("Reshape", [e, b.const(np.array([1, d, t], np.int64))])
    h = b.node("Transpose", [e], perm=[0, 2, 1])
    h = b.node("Add", [h, b.const((0.1 * b.rng.standard_normal((1, t, d))).astype(np.float32))])
    for _ in range(blocks):
        x = b.layernorm(h, d)

        def heads_of(v: str) -> str:
            r = b.node("Reshape", [v, b.const(np.array([1, t, heads, dh], np.int64))])
            return b.node("Transpose", [r], perm=[0, 2, 1, 3])

        q, k, v = (heads_of(b.linear(x, d, d)) for _ in range(3))
        kt = b.node("Transpose", [k], perm=[0, 1, 3, 2])
        s = b.node("Mul", [b.node("MatMul", [q, kt]),
                           b.const(np.array(1 / np.sqrt(dh), np.float32))])
        p = b.node("Softmax", [s], axis=-1)
        ctx = b.node("Transpose", [b.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
        ctx = b.node("Reshape", [ctx, b.const(np.array([1, t, d], np.int64))])
        h = b.node("Add", [h, b.linear(ctx, d, d)])
        x = b.layernorm(h, d)
        u = b.linear(x, d, mlp)
        gelu = b.node("Mul", [b.node("Mul", [u, b.node("Add", [
            b.node("Erf", [b.node("Div", [u, b.const(np.array(np.sqrt(2), np.float32))])]),
            b.const(np.array(1, np.float32))])]), b.const(np.array(0.5, np.float32))])
        h = b.node("Add", [h, b.linear(gelu, mlp, d)])
    h = b.layernorm(h, d)
    first = b.node("Slice", [h, b.const(np.array([0], np.int64)),
                             b.const(np.array([1], np.int64)), b.const(np.array([1], np.int64))])
    pooled = b.node("Reshape", [first, b.const(np.array([1, d], np.int64))])
    y = b.linear(pooled, d, 10)
    return b.model("vit", {"x": (1, 3, img, img)}, y), {"x": (1, 3, img, img)}


def decoder_model(d: int = 512, ff: int = 2048, blocks: int = 4):
    """One token's step through ``blocks`` residual MLP blocks x + W2·ReLU(W1·x)."""
    b = _Onnx(3)
    h = "x"
    for _ in range(blocks):
        u = b.node("Relu", [b.linear(h, d, ff)])
        h = b.node("Add", [h, b.linear(u, ff, d)])
    return b.model("decoder_step", {"x": (1, d)}, h), {"x": (1, d)}


def float_models(quick: bool, only: str = "") -> dict:
    """name -> (float ONNX bytes, integer Graph, float feeds) for the names containing
    ``only``."""
    rng = np.random.default_rng(0)
    out = {}
    if KWS_MODEL.is_file() and only in "kws hop (67k MACs)":
        ss = sdk.StreamingSession(KWS_MODEL)
        frames = rng.normal(0, 1, (80, 1, 40)).astype(np.float32)
        calib = ss.record_feeds(frames)
        bundle = sdk.compile_model(KWS_MODEL, calib)
        feeds = {k: v[40] for k, v in calib.items()}
        out["kws hop (67k MACs)"] = (KWS_MODEL.read_bytes(), bundle.graph, feeds)
    if SEG_MODEL.is_file() and only in SEG_NAME:
        bundle = sdk.load_bundle(sdk.compile_segmenter(SEG_MODEL))  # cached after the first
        size = int(bundle.graph.tensor(bundle.graph.inputs[0]).shape[2])
        images, _ = sdk.vision.cached_scenes(1, 1, "test", size)
        x = sdk.vision.normalize_batch(images)[:, None][0]
        out[f"{SEG_NAME[:-1]}, {size}x{size})"] = (SEG_MODEL.read_bytes(), bundle.graph,
                                                   {"x": x})
    specs = {"cnn 3x32x32": cnn_model()}
    if quick:
        specs["vit 64² p16 d192 x1"] = vit_model(img=64, blocks=1)
        specs["decoder step 1x(512-2048-512)"] = decoder_model(blocks=1)
    else:
        specs["vit 128² p16 d192 x4"] = vit_model()
        specs["decoder step 4x(512-2048-512)"] = decoder_model()
    for name, (model, shapes) in specs.items():
        if only not in name:
            continue
        calib = {k: rng.normal(0, 1, (8,) + s[1:] if s[0] == 1 else s).astype(np.float32)
                 for k, s in shapes.items()}
        calib = {k: v.reshape((-1,) + shapes[k]) for k, v in calib.items()}
        bundle = sdk.compile_model(model, calib)
        feeds = {k: v[0] for k, v in calib.items()}
        out[name] = (model.SerializeToString(), bundle.graph, feeds)
    return out


# -- executors ----------------------------------------------------------------------------
def integer_backends(threads: int, with_numpy: bool, extra_litert: bool) -> dict:
    bk = {"edge": ReferenceBackend(fast=True, compiled=True),
          "edge-interp": ReferenceBackend(fast=True, compiled=False)}
    if with_numpy:
        bk["numpy-ref"] = ReferenceBackend(fast=False)
    bk["ort-qdq"] = OrtBackend(providers=["cpu"], threads=threads)
    bk["litert-xnnpack"] = LiteRTBackend(["xnnpack"], num_threads=threads)
    if extra_litert:
        bk["litert-cpu"] = LiteRTBackend(["cpu"], num_threads=threads)
    return bk


def ort_float(model_bytes: bytes, threads: int) -> Callable:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return lambda feeds: dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def interleaved(runs: dict[str, Callable], feeds: dict, budget_s: float, rounds: int
                ) -> dict[str, dict]:
    """Median per-call seconds of each callable, measured in interleaved rounds."""
    for f in runs.values():  # warm-up: JIT, caches, allocator
        for _ in range(3):
            f(feeds)
    per_call = {}
    for name, f in runs.items():  # calls per round so that one round is ~budget/rounds
        t0 = time.perf_counter()
        f(feeds)
        per_call[name] = max(1, int(budget_s / rounds / len(runs)
                                    / max(time.perf_counter() - t0, 1e-6)))
    samples: dict[str, list[float]] = {n: [] for n in runs}
    cpu: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(rounds):
        for name, f in runs.items():
            n = per_call[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                f(feeds)
            cpu[name].append((time.process_time() - c0) / n)
            samples[name].append((time.perf_counter() - t0) / n)
    return {n: {"median_s": float(np.median(cpu[n])), "wall_median_s": float(np.median(s)),
                "rounds": len(s), "calls_per_round": per_call[n]} for n, s in samples.items()}


def _diff(a: dict, b: dict) -> float:
    return max(float(np.abs(np.asarray(a[o], np.float64) - np.asarray(b[o], np.float64)).max())
               for o in b if o in a)


def bench_model(name: str, graph, feeds: dict, float_bytes: bytes | None, args) -> dict:
    backends = integer_backends(args.threads, with_numpy=float_bytes is None and
                                graph.name != "fc", extra_litert=float_bytes is None)
    runs: dict[str, Callable] = {}
    row: dict = {"model": name, "backends": {}}
    for bname, backend in backends.items():
        exe = compile_for(graph, backend, "laptop")
        runs[bname] = exe.run
        row["backends"][bname] = {"fallback_nodes": len(exe.plan.fallbacks),
                                  "nodes": len(exe.plan.assignments)}
        if bname == "edge":
            edge_exe = exe
    if float_bytes is not None:
        runs["ort-float"] = ort_float(float_bytes, args.threads)
        row["backends"]["ort-float"] = {"fallback_nodes": 0, "nodes": None}
    outs = {b: f(feeds) for b, f in runs.items()}
    ref_name = "numpy-ref" if "numpy-ref" in outs else "edge-interp"
    for b, o in outs.items():
        row["backends"][b]["max_diff"] = _diff(o, outs[ref_name])
    timing = interleaved(runs, feeds, args.budget, args.rounds)
    for b, t in timing.items():
        row["backends"][b].update(t)
    inner = getattr(edge_exe.parts[0], "inner", None) if edge_exe.parts else None
    row["edge_executor"] = ", ".join(sorted(set(getattr(inner, "status", {}).values()))) or "?"
    edge = timing["edge"]["median_s"]
    row["ratios"] = {f"edge/{b}": edge / t["median_s"] for b, t in timing.items() if b != "edge"}
    goals = {}
    if "litert-xnnpack" in timing:
        goals["edge <= litert-xnnpack"] = row["ratios"]["edge/litert-xnnpack"] <= 1.0
    if "ort-float" in timing:
        goals["edge <= ort-float / 1.2"] = row["ratios"]["edge/ort-float"] <= 1 / 1.2
    row["goals"] = goals
    return row


def bench_lm_step(args, position: int = 8) -> dict | None:
    """One greedy token step of the committed G2P encoder-decoder (samples/slm/encdec) at KV
    position ``position``: the SDK's integer step (table lookups, then the step graph) as the
    compiled program ("edge") and on the interpreter ("edge-interp"), against ONNX Runtime's
    float past-KV step of the same weights ("ort-float", tools/slm_eval.OrtGenerator). LiteRT
    has no export of the step graph. Every call runs the same position (the state's position
    is reset; ORT gets the same past each time)."""
    if not (SLM / "encdec.edge").is_file():
        return None
    sys.path.insert(0, str(ROOT / "tools"))
    from slm_eval import OrtGenerator, load_weights  # tools/slm_eval.py (the G2P models' tool)

    cfg, w = load_weights(SLM / "encdec.npz")
    ids = sdk.G2PTokenizer().encode_word("benchmark")
    runs, outs, row = {}, {}, {"model": LM_NAME, "backends": {}}
    for name, compiled in (("edge", True), ("edge-interp", False)):
        gen = sdk.GenerationSession(SLM / "encdec.edge", compiled=compiled)
        feeds, state, _ = gen.start(ids)
        for tok in range(4, 4 + position - 1):
            gen._decode(feeds, [tok], state)
        saved = dict(state.positions)

        def step(_feeds, gen=gen, feeds=feeds, state=state, saved=saved):
            state.positions = dict(saved)
            return {"logits": gen._decode(feeds, [5], state)}

        runs[name] = step
        row["backends"][name] = {"fallback_nodes": 0, "nodes": len(gen.step.graph.nodes)}
        if name == "edge":
            row["edge_executor"] = gen.step.executor
    og = OrtGenerator(cfg, w, threads=args.threads)
    ofeeds, past, _, _ = og.start(ids)
    for pos, tok in enumerate(range(4, 4 + position - 1), start=1):
        _, past = og._step(ofeeds, past, tok, pos)
    runs["ort-float"] = lambda _f: {"logits": og._step(ofeeds, past, 5, position)[0]}
    row["backends"]["ort-float"] = {"fallback_nodes": 0, "nodes": None}
    for b, f in runs.items():
        outs[b] = f({})
    for b in runs:  # integer logits: edge must equal edge-interp; ORT: same best token
        row["backends"][b]["max_diff"] = (
            _diff(outs[b], outs["edge-interp"]) if b != "ort-float" else
            float(np.argmax(outs[b]["logits"]) != np.argmax(outs["edge-interp"]["logits"])))
    timing = interleaved(runs, {}, args.budget, args.rounds)
    for b, t in timing.items():
        row["backends"][b].update(t)
    edge = timing["edge"]["median_s"]
    row["ratios"] = {f"edge/{b}": edge / t["median_s"] for b, t in timing.items() if b != "edge"}
    row["goals"] = {"edge <= ort-float / 1.2": row["ratios"]["edge/ort-float"] <= 1 / 1.2}
    return row


_STARTUP = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import numpy as np
import sdk
t1, c1 = time.perf_counter(), time.process_time()
sess = sdk.Session(sys.argv[1], compiled=True)
feeds = {i.name: np.zeros(i.shape, i.dtype) for i in sess.inputs}
t2, c2 = time.perf_counter(), time.process_time()
sess.run(feeds)
t3, c3 = time.perf_counter(), time.process_time()
steady, steady_cpu = [], []
for _ in range(30):
    a, b = time.perf_counter(), time.process_time()
    sess.run(feeds)
    steady.append(time.perf_counter() - a)
    steady_cpu.append(time.process_time() - b)
print(json.dumps({"import_s": t1 - t0, "session_s": t2 - t1, "first_run_s": t3 - t2,
                  "steady_run_s": float(np.median(steady)), "import_cpu_s": c1 - c0,
                  "first_run_cpu_s": c3 - c2, "steady_run_cpu_s": float(np.median(steady_cpu)),
                  "executor": sess.executor}))
"""


def startup(models: dict, workdir: Path) -> list[dict]:
    """First inference in a new process: with a cold program cache (compiles) and a warm one
    (loads machine code), each a fresh ``python`` running import sdk → Session → run."""
    import subprocess

    rows = []
    for name, graph in models.items():
        path = workdir / f"{name.split()[0]}.edge"
        sdk.Bundle.from_graph(graph).save(path)
        cache = workdir / f"cache-{name.split()[0]}"
        env = dict(os.environ, EDGE_CACHE_DIR=str(cache))
        row: dict = {"model": name}
        for phase in ("cold", "warm"):
            w0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _STARTUP, str(path)], env=env,
                                 cwd=ROOT, capture_output=True, text=True, check=True)
            row[phase] = json.loads(out.stdout.strip().splitlines()[-1])
            row[phase]["process_s"] = time.perf_counter() - w0
        row["warm_first_minus_steady_s"] = (row["warm"]["first_run_s"]
                                            - row["warm"]["steady_run_s"])
        row["warm_first_minus_steady_cpu_s"] = (row["warm"]["first_run_cpu_s"]
                                                - row["warm"]["steady_run_cpu_s"])
        row["cold_compile_s"] = row["cold"]["first_run_s"] - row["warm"]["first_run_s"]
        row["cold_compile_cpu_s"] = (row["cold"]["first_run_cpu_s"]
                                     - row["warm"]["first_run_cpu_s"])
        rows.append(row)
    print("\nstart-up: a new process (import sdk, Session, first run), cold then warm program "
          "cache; wall seconds (machine shared) and, in brackets, CPU seconds of the process")
    print(f"{'model':<26}{'cache':<7}{'import':>14}{'session':>9}{'1st run':>16}"
          f"{'steady':>10}{'process':>9}")
    for r in rows:
        for phase in ("cold", "warm"):
            p = r[phase]
            print(f"{r['model'] if phase == 'cold' else '':<26}{phase:<7}"
                  f"{p['import_s']:>7.2f} ({p['import_cpu_s']:.2f}){p['session_s']:>9.2f}"
                  f"{p['first_run_s']:>8.3f} ({p['first_run_cpu_s']:.3f})"
                  f"{p['steady_run_s'] * 1e3:>8.3f}ms{p['process_s']:>9.2f}")
        print(f"{'':<26}warm first run - steady: {r['warm_first_minus_steady_s']:.3f} s wall, "
              f"{r['warm_first_minus_steady_cpu_s']:.3f} s CPU (goal <= 0.3 s); cold-cache "
              f"compile: {r['cold_compile_s']:.2f} s wall, {r['cold_compile_cpu_s']:.2f} s CPU")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small models, short runs (< 1 min)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--threads", type=int, default=1, help="threads for ORT and LiteRT")
    ap.add_argument("--plans", action="store_true", help="print each backend's partition plan")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds per model")
    ap.add_argument("--only", default="", help="run only models whose name contains this")
    ap.add_argument("--startup", action="store_true",
                    help="also time a new process's first inference, cold and warm cache")
    args = ap.parse_args(argv)
    args.budget = 0.6 if args.quick else 4.0
    args.rounds = args.rounds or (5 if args.quick else 15)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = []
    for name, (fbytes, graph, feeds) in float_models(args.quick, args.only).items():
        results.append(bench_model(name, graph, feeds, fbytes, args))
    ints = {"cnn int 3x32x32": sg.cnn_graph(hw=32, width=16),
            "attention t32 d64": sg.attention_graph(t=32, d=64),
            "rnn step 40->128": sg.step_graph(n_in=40, n_state=128, n_out=12),
            "segmentation 8->16": sg.segmentation_graph()}
    if not args.quick:
        ints["fc 512x512x512"] = sg.fc_graph(batch=512, k=512, n=512)
    if args.only in LM_NAME:
        lm = bench_lm_step(args)
        if lm is not None:
            results.append(lm)
    for name, graph in ints.items():
        if args.only in name:
            results.append(bench_model(name, graph, sg.random_feeds(graph, seed=0), None, args))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    _print(results, args.threads, load, load_after)
    starts = []
    if args.startup:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            starts = startup({"cnn int 3x32x32": sg.cnn_graph(hw=32, width=16),
                              "rnn step 40->128": sg.step_graph(n_in=40, n_state=128,
                                                                n_out=12)}, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps({
            "machine": platform.platform(), "cpu_count": os.cpu_count(),
            "load_average_1min": [load, load_after], "threads": args.threads,
            "quick": args.quick, "rounds": args.rounds, "results": results,
            "startup": starts}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _print(results: list[dict], threads: int, load: float, load_after: float) -> None:
    print(f"median CPU time per call ({threads} thread(s)), backends interleaved; "
          f"load average {load:.1f} -> {load_after:.1f} on {os.cpu_count()} cores; "
          "edge/x < 1: the SDK's compiled program is faster; diff: vs the reference column")
    header = (f"{'model':<32}{'backend':<16}{'median ms':>11}{'edge/x':>8}{'diff':>10}"
              f"{'fb':>5}")
    print(header)
    print("-" * len(header))
    for row in results:
        for k, (name, r) in enumerate(row["backends"].items()):
            ratio = "" if name == "edge" else f"{row['ratios'][f'edge/{name}']:.2f}"
            print(f"{row['model'] if k == 0 else '':<32}{name:<16}{r['median_s'] * 1e3:>11.4f}"
                  f"{ratio:>8}{r['max_diff']:>10.3g}{r['fallback_nodes']:>5}")
        goals = ", ".join(f"{g}: {'met' if ok else 'MISSED'}" for g, ok in row["goals"].items())
        print(f"{'':<32}executor: {row.get('edge_executor', '?')}; {goals}")


if __name__ == "__main__":
    sys.exit(main())
