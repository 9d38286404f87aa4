"""KV-cached integer generation for small encoder-decoder and decoder-only language models.

A generation bundle (:func:`compile_generation_model`) holds integer entry graphs over one
weight store, and its manifest metadata (``slm``) says which model kind it is:

* encoder-decoder: ``encoder`` (token ids + mask → the cross-attention keys and values of
  every decoder layer, run **once per input**) and ``decoder_step`` (one token; a
  fixed-capacity int8 self-attention KV cache per layer, declared as ``kv_cache`` state and
  written by ``KVCacheWrite``, a ``CausalMask`` in front of each self-attention Shiftmax);
* decoder-only: ``prefill`` (the whole prompt, any length up to the capacity) and
  ``decoder_step`` over the same caches.

Both decoders are compiled from the float graph over ``capacity`` tokens with a constant
causal mask (so calibration sees causal attention); the integer mask constant is then
replaced by the position-driven ``CausalMask`` (:func:`sdk.add_kv_cache`). Positions feed
the integer RoPE tables (``Gather`` of an int8 cos/sin table by ``positions``).

:class:`GenerationSession` runs them: greedy, beam search, seeded top-k / top-p sampling,
stop tokens, ``max_new_tokens``, a token iterator (:meth:`GenerationSession.stream`), and a
one-line :class:`~sdk.errors.InputError` when the input or the generation would pass the
compiled capacity. Logits stay integers for greedy and beam ranking (one per-tensor scale:
the order is the float order); sampling dequantizes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import GraphError, InputError

STRATEGIES = ("greedy", "beam", "sample")


@dataclass
class GenerationConfig:
    """How to pick tokens. ``max_new_tokens`` None: up to the compiled capacity.
    ``strategy``: greedy | beam (``num_beams``, ``length_penalty``) | sample (``top_k``
    0 = off, ``top_p`` 1.0 = off, ``temperature``, ``seed``)."""

    max_new_tokens: int | None = None
    strategy: str = "greedy"
    num_beams: int = 4
    length_penalty: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    seed: int = 0
    stop_tokens: tuple[int, ...] | None = None

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise InputError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.top_k < 0 or not (0.0 < self.top_p <= 1.0) or self.temperature <= 0:
            raise InputError("sampling needs top_k >= 0, 0 < top_p <= 1 and temperature > 0 "
                             f"(got {self.top_k}, {self.top_p}, {self.temperature})")


# -- compile ---------------------------------------------------------------------------------
def cacheable_decoder(graph: Any, layers: int, capacity: int) -> Any:
    """The compiled full-sequence decoder → the same graph over KV caches (in place)."""
    from sdk.graph.state import add_kv_cache

    producers = graph.producers()
    scores = []
    for j in range(layers):
        masked = [n for n in graph.nodes if n.op == "QAdd" and n.inputs[0] == f"self{j}_scores"]
        if len(masked) != 1 or not graph.tensor(masked[0].inputs[1]).is_constant:
            raise GraphError(f"decoder layer {j}: no constant causal mask on self{j}_scores; "
                             "build the decoder with sdk.models.slm.decoder_onnx(mode='full')")
        add = masked[0]
        bias = graph.tensor(add.inputs[1])
        # the constant triangle gives way to CausalMask at the cache position: a zero bias
        # keeps the QAdd's regridding of the kept scores exactly as calibrated
        zero = graph.unique_name(f"self{j}_scores_no_bias")
        graph.add_constant(zero, np.zeros((1,) * len(bias.shape), bias.dtype), bias.quant)
        add.inputs[1] = zero
        scores.append(add.outputs[0])
        for n in (f"k{j}_rows", f"v{j}_rows"):
            if n not in graph.tensors or n not in producers:
                raise GraphError(f"decoder has no tensor {n!r} to cache")
    rows = {}
    consumers = graph.consumers()
    for j in range(layers):
        for kind in "kv":
            src = f"{kind}{j}_rows"
            users = consumers.get(src, [])
            # a lone Requantize of the new rows (onto the attention matmul's grid) moves in
            # front of the cache write: it regrids one row per step instead of the whole
            # cache, and the cache holds the regridded rows. Every row a query sees has the
            # same bits; the rows past the position are masked to exact zero weight.
            if len(users) == 1 and users[0].op == "Requantize" and src not in graph.outputs \
                    and np.ndim(users[0].attrs.get("m0", 0)) == 0:
                src = users[0].outputs[0]
            rows[src] = f"{kind}_cache{j}"
    add_kv_cache(graph, rows, scores, capacity, position="pos")
    from sdk.quant.fuse import remove_dead_nodes

    remove_dead_nodes(graph)
    return graph


def split_lookups(graph: Any) -> tuple[Any, Any]:
    """``(lookup, main)``: the table lookups of ``graph`` (``Gather`` of a constant int table by
    an int64 graph input: token embeddings, RoPE rows by position, mask biases) as a graph of
    their own, and the rest of ``graph`` taking their outputs as inputs. The lookups run once
    per call as they did; the main graph then holds only ops the compiled executor
    (:mod:`sdk.ops.codegen`) generates code for. ``(None, graph)`` when there is none."""
    from sdk.graph import Graph

    moved = [n for n in graph.nodes if n.op == "Gather" and graph.tensor(n.inputs[0]).is_constant
             and n.inputs[1] in graph.inputs]
    if not moved:
        return None, graph
    look = Graph(f"{graph.name}_lookup")
    look.metadata = dict(graph.metadata)
    ids = list(dict.fromkeys(n.inputs[1] for n in moved))
    for i in ids:
        look.add_tensor(graph.tensor(i))
        look.inputs.append(i)
    for n in moved:
        for t in (n.inputs[0], n.outputs[0]):
            if t not in look.tensors:
                look.add_tensor(graph.tensor(t))
        look.nodes.append(n)
        look.outputs.append(n.outputs[0])
    look.validate()
    main = graph.copy()
    gone = {n.name for n in moved}
    main.nodes = [n for n in main.nodes if n.name not in gone]
    used = {i for n in main.nodes for i in n.inputs}
    main.inputs = [i for i in main.inputs if i not in ids or i in used] + \
        [n.outputs[0] for n in moved]
    for n in moved:
        if n.inputs[0] not in used and n.inputs[0] in main.tensors:
            del main.tensors[n.inputs[0]]
    main.validate()
    return look, main


def compile_generation_model(cfg: Any, weights: Mapping[str, np.ndarray],
                             samples: Sequence[tuple[Sequence[int], Sequence[int]]],
                             name: str = "slm", src_len: int | None = None,
                             capacity: int | None = None, meta: Mapping | None = None,
                             **compile_options: Any) -> Any:
    """Compile an :class:`sdk.models.slm.SLMConfig` model to a generation bundle.

    ``samples``: (input ids, output ids) pairs of real task data for calibration (the float
    model's own activations on them set every grid; the encoder's outputs feed the decoder's
    calibration). ``src_len`` / ``capacity`` override the config's encoder length and cache
    capacity (e.g. a benchmark at longer inputs). ``compile_options`` go to
    :func:`sdk.compile_model` for every entry (e.g. ``int16_layers``, ``observer``).
    """
    import dataclasses

    from sdk.compile import Bundle, compile_model
    from sdk.frontends import load_onnx
    from sdk.models.slm import decoder_onnx, encoder_onnx
    from sdk.ops.shapes import with_input_shapes
    from sdk.runtime.session import Session
    from sdk.text import BOS, EOS, SEP

    cfg = dataclasses.replace(cfg, max_src=src_len or cfg.max_src,
                              capacity=capacity or cfg.capacity)
    S, C = cfg.max_src, cfg.capacity
    if not samples:
        raise InputError("compile_generation_model needs calibration samples")
    entries = {}
    n = len(samples)
    pos = np.tile(np.arange(C, dtype=np.int64), (n, 1, 1))
    toks = np.zeros((n, 1, C), np.int64)
    if cfg.encdec:
        ids = np.zeros((n, 1, S), np.int64)
        mask = np.zeros((n, 1, S), np.int64)
        for i, (src, tgt) in enumerate(samples):
            src = list(src)[:S]
            ids[i, 0, :len(src)], mask[i, 0, :len(src)] = src, 1
            seq = ([BOS] + list(tgt) + [EOS]) * C
            toks[i, 0] = seq[:C]  # repeated: every position sees in-task tokens
        enc_model = encoder_onnx(cfg, weights)
        enc = compile_model(enc_model, {"input_ids": ids, "attention_mask": mask},
                            **compile_options)
        fenc = Session(load_onnx(enc_model))
        outs = [fenc.run({"input_ids": ids[i], "attention_mask": mask[i]}) for i in range(n)]
        calib = {"tokens": toks, "positions": pos, "enc_mask": mask}
        for k in outs[0]:
            calib[k] = np.stack([o[k] for o in outs])
        look, main = split_lookups(enc.graph)
        entries["encoder"] = main
        if look is not None:
            entries["encoder_lookup"] = look
    else:
        for i, (src, tgt) in enumerate(samples):
            seq = (list(src) + [SEP] + list(tgt) + [EOS]) * C
            toks[i, 0] = seq[:C]
        calib = {"tokens": toks, "positions": pos}
    dec = compile_model(decoder_onnx(cfg, weights, C, "full"), calib, **compile_options)
    full = dec.graph.copy()
    cached = cacheable_decoder(dec.graph, cfg.dec_layers, C)
    shaped = {"decoder_step": with_input_shapes(cached, {"tokens": [1, 1], "positions": [1, 1]})}
    if not cfg.encdec:
        shaped["prefill"] = with_input_shapes(cached, {"tokens": [1, -1], "positions": [1, -1]})
    for k, g in shaped.items():
        look, main = split_lookups(g)
        entries[k] = main
        if look is not None:
            entries[f"{k}_lookup"] = look
    entries["decoder_full"] = full
    slm = {"kind": "encdec" if cfg.encdec else "deconly", "config": cfg.to_json(),
           "tokenizer": "g2p-char-arpabet", **dict(meta or {})}
    for g in entries.values():
        g.metadata["slm"] = json.dumps(slm)
    return Bundle.from_graphs(entries, name=name)


# -- run -------------------------------------------------------------------------------------
@dataclass
class Generated:
    """One finished sequence: token ids (without the stop token), its log-probability score,
    and why it ended (``stop`` token, ``max_new_tokens`` or ``capacity``)."""

    tokens: list[int]
    score: float = 0.0
    finished: str = "stop"
    first_token_s: float | None = None
    steps: int = 0
    extra: dict = field(default_factory=dict)


class GenerationSession:
    """Generate with an integer generation bundle (see the module docstring).

    ``GenerationSession("samples/slm/encdec.edge").generate(ids)``; ``stream`` yields
    token ids one at a time. ``fast``: the Numba kernels (False: the NumPy reference).
    ``compiled`` is passed to :class:`sdk.Session` when given (its default otherwise: the
    step graph runs as one generated program once compiled, same bits).
    """

    def __init__(self, model: Any, fast: bool = True, compiled: bool | None = None) -> None:
        from sdk.compile import Bundle, load_bundle
        from sdk.runtime.session import Session

        bundle = model if isinstance(model, Bundle) else load_bundle(model)
        import inspect

        opts = {} if compiled is None or "compiled" not in inspect.signature(
            Session.__init__).parameters else {"compiled": compiled}
        names = bundle.entry_names
        if "decoder_step" not in names:
            raise InputError(f"{getattr(model, 'name', model)} is not a generation bundle (no "
                             "decoder_step entry); build one with sdk.compile_generation_model "
                             "or tools/slm_eval.py --compile")
        meta = bundle.entry("decoder_step").metadata.get("slm")
        info = json.loads(meta) if isinstance(meta, str) else dict(meta or {})
        self.meta = info
        self.kind = info.get("kind", "encdec" if "encoder" in names else "deconly")
        cfg = info.get("config", {})
        self.bundle = bundle
        self.step = Session(bundle, fast=fast, integer_io=True, entry="decoder_step", **opts)
        self.encoder = self.step.entry("encoder") if self.kind == "encdec" else None
        self.prefill = self.step.entry("prefill") if self.kind == "deconly" else None
        self._lookup = {k: Session(bundle, fast=fast, integer_io=True, entry=f"{k}_lookup",
                                   **opts)
                        for k in ("encoder", "prefill", "decoder_step")
                        if f"{k}_lookup" in names}
        decl = self.step.state_decls
        self.capacity = int(decl[0].capacity) if decl else int(cfg.get("capacity", 0))
        self.max_src = int(cfg.get("max_src", 0)) if self.kind == "encdec" else self.capacity
        self.vocab = int(cfg.get("vocab", 0))
        from sdk.text import BOS, EOS, SEP

        self.bos, self.eos, self.sep = BOS, EOS, SEP
        out = {o.name: o for o in self.step.outputs}["logits"]
        self._logit_scale = float(np.asarray(out.quant.scale)) if out.quant is not None else 1.0
        self._logit_zp = int(np.asarray(out.quant.zero_point)) if out.quant is not None else 0
        self._step_in = {i.name: i for i in self.step.inputs}
        self._compiled_step: _CompiledStep | None = None
        self._session_options = dict(fast=fast, integer_io=True, **opts)
        #: decoder-only prompts run on the prefill entry at fixed lengths (static shapes:
        #: a generated program each, see :meth:`_prefill_at`); not with ``compiled=False``
        self._prefill_fixed = (self.prefill is not None and fast and compiled is not False
                               and "prefill" in names)
        self._prefill_by_len: dict[int, tuple[Any, Any]] = {}

    # -- pieces ------------------------------------------------------------------------
    def _quantize_like(self, name: str, value: np.ndarray) -> np.ndarray:
        info = self._step_in[name]
        if np.asarray(value).dtype == np.dtype(info.dtype):
            return value
        from sdk.kernels.quantize import quantize_linear

        return quantize_linear(value, info.quant.scale, info.quant.zero_point, info.dtype)

    def encoder_inputs(self, ids: Sequence[int], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask`` [1, max_src] for a source of token ids (zero
        padded); one-line InputError for an empty source or one over the compiled length."""
        ids = list(ids)
        if not ids:
            raise InputError("empty input: give at least one token")
        if len(ids) > self.max_src:
            raise InputError(f"input has {len(ids)} tokens; this model's encoder was compiled "
                             f"for at most {self.max_src} (recompile with a larger src_len)")
        x = np.zeros((1, self.max_src), dtype)
        m = np.zeros((1, self.max_src), dtype)
        x[0, :len(ids)], m[0, :len(ids)] = ids, 1
        return x, m

    def encode(self, ids: Sequence[int]) -> dict[str, np.ndarray]:
        """Encoder-decoder: run the encoder once; the decoder feeds it gives (cross K/V on
        the decoder's input grids, the encoder mask)."""
        if self.encoder is None:
            raise InputError("a decoder-only model has no encoder; call generate() directly")
        x, m = self.encoder_inputs(ids, np.int64)
        out = self._run("encoder", self.encoder, {"input_ids": x, "attention_mask": m})
        feeds = {"enc_mask": m}
        enc_out = {o.name: o for o in self.encoder.outputs}
        for k, v in out.items():
            q, step_in = enc_out[k].quant, self._step_in[k]
            if q is not None and step_in.quant is not None and v.dtype == np.dtype(
                    step_in.dtype) and np.array_equal(q.scale, step_in.quant.scale) and \
                    np.array_equal(q.zero_point, step_in.quant.zero_point):
                feeds[k] = v  # the decoder's input grid is the encoder's output grid
                continue
            from sdk.kernels.quantize import dequantize_linear

            f = dequantize_linear(v, q.scale, q.zero_point) if q is not None else v
            feeds[k] = self._quantize_like(k, f)  # onto the decoder's input grid
        return feeds

    def _decode(self, feeds: Mapping[str, np.ndarray], tokens: Sequence[int], state: Any
                ) -> np.ndarray:
        """Write ``tokens`` at the state's position; integer logits of the last one [V]."""
        t = len(tokens)
        p = state.position
        if p + t > self.capacity:
            raise InputError(f"the KV cache holds {self.capacity} tokens; writing {t} more at "
                             f"position {p} would pass it (recompile with a larger capacity)")
        if t == 1:
            fast = self._compiled_step
            if fast is not None and (fast.feeds_are(feeds) or fast.rebind(feeds)):
                logits = fast(int(tokens[0]), state)
                if logits is not None:
                    return logits
        if t > 1 and self._prefill_fixed:
            n = self._prefill_length(t, p)
            if n is not None:
                return self._prefill_padded(feeds, tokens, state, n)
        f = dict(feeds)
        f["tokens"] = np.asarray(tokens, np.int64).reshape(1, t)
        f["positions"] = np.arange(p, p + t, dtype=np.int64).reshape(1, t)
        sess = self.step if t == 1 else self.prefill
        if sess is None:
            raise InputError("the encoder-decoder step takes one token per call")
        name = "decoder_step" if t == 1 else "prefill"
        logits = self._run(name, sess, f, state, ["logits"])["logits"][0, -1]
        if t == 1:  # the step's programs are compiled now (or never will be): bind them
            self._compiled_step = _CompiledStep.bind(self, feeds, f, state)
        return logits

    #: the prompt lengths of the decoder-only prefill's fixed-shape programs (and the cache
    #: capacity itself); a prompt runs at the shortest one that holds it
    PREFILL_LENGTHS = (8, 16, 32, 64, 128, 256, 512)

    def _prefill_length(self, t: int, p: int) -> int | None:
        """The fixed prefill length for ``t`` tokens written at position ``p`` (None: none
        fits below the capacity; the prompt-shaped entry runs it)."""
        room = self.capacity - p
        for n in [m for m in self.PREFILL_LENGTHS if m < self.capacity] + [self.capacity]:
            if t <= n <= room:
                return n
        return None

    def _prefill_at(self, n: int) -> tuple[Any, Any]:
        """(lookup session or None, prefill session) of the prefill entry with its token axis
        fixed at ``n``: a static graph, so (with ``fast``) one generated program."""
        got = self._prefill_by_len.get(n)
        if got is None:
            from sdk.ops.shapes import with_input_shapes
            from sdk.runtime.session import Session

            rows = {"tokens": [1, n], "positions": [1, n]}
            main = self.bundle.entry("prefill")
            look = None
            if "prefill_lookup" in self.bundle.entry_names:
                lg = with_input_shapes(self.bundle.entry("prefill_lookup"), rows)
                rows = {o: list(lg.tensor(o).shape) for o in lg.outputs}
                look = Session(lg, **self._session_options)
            shapes = {k: v for k, v in rows.items() if k in main.inputs}
            got = (look, Session(with_input_shapes(main, shapes), **self._session_options))
            self._prefill_by_len[n] = got
        return got

    def _prefill_padded(self, feeds: Mapping[str, np.ndarray], tokens: Sequence[int],
                        state: Any, n: int) -> np.ndarray:
        """Prefill ``tokens`` zero-padded to ``n``: the same bits as the prompt-shaped entry
        for the real rows, because the decoder's CausalMask gives a later row exactly zero
        weight (unlike the encoder's additive padding mask, whose masked keys keep a small
        weight: its bits depend on the padded length, so the encoder has no such lengths). The
        padding's cache rows lie past the state's position, masked until the next steps
        write over them; the position moves by the real tokens only."""
        t, p = len(tokens), state.position
        look, sess = self._prefill_at(n)
        f = dict(feeds)
        ids = np.zeros((1, n), np.int64)
        ids[0, :t] = tokens
        f["tokens"] = ids
        f["positions"] = np.arange(p, p + n, dtype=np.int64).reshape(1, n)
        if look is not None:
            mine = set(look.input_names)
            rows = look.run({k: v for k, v in f.items() if k in mine})
            f = {k: v for k, v in f.items() if k not in mine or k in sess.input_names}
            f.update(rows)
        logits = sess.run(["logits"], f, state=state)["logits"][0, t - 1]
        for name in sess._positions:
            state.positions[name] = p + t
        return logits

    def _run(self, name: str, sess: Any, feeds: Mapping[str, np.ndarray], state: Any = None,
             outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run entry ``name``: its table lookups first (when split off), then the entry."""
        look = self._lookup.get(name)
        if look is not None:
            mine = set(look.input_names)
            rows = look.run({k: v for k, v in feeds.items() if k in mine})
            feeds = {k: v for k, v in feeds.items() if k not in mine or k in sess.input_names}
            feeds.update(rows)
        return sess.run(outputs, feeds, state=state) if state is not None else \
            sess.run(outputs, feeds)

    def start(self, ids: Sequence[int]) -> tuple[dict, Any, np.ndarray]:
        """Encode / prefill ``ids``: (decoder feeds, state, integer logits of the first
        generated token)."""
        state = self.step.new_state()
        if self.kind == "encdec":
            feeds = self.encode(ids)
            return feeds, state, self._decode(feeds, [self.bos], state)
        ids = list(ids)
        if not ids:
            raise InputError("empty input: give at least one token")
        prompt = ids + [self.sep]
        if len(prompt) >= self.capacity:
            raise InputError(f"input has {len(ids)} tokens; with <sep> and one output token "
                             f"it needs {len(prompt) + 1} of the {self.capacity} KV cache rows "
                             "(recompile with a larger capacity)")
        return {}, state, self._decode({}, prompt, state)

    def _budget(self, state: Any, config: GenerationConfig) -> int:
        room = self.capacity - state.position + 1  # the last token need not be written
        if config.max_new_tokens is None:
            return room
        if config.max_new_tokens > room:
            raise InputError(f"max_new_tokens={config.max_new_tokens} does not fit: the KV cache "
                             f"of {self.capacity} tokens has room for {room} more after this "
                             "input (lower max_new_tokens or recompile with a larger capacity)")
        return config.max_new_tokens

    def _stops(self, config: GenerationConfig) -> set[int]:
        return set(config.stop_tokens) if config.stop_tokens is not None else {self.eos}

    def _probs(self, logits: np.ndarray, config: GenerationConfig) -> np.ndarray:
        z = (logits.astype(np.float64) - self._logit_zp) * self._logit_scale / config.temperature
        z -= z.max()
        p = np.exp(z)
        return p / p.sum()

    def _pick(self, logits: np.ndarray, config: GenerationConfig,
              rng: np.random.Generator) -> int:
        if config.strategy != "sample":
            return int(np.argmax(logits))
        p = self._probs(logits, config)
        if config.top_k:  # exactly k tokens; ties broken towards the lower id, as argmax does
            keep = np.argsort(-p, kind="stable")[:config.top_k]
            p = np.where(np.isin(np.arange(p.size), keep), p, 0.0)
        if config.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            cum = np.cumsum(p[order])
            keep = order[: int(np.searchsorted(cum, config.top_p * cum[-1])) + 1]
            mask = np.zeros_like(p, bool)
            mask[keep] = True
            p = np.where(mask, p, 0.0)
        p = p / p.sum()
        return int(rng.choice(p.size, p=p))

    # -- public ------------------------------------------------------------------------
    def stream(self, ids: Sequence[int], config: GenerationConfig | None = None
               ) -> Iterator[int]:
        """Yield generated token ids one at a time (greedy or sampling; the stop token is
        not yielded)."""
        return self._iterate(ids, config or GenerationConfig(), {})

    def _iterate(self, ids: Sequence[int], config: GenerationConfig, info: dict
                 ) -> Iterator[int]:
        config.check()
        if config.strategy == "beam":
            raise InputError("beam search has no token stream (the best beam is known at the "
                             "end); use generate() or strategy='greedy' / 'sample'")
        feeds, state, logits = self.start(ids)
        budget = self._budget(state, config)
        stops = self._stops(config)
        rng = np.random.default_rng(config.seed)
        info["finished"] = "capacity" if config.max_new_tokens is None else "max_new_tokens"
        for i in range(budget):
            tok = self._pick(logits, config, rng)
            if tok in stops:
                info["finished"] = "stop"
                return
            yield tok
            if i + 1 < budget:
                logits = self._decode(feeds, [tok], state)

    def generate(self, ids: Sequence[int], config: GenerationConfig | None = None) -> Generated:
        """The generated sequence for ``ids`` (see :class:`GenerationConfig`)."""
        import time

        config = config or GenerationConfig()
        config.check()
        if config.strategy == "beam" and config.num_beams > 1:
            return self._beam(ids, config)
        if config.strategy == "beam":
            config = GenerationConfig(**{**config.__dict__, "strategy": "greedy"})
        t0 = time.perf_counter()
        out, first, info = [], None, {}
        for tok in self._iterate(ids, config, info):
            if first is None:
                first = time.perf_counter() - t0
            out.append(tok)
        return Generated(out, 0.0, info.get("finished", "stop"), first, len(out))

    def _beam(self, ids: Sequence[int], config: GenerationConfig) -> Generated:
        feeds, state, logits = self.start(ids)
        budget = self._budget(state, config)
        stops = self._stops(config)
        k = config.num_beams

        def logp(lg: np.ndarray) -> np.ndarray:
            z = (lg.astype(np.float64) - self._logit_zp) * self._logit_scale
            z -= z.max()
            return z - math.log(np.exp(z).sum())

        beams = [([], 0.0, state, logits)]
        done: list[tuple[list[int], float]] = []
        for step in range(budget):
            cand = []
            for toks, score, st, lg in beams:
                lp = logp(lg)
                for t in np.argsort(-lp, kind="stable")[:k]:
                    cand.append((score + float(lp[t]), toks, int(t), st))
            cand.sort(key=lambda c: -c[0])
            beams = []
            for rank, (score, toks, t, st) in enumerate(cand):
                if t in stops:  # a hypothesis ends only when its end is among the k best
                    if rank < k:
                        done.append((toks, score / (len(toks) + 1) ** config.length_penalty))
                    continue
                if len(beams) < k:
                    beams.append((toks + [t], score, st, None))
            if not beams or len(done) >= k:
                break
            if step + 1 < budget:
                nxt = []
                for toks, score, st, _ in beams:
                    st2 = st.copy()
                    nxt.append((toks, score, st2, self._decode(feeds, [toks[-1]], st2)))
                beams = nxt
        finished = "stop"
        if not done:
            done = [(b[0], b[1] / max(1, len(b[0])) ** config.length_penalty) for b in beams]
            finished = "max_new_tokens"
        best = max(done, key=lambda d: d[1])
        return Generated(list(best[0]), best[1], finished, None, len(best[0]))

    def full_logits(self, ids: Sequence[int], prefix: Sequence[int]) -> np.ndarray:
        """Integer logits [len(prefix), V] of the decoder **without** a cache: the compiled
        full-sequence graph (``decoder_full``, causal mask constant) over the whole prefix
        padded to the capacity. What cached generation must equal bit for bit."""
        from sdk.runtime.session import Session

        full = Session(self.bundle, fast=self.step.fast, integer_io=True, entry="decoder_full")
        if self.kind == "encdec":
            feeds = self.encode(ids)
            seq = [self.bos] + list(prefix)
        else:
            feeds, seq = {}, list(ids) + [self.sep] + list(prefix)
        if len(seq) > self.capacity:
            raise InputError(f"prefix of {len(seq)} tokens passes the capacity {self.capacity}")
        toks = np.zeros((1, self.capacity), np.int64)
        toks[0, :len(seq)] = seq
        feeds = dict(feeds, tokens=toks,
                     positions=np.arange(self.capacity, dtype=np.int64)[None])
        lg = full.run(["logits"], feeds)["logits"][0]
        start = 0 if self.kind == "encdec" else len(ids)
        return lg[start:len(seq)]


class _CompiledStep:
    """The one-token decoder step as direct calls of its two compiled programs (the table
    lookups, then the step graph), for :meth:`GenerationSession._decode`'s hot loop.

    ``Session.run`` checks every feed, builds name maps and dicts, and the lookup entry is a
    Session of its own: ~90 µs of Python per token around ~50 µs of compiled step on the G2P
    model. Bound after a step ran through ``Session.run`` with the same per-input feeds (the
    cross K/V, the encoder mask: checked there, held here by identity), it calls the very same
    programs with the same arrays: the bits are the programs', and the state advances as
    :meth:`Session.run` advances it. Any refusal inside a program (a token id outside the
    table, ...) returns None, and the caller re-runs the step through ``Session.run``, which
    reports it as always (the programs write fresh result arrays, so a refused call changed
    nothing)."""

    def __init__(self) -> None:
        self.look: Any = None           # the lookup program (None: the step has no lookups)
        self.step: Any = None           # the step program
        self.fixed: dict[str, np.ndarray] = {}  # per-input feeds, held by identity
        self.slots: dict[str, list[tuple[bool, int]]] = {}  # feed -> (in lookup?, argument)
        self.tokens = np.zeros((1, 1), np.int64)     # fed to the lookups, set in place
        self.positions = np.zeros((1, 1), np.int64)
        self.lookup_args: list = []     # the lookup program's arguments (all fixed arrays)
        self.template: list = []        # the step's arguments; per call: the slots below
        self.from_lookup: list[tuple[int, int]] = []  # (argument, lookup result)
        self.from_state: list[tuple[int, str, Any, Any]] = []  # (argument, state, dtype, shape)
        self.pos_at = -1                # the argument taking the cache position (an int)
        self.position = ""              # its name in SessionState.positions
        self.reads: list[tuple[str, int]] = []  # (state, step result) written back
        self.logits_at = -1

    @classmethod
    def bind(cls, gs: GenerationSession, feeds: Mapping[str, np.ndarray], sent: Mapping,
             state: Any) -> _CompiledStep | None:
        """The fast step for these per-input ``feeds`` (``sent``: the feeds Session.run was
        just given: ``feeds`` plus ``tokens``/``positions``), or None when either program is
        not compiled and loaded (the interpreter runs the step) or the step is not of the
        form this binds."""
        from sdk.ops.codegen import CompiledExecutor

        sess = gs.step
        exe = sess._exe
        if not isinstance(exe, CompiledExecutor) or len(sess._positions) != 1:
            return None
        position = next(iter(sess._positions))
        if "logits" in sess._dequantize_out or sess._quantize_in or \
                sess._rows.get(position) != 1:
            return None
        self = cls()
        self.position = position

        def exact(arr: Any, dt: Any, shape: Any) -> bool:
            return (arr.__class__ is np.ndarray and dt is not None and arr.dtype == dt
                    and arr.shape == shape and arr.flags.c_contiguous)

        look_sess = gs._lookup.get("decoder_step")
        lfed: list[str] = []
        louts: list[str] = []
        if look_sess is not None:
            lexe = look_sess._exe
            if not isinstance(lexe, CompiledExecutor) or look_sess._quantize_in or \
                    look_sess._feed_as or look_sess._read_as or look_sess._dequantize_out:
                return None
            mine = set(look_sess.input_names)
            lfed = [k for k in sent if k in mine]
            louts = list(look_sess.output_names)
            self.look = lexe.loaded(louts, lfed)
            if self.look is None:
                return None
            for name, dt, shape in self.look._params:
                arr = {"tokens": self.tokens, "positions": self.positions}.get(name)
                if arr is None:
                    arr = feeds.get(name)
                    self.fixed[name] = arr
                    self.slots.setdefault(name, []).append((True, len(self.lookup_args)))
                if not exact(arr, dt, shape):
                    return None
                self.lookup_args.append(arr)
        step_in = set(sess.input_names)
        fed_user = [k for k in sent if k not in set(lfed) or k in step_in] + \
            [o for o in louts if o not in sent]
        fed = [sess._feed_as.get(k, k) for k in fed_user]
        fed += list(sess._state_feed.values()) + list(sess._positions)
        reads = list(dict.fromkeys([sess._read_as.get("logits", "logits")]
                                   + sess._state_reads()))
        self.step = exe.loaded(reads, fed)
        if self.step is None:
            return None
        to_user = {sess._feed_as.get(k, k): k for k in fed_user}
        state_of = {v: k for k, v in sess._state_feed.items()}
        for i, (name, dt, shape) in enumerate(self.step._params):
            self.template.append(None)
            if name == position:
                if dt is not None:
                    return None
                self.pos_at = i
            elif name in state_of:
                self.from_state.append((i, state_of[name], dt, shape))
            elif name in louts:
                at = self.look.produced_index(name)
                out = self.look.graph.tensor(name)
                if at < 0 or dt is None or np.dtype(out.dtype) != dt or \
                        tuple(out.shape or ()) != shape:
                    return None
                self.from_lookup.append((i, at))
            elif to_user.get(name) in feeds:
                arr = feeds[to_user[name]]
                if not exact(arr, dt, shape):
                    return None
                self.fixed[to_user[name]] = arr
                self.slots.setdefault(to_user[name], []).append((False, i))
                self.template[i] = arr
            else:
                return None
        if self.pos_at < 0 or len(self.fixed) != len(feeds):
            return None
        self.reads = [(k, self.step.produced_index(sess._state_read[k]))
                      for k in sess._state_read]
        self.logits_at = self.step.produced_index(reads[0])
        if self.logits_at < 0 or any(i < 0 for _, i in self.reads):
            return None
        return self

    def feeds_are(self, feeds: Mapping[str, np.ndarray]) -> bool:
        """Whether ``feeds`` holds the very arrays this step was bound to."""
        fixed = self.fixed
        if len(feeds) != len(fixed):
            return False
        for k, v in fixed.items():
            if feeds.get(k) is not v:
                return False
        return True

    def rebind(self, feeds: Mapping[str, np.ndarray]) -> bool:
        """Point the bound programs at another input's per-input feeds (a new word's cross
        K/V and mask, made by :meth:`GenerationSession.encode` as the bound ones were) of the
        same names, dtypes and shapes as the bound ones, which ``Session.run`` checked; False
        (nothing changed) where any differs."""
        fixed = self.fixed
        if len(feeds) != len(fixed):
            return False
        for k, old in fixed.items():
            arr = feeds.get(k)
            if arr.__class__ is not np.ndarray or arr.dtype != old.dtype or \
                    arr.shape != old.shape or not arr.flags.c_contiguous:
                return False
        self.fixed = {k: feeds[k] for k in fixed}
        for k, arr in self.fixed.items():
            for in_lookup, i in self.slots.get(k, ()):
                (self.lookup_args if in_lookup else self.template)[i] = arr
        return True

    def __call__(self, token: int, state: Any) -> np.ndarray | None:
        """Integer logits [V] of ``token`` at the state's position, the state advanced; None
        where the caller must take ``Session.run`` instead (nothing changed then)."""
        values = state.values
        args = self.template[:]
        for i, name, dt, shape in self.from_state:
            v = values.get(name)
            if v.__class__ is not np.ndarray or v.dtype != dt or v.shape != shape or \
                    not v.flags.c_contiguous:
                return None
            args[i] = v
        pos = state.positions[self.position]
        args[self.pos_at] = pos
        self.tokens[0, 0] = token
        self.positions[0, 0] = pos
        try:
            if self.look is not None:
                rows = self.look.call(*self.lookup_args)
                for i, j in self.from_lookup:
                    args[i] = rows[j]
            res = self.step.call(*args)
        except Exception:  # noqa: BLE001 - a refusal: Session.run re-runs it and reports
            return None
        for name, i in self.reads:
            values[name] = res[i]
        state.positions[self.position] = pos + 1
        return res[self.logits_at][0, -1]


def text_runner(session: GenerationSession) -> Callable[[str], list[str]]:
    """word → phonemes with greedy decoding (the G2P use)."""
    from sdk.text import G2PTokenizer

    tok = G2PTokenizer()

    def run(word: str) -> list[str]:
        return tok.decode(session.generate(tok.encode_word(word)).tokens)

    return run


def load_generation(path: str | Path, fast: bool = True) -> GenerationSession:
    return GenerationSession(path, fast=fast)


__all__ = [
    "Generated",
    "GenerationConfig",
    "GenerationSession",
    "cacheable_decoder",
    "compile_generation_model",
    "split_lookups",
    "text_runner",
]
