"""G2P accuracy of the two small language models, float vs integer, beside the g2p-en anchor.

On the held-out CMUdict words (``samples/slm/g2p_heldout.txt``, never trained on):

* ``float``: the float ONNX graphs in ONNX Runtime with past-KV step graphs (greedy);
* ``int``: the integer generation bundle (``sdk.GenerationSession``, KV caches, greedy);
* ``g2p-en``: PyPI ``g2p-en``'s trained GRU encoder-decoder (``g2p_en/checkpoint20.npz``,
  loaded with NumPy; its forward pass re-implemented here, stress removed from its output).
  g2p-en was trained on CMUdict itself, so these words were very likely in *its* training
  set: its numbers on them are an upper bound on its held-out accuracy.

PER: phoneme edit distance to the closest CMUdict pronunciation / its length (corpus level);
WER: share of words matching no listed pronunciation. Latency: median wall time per word
(one thread everywhere; ``NUMBA_NUM_THREADS=1``, ORT ``intra_op_num_threads=1``); the integer
models run on the node interpreter unless ``--compiled``.

    .venv/bin/python tools/slm_eval.py --compile        # (re)build samples/slm/*.edge + ONNX
    .venv/bin/python tools/slm_eval.py [--limit N] [--json out.json]
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # run as a script: one thread (imported by a test or a
    # process whose Numba threads already run, changing it would break its next compile)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slm_data

import sdk
from sdk.models.slm import decoder_onnx, encoder_onnx, load_weights
from sdk.text import BOS, EOS, SEP

ROOT = Path(__file__).resolve().parents[1]
SLM = ROOT / "samples" / "slm"
KINDS = ("encdec", "deconly")
CALIB_WORDS = 64
#: options of sdk.compile_model for the committed bundles (int8 activations and KV caches;
#: on 200 held-out words int16 activations moved PER by -0.07 and WER by -1.0 point only)
COMPILE_OPTIONS: dict = {}


def edit_distance(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def score(preds: dict[str, list[str]], lex: dict[str, list[list[str]]]) -> dict:
    errs = n = wrong = 0
    for w, p in preds.items():
        refs = lex[w]
        d, ref = min((edit_distance(p, r), r) for r in refs)
        errs += d
        n += len(ref)
        wrong += not any(p == r for r in refs)
    return {"per": 100.0 * errs / max(1, n), "wer": 100.0 * wrong / max(1, len(preds)),
            "words": len(preds)}


# -- float: ONNX Runtime with past-KV graphs -------------------------------------------------
class OrtGenerator:
    """Greedy decoding of the float model in ONNX Runtime, the way an ORT user runs a
    decoder: a past-KV step graph (``past_k{j}`` in, ``present_k{j}`` out), the encoder once
    (encoder-decoder) or a prefill graph per prompt length (decoder-only)."""

    def __init__(self, cfg, w, threads: int = 1, src_len: int | None = None) -> None:
        import onnxruntime as ort

        self.ort, self.cfg, self.w = ort, cfg, w
        self.so = ort.SessionOptions()
        self.so.intra_op_num_threads = threads
        self.so.inter_op_num_threads = 1
        self.S = src_len or cfg.max_src
        self.step = self._session(decoder_onnx(cfg, w, 1, "past", src_len=self.S))
        self.enc = self._session(encoder_onnx(cfg, w, self.S)) if cfg.encdec else None
        self._prefill: dict[int, object] = {}

    def _session(self, model):
        return self.ort.InferenceSession(model.SerializeToString(), self.so,
                                         providers=["CPUExecutionProvider"])

    def prefill(self, n: int):
        if n not in self._prefill:
            self._prefill[n] = self._session(decoder_onnx(self.cfg, self.w, n, "full",
                                                          present=True))
        return self._prefill[n]

    def start(self, ids):
        c = self.cfg
        if c.encdec:
            x = np.zeros((1, self.S), np.int64)
            m = np.zeros((1, self.S), np.int64)
            x[0, :len(ids)], m[0, :len(ids)] = ids, 1
            names = [o.name for o in self.enc.get_outputs()]
            cross = dict(zip(names, self.enc.run(None, {"input_ids": x, "attention_mask": m})))
            feeds = dict(cross, enc_mask=m)
            past = {f"past_{n}{j}": np.zeros((1, c.kv_heads, 0, c.dh), np.float32)
                    for j in range(c.dec_layers) for n in "kv"}
            lg, past = self._step(feeds, past, BOS, 0)
            return feeds, past, lg, 1
        prompt = list(ids) + [SEP]
        sess = self.prefill(len(prompt))
        names = [o.name for o in sess.get_outputs()]
        out = dict(zip(names, sess.run(None, {
            "tokens": np.asarray(prompt, np.int64)[None],
            "positions": np.arange(len(prompt), dtype=np.int64)[None]})))
        past = {k.replace("present", "past"): v for k, v in out.items() if k != "logits"}
        return {}, past, out["logits"][0, -1], len(prompt)

    def _step(self, feeds, past, tok, pos):
        f = dict(feeds, **past)
        f["tokens"] = np.array([[tok]], np.int64)
        f["positions"] = np.array([[pos]], np.int64)
        names = [o.name for o in self.step.get_outputs()]
        out = dict(zip(names, self.step.run(None, f)))
        past = {k.replace("present", "past"): v for k, v in out.items() if k != "logits"}
        return out["logits"][0, -1], past

    def generate(self, ids, max_new: int | None = None) -> list[int]:
        feeds, past, lg, pos = self.start(ids)
        out = []
        budget = max_new or self.cfg.capacity - pos + 1
        for i in range(budget):
            t = int(np.argmax(lg))
            if t == EOS:
                break
            out.append(t)
            if i + 1 < budget:
                lg, past = self._step(feeds, past, t, pos)
                pos += 1
        return out


# -- the anchor: g2p-en's GRU, in NumPy -------------------------------------------------------
class G2pEn:
    """g2p-en 2.1.0's ``checkpoint20.npz`` GRU encoder-decoder (greedy, ≤ 20 phonemes)."""

    GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")

    def __init__(self) -> None:
        import importlib.util

        spec = importlib.util.find_spec("g2p_en")  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("g2p-en is not installed: .venv/bin/pip install --no-deps "
                             "-r tools/requirements-weights.txt")
        path = Path(next(iter(spec.submodule_search_locations))) / "checkpoint20.npz"
        with np.load(path) as z:
            self.v = {k: z[k].astype(np.float32) for k in z.files}
        src = (path.parent / "g2p.py").read_text()
        start = src.index("self.phonemes = ")
        body = src[src.index("+", start) + 1: src.index("]", src.index("['AA0'", start)) + 1]
        self.phonemes = ["<pad>", "<unk>", "<s>", "</s>"] + ast.literal_eval(body)
        self.params = int(sum(a.size for a in self.v.values()))

    @staticmethod
    def _cell(x, h, wi, wh, bi, bh):
        a, b = x @ wi.T + bi, h @ wh.T + bh
        k = a.shape[-1] // 3
        r = 1 / (1 + np.exp(-(a[:, :k] + b[:, :k])))
        z = 1 / (1 + np.exp(-(a[:, k:2 * k] + b[:, k:2 * k])))
        n = np.tanh(a[:, 2 * k:] + r * b[:, 2 * k:])
        return (1 - z) * n + z * h

    def __call__(self, word: str) -> list[str]:
        v = self.v
        ids = [self.GRAPHEMES.index(c) if c in self.GRAPHEMES else 1 for c in word] + [2]
        h = np.zeros((1, v["enc_w_hh"].shape[1]), np.float32)
        for i in ids:
            h = self._cell(v["enc_emb"][[i]], h, v["enc_w_ih"], v["enc_w_hh"], v["enc_b_ih"],
                           v["enc_b_hh"])
        x, out = v["dec_emb"][[2]], []
        for _ in range(20):
            h = self._cell(x, h, v["dec_w_ih"], v["dec_w_hh"], v["dec_b_ih"], v["dec_b_hh"])
            t = int(np.argmax(h @ v["fc_w"].T + v["fc_b"]))
            if t == 3:
                break
            out.append(self.phonemes[t].rstrip("012"))
            x = v["dec_emb"][[t]]
        return out


# -- compile ---------------------------------------------------------------------------------
def compile_kind(kind: str, lex, train, out: Path = SLM) -> Path:
    import onnx

    cfg, w = load_weights(out / f"{kind}.npz")
    tok = sdk.G2PTokenizer()
    step = max(1, len(train) // CALIB_WORDS)
    words = train[::step][:CALIB_WORDS]
    samples = [(tok.encode_word(x), tok.encode_phonemes(lex[x][0])) for x in words]
    meta = json.loads((out / f"{kind}.json").read_text())
    bundle = sdk.compile_generation_model(cfg, w, samples, name=f"g2p_{kind}",
                                          meta={"params": meta["params"]}, **COMPILE_OPTIONS)
    path = bundle.save(out / f"{kind}.edge")
    if cfg.encdec:
        onnx.save(encoder_onnx(cfg, w), out / f"{kind}_encoder.onnx")
    onnx.save(decoder_onnx(cfg, w, 1, "past"), out / f"{kind}_decoder_step.onnx")
    print(f"{kind}: {path} ({path.stat().st_size} bytes), ONNX written")
    return path


def timed(fn, words):
    preds, times = {}, []
    for w in words:
        t0 = time.perf_counter()
        preds[w] = fn(w)
        times.append(time.perf_counter() - t0)
    return preds, 1000.0 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", action="store_true", help="rebuild samples/slm/*.edge + ONNX")
    ap.add_argument("--limit", type=int, default=0, help="first N held-out words (0: all)")
    ap.add_argument("--models", default="encdec,deconly,g2p-en")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--beams", type=int, default=0,
                    help="also score the integer models with beam search of this width")
    ap.add_argument("--compiled", action="store_true",
                    help="run the step graph as one generated Numba program (compiled on first "
                    "use, minutes; cached on disk) instead of the interpreter")
    ap.add_argument("--dir", type=Path, default=SLM, help="where the .npz/.json/.edge live")
    args = ap.parse_args()
    lex = slm_data.load_lexicon()
    train, _, _ = slm_data.split(lex)
    models = args.models.split(",")
    if args.compile:
        for k in KINDS:
            if k in models:
                compile_kind(k, lex, train, args.dir)
    words = slm_data.heldout_words()
    if args.limit:
        words = words[:: max(1, len(words) // args.limit)][: args.limit]
    tok = sdk.G2PTokenizer()
    rows = []
    for kind in KINDS:
        if kind not in models:
            continue
        cfg, w = load_weights(args.dir / f"{kind}.npz")
        params = cfg.params(w)
        f = OrtGenerator(cfg, w)
        fp, f_ms = timed(lambda x, f=f: tok.decode(f.generate(tok.encode_word(x))), words)
        gs = sdk.GenerationSession(args.dir / f"{kind}.edge", compiled=args.compiled)
        gs.generate(tok.encode_word("warm"))  # JIT compile before timing
        ip, i_ms = timed(lambda x, g=gs: tok.decode(g.generate(tok.encode_word(x)).tokens), words)
        sf, si = score(fp, lex), score(ip, lex)
        agree = float(np.mean([fp[x] == ip[x] for x in words]))
        meta = json.loads((args.dir / f"{kind}.json").read_text())
        for name, s, ms in ((f"{kind} float (ORT)", sf, f_ms), (f"{kind} int8 (edge)", si, i_ms)):
            rows.append({"model": name, "params": params, **s, "ms_per_word": ms,
                         "train_steps": meta["steps"], "train_s": meta["train_seconds"]})
        rows[-1]["agree_with_float"] = agree
        rows[-1]["delta_per"] = si["per"] - sf["per"]
        rows[-1]["delta_wer"] = si["wer"] - sf["wer"]
        if args.beams > 1:
            bc = sdk.GenerationConfig(strategy="beam", num_beams=args.beams)
            bp, b_ms = timed(lambda x, g=gs, c=bc: tok.decode(
                g.generate(tok.encode_word(x), c).tokens), words)
            rows.append({"model": f"{kind} int8 beam {args.beams}", "params": params,
                         **score(bp, lex), "ms_per_word": b_ms})
    if "g2p-en" in models:
        g = G2pEn()
        gp, g_ms = timed(g, words)
        rows.append({"model": "g2p-en GRU (NumPy float)", "params": g.params, **score(gp, lex),
                     "ms_per_word": g_ms})
    print(f"held-out CMUdict words: {len(words)} (machine shared with other jobs)")
    print(f"{'model':28s} {'params':>8s} {'PER %':>7s} {'WER %':>7s} {'ms/word':>8s}")
    for r in rows:
        print(f"{r['model']:28s} {r['params']:8d} {r['per']:7.2f} {r['wer']:7.2f} "
              f"{r['ms_per_word']:8.2f}" + (f"   int-float: PER {r['delta_per']:+.2f}, WER "
                                           f"{r['delta_wer']:+.2f}, same output "
                                           f"{100 * r['agree_with_float']:.1f}%"
                                           if "delta_per" in r else ""))
    if args.json:
        args.json.write_text(json.dumps({"words": len(words), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
