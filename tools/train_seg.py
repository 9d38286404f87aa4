"""Train the I-Segmenter-style ViT on generated scenes and export it to ONNX.

    .venv/bin/pip install -e '.[train]'
    nice -n 10 .venv/bin/python tools/train_seg.py --decoder mask --minutes 18 --out samples/seg
    nice -n 10 .venv/bin/python tools/train_seg.py --decoder linear --minutes 12 --out samples/seg
    # the tiny variant for the microcontroller (samples/seg/README.md), exactly 3000 steps:
    nice -n 10 .venv/bin/python tools/train_seg.py --decoder mask --width 64 --blocks 3 \
        --heads 2 --dec-width 64 --steps 3000 --minutes 20 --name seg_tiny_mask --out samples/seg

Model (Segmenter, Strudel et al. 2021, with I-Segmenter's changes):

* encoder: 8×8 patch embedding (a stride-8 convolution) of a 96×96 RGB input → 12×12 tokens,
  learned position embeddings, ``--blocks`` pre-LN transformer blocks of width ``--width``
  (``--heads`` heads, MLP 4×, GELU), final LayerNorm;
* decoder ``linear``: one linear layer token → class logits;
* decoder ``mask`` (mask transformer): the tokens projected, ``C`` learned class embeddings
  appended, one transformer block, LayerNorm; patch and class features projected and their
  dot products are the masks — **without** Segmenter's L2 normalisation of both (I-Segmenter
  removes it: it has no integer form) — followed by LayerNorm over the classes;
* logits upsampled 8× by **nearest neighbour** (I-Segmenter's replacement for bilinear);
* GELU is torch's erf GELU; the SDK compiles it to λ-ShiftGELU (``docs/ops.md``: the λ clip
  of the sigmoid's argument; the paper's exact formula is not public, see
  ``samples/seg/README.md``).

Data: :func:`sdk.vision.cached_scenes` (train split, seed 0) with random flips; the loss is
pixel cross-entropy on the upsampled logits. One torch thread, seeded: the same command gives
the same checkpoint on the same torch build. Writes ``seg_vit_<decoder>.npz`` (float32
parameters + config) and ``seg_vit_<decoder>.onnx`` (opset 17, input ``x`` float32
[1, 3, 96, 96] = (RGB/255 − 0.5)/0.25, output ``logits`` [1, C, 96, 96]).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sdk
from sdk.vision import CLASSES, cached_scenes, normalize_batch

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ModuleNotFoundError:  # pragma: no cover - the train extra
    sys.exit("tools/train_seg.py needs torch: .venv/bin/pip install -e '.[train]'")

assert sdk.__version__


class Block(nn.Module):
    """Pre-LN transformer block: x + MHA(LN(x)); x + MLP(LN(x))."""

    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mlp)
        self.fc2 = nn.Linear(mlp, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        qkv = self.qkv(self.ln1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax((q * (d // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class SegViT(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        d, p, s, c = cfg["width"], cfg["patch"], cfg["size"], cfg["classes"]
        self.grid = s // p
        self.patch = nn.Conv2d(3, d, p, stride=p)
        self.pos = nn.Parameter(torch.randn(1, self.grid ** 2, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, cfg["heads"], 4 * d) for _ in range(cfg["blocks"])])
        self.norm = nn.LayerNorm(d)
        if cfg["decoder"] == "linear":
            self.head = nn.Linear(d, c)
        else:
            dd = cfg["dec_width"]
            self.dec_proj = nn.Linear(d, dd)
            self.cls_emb = nn.Parameter(torch.randn(1, c, dd) * 0.02)
            self.dec_blocks = nn.ModuleList([Block(dd, cfg["heads"], 4 * dd)
                                             for _ in range(cfg["dec_blocks"])])
            self.dec_norm = nn.LayerNorm(dd)
            self.proj_patch = nn.Linear(dd, dd, bias=False)
            self.proj_classes = nn.Linear(dd, dd, bias=False)
            self.mask_norm = nn.LayerNorm(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        c, g, p = self.cfg["classes"], self.grid, self.cfg["patch"]
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        if self.cfg["decoder"] == "linear":
            logits = self.head(t)
        else:
            t = torch.cat([self.dec_proj(t), self.cls_emb.expand(b, -1, -1)], dim=1)
            for blk in self.dec_blocks:
                t = blk(t)
            t = self.dec_norm(t)
            patches = self.proj_patch(t[:, :g * g])
            classes = self.proj_classes(t[:, g * g:])
            # Segmenter L2-normalises patches and classes here; I-Segmenter does not
            logits = self.mask_norm(patches @ classes.transpose(1, 2))
        logits = logits.transpose(1, 2).reshape(b, c, g, g)
        return F.interpolate(logits, scale_factor=p, mode="nearest")


def miou(pred: np.ndarray, lab: np.ndarray, c: int) -> tuple[float, np.ndarray]:
    inter = np.bincount(lab[pred == lab].ravel(), minlength=c)
    union = np.bincount(pred.ravel(), minlength=c) + np.bincount(lab.ravel(), minlength=c) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)) * 100, iou * 100


def evaluate(model: SegViT, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(images), 50):
            x = torch.from_numpy(normalize_batch(images[i:i + 50]))
            preds.append(model(x).argmax(1).numpy())
    model.train()
    return miou(np.concatenate(preds), labels, len(CLASSES))[0]


def export(model: SegViT, path: Path) -> None:
    model.eval()
    s = model.cfg["size"]
    torch.onnx.export(model, (torch.zeros(1, 3, s, s),), str(path), input_names=["x"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      do_constant_folding=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decoder", choices=["mask", "linear"], default="mask")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dec-width", type=int, default=128)
    ap.add_argument("--dec-blocks", type=int, default=1)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--train-scenes", type=int, default=3000)
    ap.add_argument("--val-scenes", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--steps", type=int, default=0,
                    help="train exactly this many steps, the cosine schedule over steps (not "
                         "over --minutes): the same command then gives the same checkpoint; "
                         "--minutes stays a safety cap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", help="start from this checkpoint (.npz written by this script; "
                    "its config wins), e.g. to continue a run with a fresh schedule")
    ap.add_argument("--name", help="file stem (default seg_vit_<decoder>)")
    ap.add_argument("--out", default="samples/seg")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    cfg = {"decoder": a.decoder, "width": a.width, "blocks": a.blocks, "heads": a.heads,
           "dec_width": a.dec_width, "dec_blocks": a.dec_blocks, "size": a.size,
           "patch": a.patch, "classes": len(CLASSES)}
    history = []
    init = None
    if a.init:
        with np.load(a.init) as z:
            init = {k: z[k] for k in z.files if k != "__meta__"}
            prev = json.loads(str(z["__meta__"]))
        cfg = dict(prev["cfg"])
        history = prev.get("history", []) + [{k: prev[k] for k in ("command", "steps",
                                                                  "seconds", "val_miou")}]
        a.size = cfg["size"]
    t0 = time.time()
    images, labels = cached_scenes(a.train_scenes, 0, "train", a.size)
    vimg, vlab = cached_scenes(a.val_scenes, 7, "train", a.size)  # validation: other seed
    print(f"data: {len(images)} train scenes in {time.time() - t0:.0f} s", flush=True)
    model = SegViT(cfg)
    if init is not None:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in init.items()})
        print(f"initialised from {a.init} (val mIoU {evaluate(model, vimg, vlab):.2f})",
              flush=True)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"model: {cfg}, {nparam:,} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.02)
    budget = a.minutes * 60.0
    warm = 100
    t_start = time.time()
    step = 0
    losses: list[float] = []
    max_steps = a.steps or a.max_steps
    while step < max_steps:
        frac = (time.time() - t_start) / budget
        if frac >= 1.0:
            if a.steps:
                print(f"stopped by --minutes {a.minutes} at step {step} of {a.steps}: this "
                      "checkpoint is not the one the command names", flush=True)
            break
        if a.steps:
            frac = step / a.steps
        lr = a.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        idx = rng.integers(0, len(images), a.batch)
        xb, yb = images[idx], labels[idx]
        flip = rng.random(a.batch) < 0.5
        xb = np.where(flip[:, None, None, None], xb[:, :, ::-1], xb)
        yb = np.where(flip[:, None, None], yb[:, :, ::-1], yb)
        x = torch.from_numpy(normalize_batch(xb))
        y = torch.from_numpy(yb.astype(np.int64))
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.4f} lr {lr:.2e} "
                  f"{time.time() - t_start:.0f} s", flush=True)
        if step % 400 == 0:
            print(f"  val mIoU {evaluate(model, vimg, vlab):.2f}", flush=True)
    val = evaluate(model, vimg, vlab)
    print(f"done: {step} steps in {time.time() - t_start:.0f} s, val mIoU {val:.2f}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = a.name or f"seg_vit_{a.decoder}"
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    meta = {"cfg": cfg, "steps": step, "seconds": round(time.time() - t_start),
            "val_miou": round(val, 2), "seed": a.seed, "train_scenes": a.train_scenes,
            "classes": list(CLASSES), "history": history, "torch": torch.__version__,
            "command": " ".join(["tools/train_seg.py", *(argv or sys.argv[1:])])}
    np.savez(out / f"{stem}.npz", __meta__=np.array(json.dumps(meta)), **state)
    export(model, out / f"{stem}.onnx")
    print(f"wrote {out / (stem + '.npz')} and {out / (stem + '.onnx')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
