"""Train the two G2P small language models of ``samples/slm`` (needs the ``train`` extra).

Same data, same parameter budget, same tokenizer (``sdk.G2PTokenizer``: characters in,
ARPAbet phonemes out, one shared vocabulary of 73):

* ``encdec``: encoder-decoder after "Return of the Encoder" (microsoft/encoder-decoder-slm):
  4 encoder and 2 decoder layers (2:1), width 128, pre-RMSNorm, RoPE (rotate-half) in
  self-attention, grouped-query attention (4 query heads, 2 key/value heads), ReLU MLP 256,
  no biases, one embedding table tied between encoder input, decoder input and output
  projection (797,824 parameters).
* ``deconly``: decoder-only with the same blocks, 7 layers (MLP 248: 799,744 parameters), the
  word then ``<sep>`` then the phonemes in one causal sequence (loss on the phonemes and
  ``</s>`` only).

Both train on one CPU thread (``torch.set_num_threads(1)``), seeded, for the same training
time: the step counts (``STEPS``) give each model about the same CPU seconds (a decoder-only
step costs ~1.7 encoder-decoder steps: its sequence is the word plus the phonemes), over the
same seeded batches of ``BATCH`` words (an epoch's permutation cut into length-sorted pools,
less padding); AdamW with linear warm-up and cosine decay, label smoothing, dropout on the
residual branches. From half the schedule on, every tenth of it, greedy decoding scores PER on 400
validation words; the checkpoint with the best validation PER is the one saved (the .json
keeps the whole validation log and the CPU seconds). Weights are saved as ``samples/slm/<model>.npz`` (float32, tied table once), which
:func:`sdk.models.slm.build_onnx` turns into ONNX entry graphs (no torch needed there).

    nice -n 10 .venv/bin/python tools/train_slm.py --model encdec
    nice -n 10 .venv/bin/python tools/train_slm.py --model deconly
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slm_data

import sdk
from sdk.models.slm import SLMConfig

OUT = Path(__file__).resolve().parents[1] / "samples" / "slm"
#: the same training time for both models: 24,000 encoder-decoder steps took 2,501 s of CPU,
#: 15,000 decoder-only steps ~2,800 s (the committed runs' .json record both)
STEPS = {"encdec": 24000, "deconly": 15000}
BATCH, LR, WARMUP, SMOOTHING, DROPOUT = 96, 3e-3, 300, 0.1, 0.1
#: the committed G2P models' size (the sdk presets' blocks, wider): encdec 4 + 2 layers,
#: deconly 7 layers with the same blocks (MLP 248 wide: the same parameter count within
#: 0.3 %); both under g2p-en's 834,890 parameters
SIZE = {"encdec": {"d": 128, "ff": 256}, "deconly": {"d": 128, "ff": 248}}


def g2p_config(kind: str, d: int | None = None, ff: int | None = None) -> SLMConfig:
    import dataclasses

    return dataclasses.replace(SLMConfig.preset(kind), d=d or SIZE[kind]["d"],
                               ff=ff or SIZE[kind]["ff"])


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(n: int, dh: int) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = SLMConfig.rope_tables(n, dh)
    return torch.from_numpy(cos), torch.from_numpy(sin)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class Attention(nn.Module):
    def __init__(self, c: SLMConfig) -> None:
        super().__init__()
        self.c = c
        self.q = nn.Linear(c.d, c.heads * c.dh, bias=False)
        self.k = nn.Linear(c.d, c.kv_heads * c.dh, bias=False)
        self.v = nn.Linear(c.d, c.kv_heads * c.dh, bias=False)
        self.o = nn.Linear(c.heads * c.dh, c.d, bias=False)

    def split(self, t, h):
        return t.view(t.shape[0], t.shape[1], h, self.c.dh).transpose(1, 2)

    def forward(self, x, kv_src, bias, rope=None):
        c = self.c
        q = self.split(self.q(x), c.heads)
        k = self.split(self.k(kv_src), c.kv_heads)
        v = self.split(self.v(kv_src), c.kv_heads)
        if rope is not None:
            cq, sq, ck, sk = rope
            q, k = rotate(q, cq, sq), rotate(k, ck, sk)
        g = c.heads // c.kv_heads
        k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)  # head h uses kv head h % kv_heads
        s = q @ k.transpose(-1, -2) / math.sqrt(c.dh) + bias
        a = torch.softmax(s, -1) @ v
        return self.o(a.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class Block(nn.Module):
    def __init__(self, c: SLMConfig, cross: bool, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)  # on each residual branch (identity at inference)
        self.n1, self.n2 = RMSNorm(c.d, c.eps), RMSNorm(c.d, c.eps)
        self.attn = Attention(c)
        self.cross = Attention(c) if cross else None
        self.nc = RMSNorm(c.d, c.eps) if cross else None
        self.f1 = nn.Linear(c.d, c.ff, bias=False)
        self.f2 = nn.Linear(c.ff, c.d, bias=False)

    def forward(self, x, bias, rope, mem=None, mem_bias=None):
        h = self.n1(x)
        x = x + self.drop(self.attn(h, h, bias, rope))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.nc(x), mem, mem_bias))
        return x + self.drop(self.f2(torch.relu(self.f1(self.n2(x)))))


class G2PModel(nn.Module):
    def __init__(self, c: SLMConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.c = c
        self.emb = nn.Embedding(c.vocab, c.d)
        nn.init.normal_(self.emb.weight, std=c.d ** -0.5)
        self.enc = nn.ModuleList(Block(c, False, dropout) for _ in range(c.enc_layers))
        self.dec = nn.ModuleList(Block(c, c.enc_layers > 0, dropout)
                                 for _ in range(c.dec_layers))
        self.enc_norm = RMSNorm(c.d, c.eps) if c.enc_layers else None
        self.dec_norm = RMSNorm(c.d, c.eps)

    def _rope(self, t):
        cos, sin = rope_tables(t, self.c.dh)
        return cos, sin, cos, sin

    def forward(self, src, src_mask, tgt):
        """src [B, S] (unused by deconly), src_mask [B, S] (1 = token), tgt [B, T] → logits."""
        return self.decode(tgt, *self.encode(src, src_mask))

    def encode(self, src, src_mask):
        """(memory, memory key bias) of the encoder; (None, None) for decoder-only."""
        if not self.c.enc_layers:
            return None, None
        x = self.emb(src)
        key_bias = (1.0 - src_mask[:, None, None, :].float()) * -1e9
        rope = self._rope(src.shape[1])
        for b in self.enc:
            x = b(x, key_bias, rope)
        return self.enc_norm(x), key_bias

    def decode(self, tgt, mem, mem_bias):
        t = tgt.shape[1]
        causal = torch.triu(torch.full((t, t), -1e9), 1)[None, None]
        y = self.emb(tgt)
        rope = self._rope(t)
        for b in self.dec:
            y = b(y, causal, rope, mem, mem_bias)
        return self.dec_norm(y) @ self.emb.weight.T

    def export(self) -> dict[str, np.ndarray]:
        """Weights under the names :mod:`sdk.models.slm` reads (matrices [in, out])."""
        w = {"emb": self.emb.weight}

        def block(prefix, b):
            w[f"{prefix}.n1"], w[f"{prefix}.n2"] = b.n1.weight, b.n2.weight
            for n in "qkvo":
                w[f"{prefix}.{n}"] = getattr(b.attn, n).weight.T
            if b.cross is not None:
                w[f"{prefix}.nc"] = b.nc.weight
                for n in "qkvo":
                    w[f"{prefix}.c{n}"] = getattr(b.cross, n).weight.T
            w[f"{prefix}.f1"], w[f"{prefix}.f2"] = b.f1.weight.T, b.f2.weight.T

        for i, b in enumerate(self.enc):
            block(f"enc.{i}", b)
        for i, b in enumerate(self.dec):
            block(f"dec.{i}", b)
        if self.enc_norm is not None:
            w["enc.norm"] = self.enc_norm.weight
        w["dec.norm"] = self.dec_norm.weight
        return {k: v.detach().numpy().astype(np.float32).copy() for k, v in w.items()}


def batches(cfg: SLMConfig, lex, words, rng, tok, batch: int = BATCH):
    """Endless seeded batches of (src, src_mask, tgt_in, tgt_out) int64 arrays. Each epoch is
    a fresh permutation cut into pools of 32 batches; a pool is sorted by word length before it
    is cut into batches (less padding), and the batches are shuffled."""
    words = list(words)
    pool = 32 * batch
    while True:
        order = rng.permutation(len(words))
        for p in range(0, len(order) - batch + 1, pool):
            chunk = sorted(order[p:p + pool], key=lambda i: (len(words[i]), i))
            cut = [chunk[s:s + batch] for s in range(0, len(chunk) - batch + 1, batch)]
            for j in rng.permutation(len(cut)):
                ws = [words[i] for i in cut[j]]
                prons = [lex[w][int(rng.integers(len(lex[w])))] for w in ws]
                yield make_batch(cfg, ws, prons, tok)


@torch.no_grad()
def greedy(model: G2PModel, words: list[str], tok) -> dict[str, list[str]]:
    """Greedy phonemes of each word (full-prefix recomputation, batched by word length)."""
    c = model.c
    model.eval()
    out: dict[str, list[str]] = {}
    by_len: dict[int, list[str]] = {}
    for w in words:
        by_len.setdefault(len(tok.encode_word(w)), []).append(w)
    for n, ws in sorted(by_len.items()):
        g = torch.tensor([tok.encode_word(w) for w in ws])
        if c.enc_layers:
            mem, bias = model.encode(g, torch.ones_like(g))
            seq = torch.full((len(ws), 1), tok.bos_id)
            budget = c.capacity - 1
        else:
            mem = bias = None
            seq = torch.cat([g, torch.full((len(ws), 1), tok.sep_id)], 1)
            budget = min(slm_data.MAX_PHONES + 1, c.capacity - seq.shape[1])
        done = torch.zeros(len(ws), dtype=torch.bool)
        start = seq.shape[1]
        for _ in range(budget):
            nxt = model.decode(seq, mem, bias)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.eos_id), nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
            done |= nxt == tok.eos_id
            if bool(done.all()):
                break
        for w, row in zip(ws, seq[:, start:].tolist()):
            ids = row[:row.index(tok.eos_id)] if tok.eos_id in row else row
            out[w] = tok.decode(ids)
    model.train()
    return out


def valid_per(model: G2PModel, words: list[str], lex, tok) -> tuple[float, float]:
    """(PER %, WER %) of greedy decoding, scored as tools/slm_eval.py scores the held-out set."""
    import slm_eval

    s = slm_eval.score(greedy(model, words, tok), lex)
    return round(s["per"], 3), round(s["wer"], 3)


def make_batch(cfg: SLMConfig, ws, prons, tok):
    B = len(ws)
    S = cfg.max_src
    src = np.zeros((B, S), np.int64)
    mask = np.zeros((B, S), np.int64)
    T = cfg.capacity
    tin = np.zeros((B, T), np.int64)
    tout = np.full((B, T), -100, np.int64)
    for i, (w, p) in enumerate(zip(ws, prons)):
        g, ph = tok.encode_word(w), tok.encode_phonemes(p)
        if cfg.enc_layers:
            src[i, :len(g)], mask[i, :len(g)] = g, 1
            seq = [tok.bos_id] + ph
            tin[i, :len(seq)] = seq
            tout[i, :len(seq)] = ph + [tok.eos_id]
        else:
            seq = g + [tok.sep_id] + ph
            tin[i, :len(seq)] = seq
            tout[i, len(g):len(seq)] = ph + [tok.eos_id]
    t = int((tin != 0).sum(1).max())
    s = max(1, int(mask.sum(1).max()))
    return src[:, :s], mask[:, :s], tin[:, :t], tout[:, :t]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(STEPS), required=True)
    ap.add_argument("--steps", type=int, default=None, help="override the fixed step count")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--d", type=int, default=None, help="model width (default: SIZE)")
    ap.add_argument("--ff", type=int, default=None, help="MLP width (default: SIZE)")
    ap.add_argument("--batch", type=int, default=BATCH, help="words per step")
    ap.add_argument("--lr", type=float, default=LR, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=WARMUP, help="linear warm-up steps")
    ap.add_argument("--smoothing", type=float, default=SMOOTHING, help="label smoothing")
    ap.add_argument("--dropout", type=float, default=DROPOUT,
                    help="dropout on every residual branch while training")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="greedy validation PER every N steps (0: every tenth of the schedule "
                    "from 50 %% on); the best checkpoint is the one saved")
    ap.add_argument("--valid-words", type=int, default=400,
                    help="validation words for the PER checkpoints")
    ap.add_argument("--keep-all", action="store_true",
                    help="also write <model>_step<N>.npz at every validation")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="stop early (and say so in the .json) past this wall time")
    ap.add_argument("--time-only", type=int, default=0, help="time this many steps and stop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = g2p_config(args.model, args.d, args.ff)
    model = G2PModel(cfg, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    tok = sdk.G2PTokenizer()
    lex = slm_data.load_lexicon()
    train, valid, _ = slm_data.split(lex)
    vwords = valid[:: max(1, len(valid) // args.valid_words)][: args.valid_words]
    steps = args.time_only or args.steps or STEPS[args.model]
    every = args.eval_every or max(1, steps // 10)
    first_eval = 0 if args.eval_every else int(0.5 * steps)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                            betas=(0.9, 0.98))
    warm = args.warmup
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (
        0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))) + 0.02)
    rng = np.random.default_rng(1)
    it = batches(cfg, lex, train, rng, tok, args.batch)
    lossf = nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=args.smoothing)
    t0, c0, log, vlog = time.time(), time.process_time(), [], []
    best = None  # (per, wer, step, weights)
    args.out.mkdir(parents=True, exist_ok=True)

    def save(weights, step, per, wer):
        np.savez(args.out / f"{args.model}.npz", **weights)
        meta = {"model": args.model, "config": cfg.to_json(), "params": n_params,
                "steps": step, "planned_steps": steps, "batch": args.batch, "lr": args.lr,
                "warmup": warm, "label_smoothing": args.smoothing, "dropout": args.dropout,
                "train_seconds": round(time.time() - t0, 1),
                "cpu_seconds": round(time.process_time() - c0, 1), "threads": 1,
                "valid_words": len(vwords), "valid_per": per, "valid_wer": wer,
                "loss_log": log, "valid_log": vlog}
        (args.out / f"{args.model}.json").write_text(json.dumps(meta, indent=1) + "\n")

    model.train()
    done = steps
    for step in range(steps):
        if args.max_minutes and time.time() - t0 > 60 * args.max_minutes:
            done = step
            print(f"{args.model}: stopped at step {step} (--max-minutes)", flush=True)
            break
        src, mask, tin, tout = (torch.from_numpy(a) for a in next(it))
        logits = model(src, mask, tin)
        loss = lossf(logits.reshape(-1, cfg.vocab), tout.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            log.append((step, round(loss.item(), 4), round(time.time() - t0, 1),
                        round(time.process_time() - c0, 1)))
            print(f"{args.model} step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s "
                  f"cpu {time.process_time() - c0:.0f}s", flush=True)
        if args.time_only:
            continue
        if (step + 1 >= first_eval and (step + 1) % every == 0) or step == steps - 1:
            per, wer = valid_per(model, vwords, lex, tok)
            vlog.append((step + 1, per, wer, round(time.process_time() - c0, 1)))
            print(f"{args.model} step {step + 1}: valid PER {per:.2f} WER {wer:.2f}", flush=True)
            if args.keep_all:
                np.savez(args.out / f"{args.model}_step{step + 1}.npz", **model.export())
            if best is None or per < best[0]:
                best = (per, wer, step + 1, model.export())
                save(best[3], step + 1, per, wer)
    wall = time.time() - t0
    if args.time_only:
        print(f"{args.model}: {n_params} params, {wall / steps * 1000:.1f} ms/step wall, "
              f"{(time.process_time() - c0) / steps * 1000:.1f} ms/step cpu")
        return
    if best is None:  # stopped before the first validation
        per, wer = valid_per(model, vwords, lex, tok)
        best = (per, wer, done, model.export())
    save(best[3], best[2], best[0], best[1])
    meta = json.loads((args.out / f"{args.model}.json").read_text())
    meta["steps_run"] = done
    (args.out / f"{args.model}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{args.model}: {n_params} params, {done} steps in {wall:.0f}s "
          f"(cpu {time.process_time() - c0:.0f}s); kept step {best[2]}: valid PER {best[0]:.2f} "
          f"WER {best[1]:.2f}")


if __name__ == "__main__":
    main()
