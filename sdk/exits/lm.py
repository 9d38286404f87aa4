"""Per-token early exit in the decoder of the encoder-decoder G2P model (CALM / DYNAMAX style).

An exit head after decoder layer ``j`` reads the residual stream there through its own small
trained RMSNorm gain and the tied output embedding (``emb^T``): ``exit_logits = (RMSNorm(x_j)
* g_j) @ emb^T`` (``g_j`` from ``tools/train_slm_exits.py``, ``samples/exits/g2p_exit_head.npz``).
At each generated token the decoder runs layer by layer; after layer ``j`` the integer margin
(top-1 minus top-2 of the head's integer logits, :func:`sdk.exits.rules.margin_scores`) is
compared with a calibrated integer threshold. When it fires, the token is the head's argmax
and the skipped layers' key/value rows at this position are **filled from the exit layer's
hidden state** (CALM's state propagation: each skipped layer's ``RMSNorm -> K, V -> RoPE``
applied to ``x_j``), so later tokens attend over a complete cache.

:func:`compile_exit_generation_model` compiles the float decoder (with the exit heads as extra
outputs) once, makes it a KV-cached step graph (as :func:`sdk.compile_generation_model`) and
cuts it into entries over one weight store:

* ``decoder_step``: the model without exits (what :class:`sdk.GenerationSession` runs);
* ``exit_stage_k``: decoder layer(s) up to exit ``k`` (the last: up to the final logits);
* ``exit_fill_k``: the K/V rows of the layers of stage ``k`` computed from the hidden state
  the previous stage hands over (run instead of stage ``k`` once an earlier exit fired).

:class:`LMExitSession` runs them (greedy); :func:`calibrate_lm_exits` picks the thresholds on
validation words (the lowest thresholds whose PER stays within the allowed increase over the
model without exits). Nothing here imports torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.errors import CalibrationError, InputError, ModelFormatError

STAGE = "exit_stage_"
FILL = "exit_fill_"


def _hidden_after(model: Any, layer: int) -> str:
    """The residual stream tensor after decoder layer ``layer`` of a ``decoder_onnx`` model:
    what the next layer's first RMSNorm (or the final norm) reads."""
    nxt = "dec.norm" if layer < 0 else f"dec.{layer + 1}.n1"
    g = model.graph
    mul = next((n for n in g.node if n.op_type == "Mul" and len(n.input) == 2
                and n.input[1] == nxt), None)
    if mul is None:
        raise ModelFormatError(f"decoder has no RMSNorm weighted by {nxt!r}")
    div = next(n for n in g.node if n.output[0] == mul.input[0])
    return div.input[0]


def decoder_exit_onnx(cfg: Any, w: Mapping[str, np.ndarray], tokens: int,
                      heads: Mapping[int, Mapping[str, np.ndarray]],
                      expose_hidden: bool = False) -> Any:
    """:func:`sdk.models.slm.decoder_onnx` (``mode="full"``) plus, for each exit layer ``j``
    in ``heads`` (``{"norm": g [d]}``, optionally ``"proj"`` [d, d]), the output
    ``exit{j}_logits`` [1, T, V] and the hidden state ``hidden{j}`` it reads (also a graph
    output with ``expose_hidden``: what the head's training reads)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    from sdk.models.slm import decoder_onnx

    m = decoder_onnx(cfg, dict(w), tokens, "full")
    g = m.graph
    for j in sorted(heads):
        if not 0 <= j < cfg.dec_layers - 1:
            raise InputError(f"exit after decoder layer {j}: the model has layers 0.."
                             f"{cfg.dec_layers - 1} and the last one is the model itself")
        x = _hidden_after(m, j)
        hid = f"hidden{j}"
        g.node.append(helper.make_node("Identity", [x], [hid], name=f"exit{j}_hidden"))
        p = f"exit{j}"
        g.initializer.append(numpy_helper.from_array(
            np.asarray(heads[j]["norm"], np.float32), f"{p}.norm"))
        nodes = [
            helper.make_node("Mul", [hid, hid], [f"{p}_sq"]),
            helper.make_node("ReduceMean", [f"{p}_sq"], [f"{p}_ms"], axes=[-1], keepdims=1),
            helper.make_node("Add", [f"{p}_ms", "eps"], [f"{p}_mse"]),
            helper.make_node("Sqrt", [f"{p}_mse"], [f"{p}_rms"]),
            helper.make_node("Div", [hid, f"{p}_rms"], [f"{p}_unit"]),
            helper.make_node("Mul", [f"{p}_unit", f"{p}.norm"], [f"{p}_normed"]),
        ]
        src = f"{p}_normed"
        if "proj" in heads[j]:
            g.initializer.append(numpy_helper.from_array(
                np.asarray(heads[j]["proj"], np.float32), f"{p}.proj"))
            nodes.append(helper.make_node("MatMul", [src, f"{p}.proj"], [f"{p}_proj"]))
            src = f"{p}_proj"
        nodes.append(helper.make_node("MatMul", [src, "emb_t"], [f"{p}_logits"]))
        for i, n in enumerate(nodes):
            n.name = f"{p}_{n.op_type}_{i}"
        g.node.extend(nodes)
        g.output.append(helper.make_tensor_value_info(f"{p}_logits", TensorProto.FLOAT,
                                                      [1, tokens, cfg.vocab]))
        if expose_hidden:
            g.output.append(helper.make_tensor_value_info(hid, TensorProto.FLOAT,
                                                          [1, tokens, cfg.d]))
    checker.check_model(m)
    return m


def load_exit_heads(path: Any) -> dict[int, dict[str, np.ndarray]]:
    """``g2p_exit_head.npz`` (``exit{j}.norm`` [, ``exit{j}.proj``]) -> {j: {"norm", "proj"}}."""
    out: dict[int, dict[str, np.ndarray]] = {}
    with np.load(path) as z:
        for k in z.files:
            if not k.startswith("exit") or "." not in k:
                continue
            head, part = k.split(".", 1)
            out.setdefault(int(head[4:]), {})[part] = z[k].astype(np.float32)
    if not out:
        raise ModelFormatError(f"{path}: no exit{{j}}.norm arrays")
    return out


# -- compile -----------------------------------------------------------------------------------
def _part(graph: Any, nodes: list, name: str, outputs: set[str]) -> Any:
    from sdk.exits.plan import subgraph

    sub = subgraph(graph, nodes, name, outputs)
    sub.state = [d for d in graph.state if d.input in sub.inputs]
    sub.metadata = {k: v for k, v in graph.metadata.items() if k != "quantized_outputs"}
    sub.validate()
    return sub


def split_decoder_step(step: Any, exit_layers: Sequence[int], layers: int
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cut a cached step graph with exit heads into ``exit_stage_k`` / ``exit_fill_k``
    entries (see the module docstring) and the plan (integer logits tensors, hidden
    tensors, MACs per entry)."""
    from sdk.exits.plan import ancestors, integer_tensor
    from sdk.ops.cost import graph_macs

    producers = step.producers()
    order = step.topological_order()
    bounds = sorted(exit_layers) + [layers - 1]
    logits = [integer_tensor(step, f"exit{j}_logits") for j in bounds[:-1]] + \
        [integer_tensor(step, "logits")]
    hidden = [integer_tensor(step, f"hidden{j}") for j in bounds[:-1]]
    entries: dict[str, Any] = {}
    done: set[int] = set()
    stage_nodes: list[set[int]] = []
    fills: list[set[int]] = []
    lo = 0
    for k, hi in enumerate(bounds):
        want = ancestors(logits[k], producers)
        caches = [f"{n}_cache{j}_next" for j in range(lo, hi + 1) for n in "kv"]
        for c in caches:
            want |= ancestors(c, producers)
        own = want - done
        stage_nodes.append(own)
        if k > 0:  # the K/V rows of these layers from the handed-over hidden state
            fill: set[int] = set()
            for c in caches:
                fill |= ancestors(c, producers)
            fills.append(fill - done)
        done |= own
        lo = hi + 1
    node_stage = {nid: k for k, st in enumerate(stage_nodes) for nid in st}
    needed: list[set[str]] = [set() for _ in stage_nodes]
    for k, st in enumerate([*stage_nodes, *fills]):
        kk = k if k < len(stage_nodes) else k - len(stage_nodes) + 1
        for n in order:
            if id(n) not in st:
                continue
            for i in n.inputs:
                p = producers.get(i) if i else None
                if p is not None and node_stage.get(id(p), kk) < kk:
                    needed[node_stage[id(p)]].add(i)
    macs = {}
    for k, st in enumerate(stage_nodes):
        name = f"{STAGE}{k + 1}"
        caches = {d.output for d in step.state}
        outs = {logits[k]} | needed[k] | ({hidden[k]} if k < len(hidden) else set())
        sub = _part(step, [n for n in order if id(n) in st], name, outs | caches)
        sub.outputs = [logits[k]] + sorted(outs - {logits[k]}) + \
            [o for o in sub.outputs if o in caches]
        entries[name] = sub
        macs[name] = int(graph_macs(sub))
    for k, st in enumerate(fills):
        name = f"{FILL}{k + 2}"
        sub = _part(step, [n for n in order if id(n) in st], name,
                    {d.output for d in step.state})
        entries[name] = sub
        macs[name] = int(graph_macs(sub))
    plan = {"rule": "margin", "exit_layers": list(bounds[:-1]), "layers": layers,
            "logits": logits, "hidden": hidden, "macs": macs,
            "stages": [f"{STAGE}{k + 1}" for k in range(len(bounds))],
            "fills": [f"{FILL}{k + 2}" for k in range(len(fills))],
            "layers_per_stage": [b - a for a, b in zip([-1] + bounds[:-1], bounds)],
            "thresholds": [None] * (len(bounds) - 1)}
    return entries, plan


def compile_exit_generation_model(cfg: Any, weights: Mapping[str, np.ndarray],
                                  heads: Mapping[int, Mapping[str, np.ndarray]],
                                  samples: Sequence[tuple[Sequence[int], Sequence[int]]],
                                  name: str = "g2p_exits", **compile_options: Any) -> Any:
    """A generation bundle of the encoder-decoder with per-token exits (module docstring):
    the same calibration as :func:`sdk.compile_generation_model` (encoder outputs feed the
    decoder's), thresholds unset until :func:`calibrate_lm_exits`."""
    from sdk.compile import Bundle, compile_model
    from sdk.frontends import load_onnx
    from sdk.models.slm import encoder_onnx
    from sdk.ops.shapes import with_input_shapes
    from sdk.quant.fuse import remove_dead_nodes
    from sdk.runtime.generation import cacheable_decoder, split_lookups
    from sdk.runtime.session import Session
    from sdk.text import BOS, EOS

    if not cfg.encdec:
        raise InputError("per-token exits are built for the encoder-decoder model")
    if not samples:
        raise InputError("compile_exit_generation_model needs calibration samples")
    S, C, n = cfg.max_src, cfg.capacity, len(samples)
    pos = np.tile(np.arange(C, dtype=np.int64), (n, 1, 1))
    toks = np.zeros((n, 1, C), np.int64)
    ids = np.zeros((n, 1, S), np.int64)
    mask = np.zeros((n, 1, S), np.int64)
    for i, (src, tgt) in enumerate(samples):
        src = list(src)[:S]
        ids[i, 0, :len(src)], mask[i, 0, :len(src)] = src, 1
        toks[i, 0] = (([BOS] + list(tgt) + [EOS]) * C)[:C]
    enc_model = encoder_onnx(cfg, weights)
    enc = compile_model(enc_model, {"input_ids": ids, "attention_mask": mask},
                        **compile_options)
    fenc = Session(load_onnx(enc_model))
    outs = [fenc.run({"input_ids": ids[i], "attention_mask": mask[i]}) for i in range(n)]
    calib = {"tokens": toks, "positions": pos, "enc_mask": mask}
    for k in outs[0]:
        calib[k] = np.stack([o[k] for o in outs])
    entries: dict[str, Any] = {}
    look, main = split_lookups(enc.graph)
    entries["encoder"] = main
    if look is not None:
        entries["encoder_lookup"] = look
    dec = compile_model(decoder_exit_onnx(cfg, weights, C, heads), calib, **compile_options)
    cached = cacheable_decoder(dec.graph, cfg.dec_layers, C)
    step = with_input_shapes(cached, {"tokens": [1, 1], "positions": [1, 1]})
    stages, plan = split_decoder_step(step, sorted(heads), cfg.dec_layers)
    plain = step.copy()  # the model without exits: its logits and caches only
    plain.outputs = [o for o in plain.outputs if not o.startswith(("exit", "hidden"))]
    for o in list(plain.metadata.get("quantized_outputs", {})):
        if o.startswith(("exit", "hidden")):
            del plain.metadata["quantized_outputs"][o]
    remove_dead_nodes(plain)
    from sdk.ops.cost import graph_macs

    plan["macs"]["decoder_step"] = int(graph_macs(plain))
    look, main = split_lookups(plain)
    entries["decoder_step"] = main
    if look is not None:
        entries["decoder_step_lookup"] = look
    entries.update(stages)
    slm = {"kind": "encdec", "config": cfg.to_json(), "tokenizer": "g2p-char-arpabet"}
    for g in entries.values():
        g.metadata["slm"] = json.dumps(slm)
    bundle = Bundle.from_graphs(entries, name=name)
    bundle.manifest["lm_exits"] = plan
    return bundle


# -- run -----------------------------------------------------------------------------------------
@dataclass
class LMExitResult:
    """One greedy generation with per-token exits: the tokens, per generated token the exit
    taken (0-based stage; ``len(stages) - 1`` = no early exit), the decoder MACs and layers
    it cost, and the wall time."""

    tokens: list[int]
    exits: list[int] = field(default_factory=list)
    macs: int = 0
    layers: int = 0
    seconds: float = 0.0


class LMExitSession:
    """Greedy generation through the ``exit_stage_k`` / ``exit_fill_k`` entries of a bundle
    from :func:`compile_exit_generation_model`. ``thresholds``: one integer margin per early
    exit (default: the bundle's calibrated ones). :meth:`generate_full` is the model without
    exits (:class:`sdk.GenerationSession` on ``decoder_step``)."""

    def __init__(self, source: Any, thresholds: Sequence[int] | None = None,
                 fast: bool = True, compiled: bool | None = False) -> None:
        from sdk.compile import Bundle, load_bundle
        from sdk.runtime.generation import GenerationSession
        from sdk.runtime.session import Session

        bundle = source if isinstance(source, Bundle) else load_bundle(source)
        plan = bundle.manifest.get("lm_exits")
        if not isinstance(plan, dict):
            raise InputError(f"{bundle.name!r} has no per-token exits; build it with "
                             "sdk.exits.lm.compile_exit_generation_model")
        self.bundle, self.plan = bundle, plan
        opts = {"fast": fast, "integer_io": True}
        if compiled is not None:
            opts["compiled"] = compiled
        self.gen = GenerationSession(bundle, fast=fast, compiled=compiled)
        self.stages = [Session(bundle, entry=s, **opts) for s in plan["stages"]]
        self.fills = [Session(bundle, entry=f, **opts) for f in plan["fills"]]
        t = thresholds if thresholds is not None else plan.get("thresholds")
        if t is None or len(t) != len(self.stages) - 1:
            raise InputError(f"give {len(self.stages) - 1} exit thresholds")
        self.thresholds = [None if v is None else int(v) for v in t]
        from sdk.exits import rules

        self._margin = rules.margin_scores
        self.eos, self.bos = self.gen.eos, self.gen.bos

    def generate(self, ids: Sequence[int], max_new_tokens: int | None = None) -> LMExitResult:
        t0 = time.perf_counter()
        feeds = self.gen.encode(ids)
        states = [s.new_state() for s in self.stages]
        plan, last = self.plan, len(self.stages) - 1
        budget = self.gen.capacity if max_new_tokens is None else int(max_new_tokens)
        res = LMExitResult([])
        tok = self.bos
        for i in range(budget):
            pool = dict(feeds)
            pool["tokens"] = np.array([[tok]], np.int64)
            pool["positions"] = np.array([[i]], np.int64)
            exited = last
            for k, sess in enumerate(self.stages):
                run = sess
                if k > 0 and exited < k:  # an earlier exit fired: fill this stage's K/V
                    run = self.fills[k - 1]
                out = run.run({n: pool[n] for n in run.input_names if n in pool}, state=states[k])
                pool.update(out)
                res.macs += plan["macs"][run.entry_name]
                if run is sess:
                    res.layers += plan["layers_per_stage"][k]
                if exited < last or k == last:
                    continue
                thr = self.thresholds[k]
                q = np.asarray(out[plan["logits"][k]]).reshape(1, -1)
                if thr is not None and int(self._margin(q)[0]) >= thr:
                    exited = k
            q = np.asarray(pool[plan["logits"][exited]]).reshape(-1)
            res.exits.append(exited)
            tok = int(np.argmax(q))
            if tok == self.eos:
                break
            res.tokens.append(tok)
        res.seconds = time.perf_counter() - t0
        return res

    def generate_full(self, ids: Sequence[int]) -> LMExitResult:
        t0 = time.perf_counter()
        out = self.gen.generate(ids)
        n = min(len(out.tokens) + 1, self.gen.capacity)  # the stop token's step too
        return LMExitResult(list(out.tokens), [len(self.stages) - 1] * n,
                            n * self.plan["macs"]["decoder_step"], n * self.plan["layers"],
                            time.perf_counter() - t0)

    def margins_along_full(self, ids: Sequence[int]) -> list[list[int]]:
        """Per early exit, the integer margins at each step of the model's own (no-exit)
        greedy path: the candidates a threshold sweep needs."""
        saved = self.thresholds
        self.thresholds = [None] * len(saved)
        try:
            feeds = self.gen.encode(ids)
            states = [s.new_state() for s in self.stages]
            out_m: list[list[int]] = [[] for _ in saved]
            tok = self.bos
            for i in range(self.gen.capacity):
                pool = dict(feeds, tokens=np.array([[tok]], np.int64),
                            positions=np.array([[i]], np.int64))
                for k, sess in enumerate(self.stages):
                    pool.update(sess.run({n: pool[n] for n in sess.input_names if n in pool},
                                         state=states[k]))
                    if k < len(saved):
                        q = np.asarray(pool[self.plan["logits"][k]]).reshape(1, -1)
                        out_m[k].append(int(self._margin(q)[0]))
                tok = int(np.argmax(np.asarray(pool[self.plan["logits"][-1]]).reshape(-1)))
                if tok == self.eos:
                    break
            return out_m
        finally:
            self.thresholds = saved


def calibrate_lm_exits(sess: LMExitSession, words: Sequence[Sequence[int]],
                       score: Callable[[list[list[int]]], float], max_drop: float,
                       candidates: int = 10) -> dict:
    """Pick the exit threshold (one early exit: its integer margin) on validation words:
    greedy generation at each candidate threshold (quantiles of the margins on the model's
    own path), ``score(outputs)`` = error rate in points (e.g. PER); keep the lowest threshold
    (most exits) whose score is within ``max_drop`` of the model without exits. Sets
    ``sess.thresholds`` and the bundle plan; returns the curve."""
    from sdk.exits.calibrate import check_drop

    drop = check_drop(max_drop)
    if len(sess.stages) != 2:
        raise InputError("calibrate_lm_exits sweeps one early exit")
    full = [sess.generate_full(w) for w in words]
    base = score([r.tokens for r in full])
    base_macs = float(np.mean([r.macs / max(1, len(r.exits)) for r in full]))
    margins = np.concatenate([np.asarray(sess.margins_along_full(w)[0], np.int64)
                              for w in words])
    cands = np.unique(np.quantile(margins, np.linspace(0.05, 0.95, candidates),
                                  method="lower")).astype(int).tolist()
    cands.append(int(margins.max()) + 1)
    curve = []
    for t in sorted(set(cands), reverse=True):
        sess.thresholds = [t]
        runs = [sess.generate(w) for w in words]
        toks = sum(len(r.exits) for r in runs)
        curve.append({"threshold": int(t), "score": round(score([r.tokens for r in runs]), 4),
                      "exit_share": round(sum(e == 0 for r in runs for e in r.exits) /
                                          max(1, toks), 4),
                      "mean_macs_per_token": round(sum(r.macs for r in runs) / max(1, toks), 1)})
    ok = [c for c in curve if c["score"] <= base + drop + 1e-9
          and c["mean_macs_per_token"] < base_macs]
    if not ok:
        saving = [c for c in curve if c["mean_macs_per_token"] < base_macs]
        if not saving:
            raise CalibrationError(f"no exit threshold saves compute on these {len(words)} "
                                   f"words: the exit head costs more than the layers skipped")
        need = min(saving, key=lambda c: c["score"])
        raise CalibrationError(f"no exit threshold that saves compute keeps the error within "
                               f"{drop:g} points of {base:.2f} on these {len(words)} words; the "
                               f"smallest increase is {need['score'] - base:.2f} points "
                               f"(threshold {need['threshold']}, {100 * need['exit_share']:.1f}% "
                               f"of tokens exit)")
    pick = min(ok, key=lambda c: (c["mean_macs_per_token"], c["score"]))
    sess.thresholds = [pick["threshold"]]
    sess.plan["thresholds"] = [pick["threshold"]]
    sess.plan["calibration"] = {"words": len(words), "max_drop": drop, "score_full": base,
                                "macs_per_token_full": base_macs, "chosen": pick,
                                "curve": curve}
    return sess.plan["calibration"]


__all__ = ["LMExitResult", "LMExitSession", "calibrate_lm_exits",
           "compile_exit_generation_model", "decoder_exit_onnx", "load_exit_heads",
           "split_decoder_step"]
