"""Train the two sentence-restoration small language models of ``samples/slm/text`` (needs the
``train`` extra).

Same blocks, optimizer and schedule as the G2P models (tools/train_slm.py, imported from
there): ``encdec`` = 4 encoder + 2 decoder layers, ``deconly`` = 7 decoder layers, width 96,
4 query / 2 KV heads, RoPE, RMSNorm, tied embeddings. Here the vocabulary is
``sdk.TextTokenizer``'s 79 characters, the encoder takes up to 50 characters
(``slm_text_data.MAX_SRC``), the encoder-decoder's KV cache holds 50 tokens and the
decoder-only model's 100 (source, ``<sep>``, target, ``</s>``).

Data: tools/slm_text_data.py (fortune sentences; fresh seeded typos every epoch). Both models
train the **same number of steps** of the same batches (same seed) on one thread; the
``.json`` records wall and CPU seconds, and the loss log.

    nice -n 10 .venv/bin/python tools/train_slm_text.py --model encdec
    nice -n 10 .venv/bin/python tools/train_slm_text.py --model deconly
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, "1")

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slm_text_data

import sdk
from sdk.models.slm import SLMConfig
from sdk.text import BOS, EOS, SEP

OUT = Path(__file__).resolve().parents[1] / "samples" / "slm" / "text"
STEPS, BATCH, LR, WARMUP = 1200, 32, 3e-3, 100
KINDS = ("encdec", "deconly")


def config(kind: str) -> SLMConfig:
    """The G2P presets' architecture with the text vocabulary and lengths."""
    tok = sdk.TextTokenizer()
    S = slm_text_data.MAX_SRC
    T = slm_text_data.MAX_CHARS + 2  # <s> / </s> around the longest target
    base = SLMConfig.preset(kind)
    cap = T if base.encdec else S + 1 + slm_text_data.MAX_CHARS + 1
    return dataclasses.replace(base, vocab=tok.vocab_size, max_src=S, capacity=cap)


def make_batch(cfg: SLMConfig, pairs, tok):
    """(src, src_mask, tgt_in, tgt_out) int64 arrays for (source, target) text pairs."""
    B = len(pairs)
    src = np.zeros((B, cfg.max_src), np.int64)
    mask = np.zeros((B, cfg.max_src), np.int64)
    tin = np.zeros((B, cfg.capacity), np.int64)
    tout = np.full((B, cfg.capacity), -100, np.int64)
    for i, (s, t) in enumerate(pairs):
        g, y = tok.encode_source(s, cfg.max_src), tok.encode(t)
        if cfg.encdec:
            src[i, :len(g)], mask[i, :len(g)] = g, 1
            seq = [BOS] + y
            tin[i, :len(seq)] = seq
            tout[i, :len(seq)] = y + [EOS]
        else:
            seq = g + [SEP] + y
            tin[i, :len(seq)] = seq
            tout[i, len(g):len(seq)] = y + [EOS]
    t = int((tin != 0).sum(1).max())
    s = max(1, int(mask.sum(1).max()))
    return src[:, :s], mask[:, :s], tin[:, :t], tout[:, :t]


def batches(cfg: SLMConfig, sentences, rng, tok):
    """Endless seeded batches; every epoch draws fresh typos from ``rng``."""
    while True:
        order = rng.permutation(len(sentences))
        for s in range(0, len(order) - BATCH + 1, BATCH):
            ts = [sentences[i] for i in order[s:s + BATCH]]
            yield make_batch(cfg, [(slm_text_data.corrupt(t, rng), t) for t in ts], tok)


def main() -> None:
    import torch
    from torch import nn
    from train_slm import G2PModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=KINDS, required=True)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--time-only", type=int, default=0, help="time this many steps and stop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = config(args.model)
    model = G2PModel(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    tok = sdk.TextTokenizer()
    train, valid, _ = slm_text_data.split(slm_text_data.load_sentences())
    steps = args.time_only or args.steps
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP) * (
        0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))) + 0.02)
    it = batches(cfg, train, np.random.default_rng(1), tok)
    lossf = nn.CrossEntropyLoss(ignore_index=-100)
    t0, c0, log = time.time(), time.process_time(), []
    model.train()
    for step in range(steps):
        src, mask, tin, tout = (torch.from_numpy(a) for a in next(it))
        logits = model(src, mask, tin)
        loss = lossf(logits.reshape(-1, cfg.vocab), tout.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log.append((step, round(loss.item(), 4), round(time.time() - t0, 1)))
            print(f"{args.model} step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s "
                  f"cpu {time.process_time() - c0:.0f}s", flush=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    if args.time_only:
        print(f"{args.model}: {n_params} params, {wall / steps * 1000:.1f} ms/step wall, "
              f"{cpu / steps * 1000:.1f} ms/step CPU")
        return
    model.eval()
    with torch.no_grad():  # teacher-forced validation token accuracy, for the log only
        src, mask, tin, tout = (torch.from_numpy(a) for a in make_batch(
            cfg, [(slm_text_data.source_of(t), t) for t in valid], tok))
        pred = model(src, mask, tin).argmax(-1)
        keep = tout != -100
        acc = float((pred[keep] == tout[keep]).float().mean())
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"{args.model}.npz", **model.export())
    meta = {"model": args.model, "task": "sentence restoration (fortunes)",
            "tokenizer": tok.name, "config": cfg.to_json(), "params": n_params, "steps": steps,
            "batch": BATCH, "train_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "threads": 1, "valid_token_accuracy": round(acc, 4), "loss_log": log}
    (args.out / f"{args.model}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{args.model}: {n_params} params, {steps} steps in {wall:.0f}s wall / {cpu:.0f}s CPU, "
          f"valid token acc {acc:.4f}")


if __name__ == "__main__":
    main()
