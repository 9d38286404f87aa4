"""Train the two G2P small language models of ``samples/slm`` (needs the ``train`` extra).

Same data, same parameter budget, same tokenizer (``sdk.G2PTokenizer``: characters in,
ARPAbet phonemes out, one shared vocabulary of 73):

* ``encdec``: encoder-decoder after "Return of the Encoder" (microsoft/encoder-decoder-slm):
  4 encoder and 2 decoder layers (2:1), pre-RMSNorm, RoPE (rotate-half) in self-attention,
  grouped-query attention (4 query heads, 2 key/value heads), ReLU MLP, no biases, one
  embedding table tied between encoder input, decoder input and output projection.
* ``deconly``: decoder-only with the same blocks, 7 layers, the word then ``<sep>`` then the
  phonemes in one causal sequence (loss on the phonemes and ``</s>`` only).

Both train on one CPU thread (``torch.set_num_threads(1)``), seeded, AdamW with warm-up and
cosine decay, a fixed number of steps each (chosen so both take about the same wall time on
one core). Weights are saved as ``samples/slm/<model>.npz`` (float32, tied table once), which
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
STEPS = {"encdec": 1600, "deconly": 700}
BATCH, LR, WARMUP = 64, 3e-3, 100


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
    def __init__(self, c: SLMConfig, cross: bool) -> None:
        super().__init__()
        self.n1, self.n2 = RMSNorm(c.d, c.eps), RMSNorm(c.d, c.eps)
        self.attn = Attention(c)
        self.cross = Attention(c) if cross else None
        self.nc = RMSNorm(c.d, c.eps) if cross else None
        self.f1 = nn.Linear(c.d, c.ff, bias=False)
        self.f2 = nn.Linear(c.ff, c.d, bias=False)

    def forward(self, x, bias, rope, mem=None, mem_bias=None):
        h = self.n1(x)
        x = x + self.attn(h, h, bias, rope)
        if self.cross is not None:
            x = x + self.cross(self.nc(x), mem, mem_bias)
        return x + self.f2(torch.relu(self.f1(self.n2(x))))


class G2PModel(nn.Module):
    def __init__(self, c: SLMConfig) -> None:
        super().__init__()
        self.c = c
        self.emb = nn.Embedding(c.vocab, c.d)
        nn.init.normal_(self.emb.weight, std=c.d ** -0.5)
        self.enc = nn.ModuleList(Block(c, False) for _ in range(c.enc_layers))
        self.dec = nn.ModuleList(Block(c, c.enc_layers > 0) for _ in range(c.dec_layers))
        self.enc_norm = RMSNorm(c.d, c.eps) if c.enc_layers else None
        self.dec_norm = RMSNorm(c.d, c.eps)

    def _rope(self, t):
        cos, sin = rope_tables(t, self.c.dh)
        return cos, sin, cos, sin

    def forward(self, src, src_mask, tgt):
        """src [B, S] (unused by deconly), src_mask [B, S] (1 = token), tgt [B, T] → logits."""
        c = self.c
        mem = mem_bias = None
        if c.enc_layers:
            x = self.emb(src)
            key_bias = (1.0 - src_mask[:, None, None, :].float()) * -1e9
            rope = self._rope(src.shape[1])
            for b in self.enc:
                x = b(x, key_bias, rope)
            mem, mem_bias = self.enc_norm(x), key_bias
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


def batches(cfg: SLMConfig, lex, words, rng, tok):
    """Endless seeded batches of (src, src_mask, tgt_in, tgt_out) int64 arrays."""
    words = list(words)
    while True:
        order = rng.permutation(len(words))
        for s in range(0, len(order) - BATCH + 1, BATCH):
            ws = [words[i] for i in order[s:s + BATCH]]
            prons = [lex[w][int(rng.integers(len(lex[w])))] for w in ws]
            yield make_batch(cfg, ws, prons, tok)


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
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="stop early (and say so in the .json) past this wall time")
    ap.add_argument("--time-only", type=int, default=0, help="time this many steps and stop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = SLMConfig.preset(args.model)
    model = G2PModel(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    tok = sdk.G2PTokenizer()
    lex = slm_data.load_lexicon()
    train, valid, _ = slm_data.split(lex)
    steps = args.time_only or args.steps or STEPS[args.model]
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP) * (
        0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))) + 0.02)
    rng = np.random.default_rng(1)
    it = batches(cfg, lex, train, rng, tok)
    lossf = nn.CrossEntropyLoss(ignore_index=-100)
    t0, log = time.time(), []
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
            log.append((step, round(loss.item(), 4), round(time.time() - t0, 1)))
            print(f"{args.model} step {step} loss {float(loss):.4f} {time.time() - t0:.0f}s",
                  flush=True)
    wall = time.time() - t0
    if args.time_only:
        print(f"{args.model}: {n_params} params, {wall / steps * 1000:.1f} ms/step")
        return
    model.eval()
    # validation token accuracy (teacher forced), for the log only
    with torch.no_grad():
        ws = valid[:512]
        src, mask, tin, tout = (torch.from_numpy(a) for a in make_batch(
            cfg, ws, [lex[w][0] for w in ws], tok))
        pred = model(src, mask, tin).argmax(-1)
        keep = tout != -100
        acc = float((pred[keep] == tout[keep]).float().mean())
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"{args.model}.npz", **model.export())
    meta = {"model": args.model, "config": cfg.to_json(), "params": n_params, "steps": done, "planned_steps": steps,
            "batch": BATCH, "train_seconds": round(wall, 1), "threads": 1,
            "valid_token_accuracy": round(acc, 4), "loss_log": log}
    (args.out / f"{args.model}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{args.model}: {n_params} params, {done} steps in {wall:.0f}s, valid token acc {acc:.4f}")


if __name__ == "__main__":
    main()
