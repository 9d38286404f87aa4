"""Encoder depth per image for the Segmenter (ECO-M2F style): decoder heads after blocks 1, 2
and 3 of the committed linear-decoder ViT (its own head after block 4 stays the last exit)
and a gating network on the block-1 tokens that predicts, per image, which exits keep the
image's mIoU. The trunk is frozen (read from ``samples/seg/seg_vit_linear.npz``, unchanged).

    nice -n 10 .venv/bin/python tools/train_seg_exits.py            # ~3-5 min on one thread

* heads: ``LayerNorm(128) -> Linear(128, 64) -> GELU -> Linear(64, 8)`` on the tokens after
  block k (``--head-hidden 0``: the final head's form, LayerNorm + Linear, which left exit 3
  0.8 mIoU below the full model), logits upsampled 8x by nearest neighbour like the final
  head; ~0.56 M MACs per head against 13.6 M per block. Trained on the frozen
  trunk's tokens of the 3,000 training scenes (seed 0): pixel cross-entropy, which for a
  nearest upsample equals each token's cross-entropy against its patch's label histogram.
* gate (ECO-M2F's gating network, small): ``Linear(128, 8) -> ReLU`` per block-1 token,
  flattened (512) -> ``Linear(512, 3)``: one logit per early exit, trained (BCE) on "exit k's
  per-image mIoU is within ``--tol`` points of the full model's" on the training scenes.
* export: ``samples/exits/seg_exits.onnx`` (torch.onnx.export, opset 17): input ``x`` float32
  [1, 3, 64, 64], outputs ``exit_1`` .. ``exit_4`` [1, 8, 64, 64] and ``gate`` [1, 3];
  ``seg_exits.pt`` (the heads' and gate's parameters, < 100 KB) and ``seg_exits.json`` (float
  mIoU per exit on validation / test scenes, the command).

The SDK compiles the ONNX, splits it into stage entries (``sdk.exits.split_stages``) and
calibrates the gate's integer thresholds on validation scenes with the ``miou`` criterion
(``sdk.add_exits(..., rule="gate", criterion="miou")``; ``tools/bench_exit.py --seg``).
One torch thread, seeded: the same command gives the same files on the same torch build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import sdk
from sdk.vision import CLASSES, cached_scenes, normalize_batch

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ModuleNotFoundError:  # pragma: no cover - the train extra
    sys.exit("tools/train_seg_exits.py needs torch: .venv/bin/pip install -e '.[train]'")

from train_seg import SegViT

assert sdk.__version__
C = len(CLASSES)
EXITS = ("exit_1", "exit_2", "exit_3", "exit_4")


class SegExits(nn.Module):
    """The frozen trunk, heads after blocks 1-3, its own head after block 4, the gate."""

    def __init__(self, trunk: SegViT, gate_hidden: int = 8, head_hidden: int = 0) -> None:
        super().__init__()
        d = trunk.cfg["width"]
        self.trunk = trunk

        def head() -> nn.Module:
            if not head_hidden:
                return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, C))
            return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, head_hidden), nn.GELU(),
                                 nn.Linear(head_hidden, C))

        self.heads = nn.ModuleList([head() for _ in range(trunk.cfg["blocks"] - 1)])
        g = trunk.grid
        self.gate_tok = nn.Linear(d, gate_hidden)
        self.gate_out = nn.Linear(gate_hidden * g * g, trunk.cfg["blocks"] - 1)

    def up(self, logits: torch.Tensor) -> torch.Tensor:
        b, g, p = logits.shape[0], self.trunk.grid, self.trunk.cfg["patch"]
        logits = logits.transpose(1, 2).reshape(b, C, g, g)
        return F.interpolate(logits, scale_factor=p, mode="nearest")

    def gate(self, t1: torch.Tensor) -> torch.Tensor:
        return self.gate_out(F.relu(self.gate_tok(t1)).flatten(1))

    def forward(self, x: torch.Tensor):
        tr = self.trunk
        t = tr.patch(x).flatten(2).transpose(1, 2) + tr.pos
        outs = []
        gate = None
        for k, blk in enumerate(tr.blocks):
            t = blk(t)
            if k == 0:
                gate = self.gate(t)
            if k < len(self.heads):
                outs.append(self.up(self.heads[k](t)))
        outs.append(self.up(tr.head(tr.norm(t))))
        return (*outs, gate)


def load_trunk(path: Path) -> SegViT:
    with np.load(path) as z:
        meta = json.loads(str(z["__meta__"]))
        state = {k: torch.from_numpy(z[k]) for k in z.files if k != "__meta__"}
    trunk = SegViT(meta["cfg"])
    trunk.load_state_dict(state)
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk


@torch.no_grad()
def block_tokens(trunk: SegViT, images: np.ndarray, batch: int = 50) -> list[np.ndarray]:
    """Tokens after every block [N, 64, d] (float32), the last one after the final norm."""
    outs: list[list[np.ndarray]] = [[] for _ in trunk.blocks]
    for i in range(0, len(images), batch):
        x = torch.from_numpy(normalize_batch(images[i:i + batch]))
        t = trunk.patch(x).flatten(2).transpose(1, 2) + trunk.pos
        for k, blk in enumerate(trunk.blocks):
            t = blk(t)
            outs[k].append(t.numpy().copy())
    return [np.concatenate(o) for o in outs]


def patch_hist(labels: np.ndarray, grid: int, patch: int) -> np.ndarray:
    """Per token, the class histogram of its patch (fractions) [N, grid*grid, C]."""
    n = len(labels)
    lab = labels.reshape(n, grid, patch, grid, patch).transpose(0, 1, 3, 2, 4)
    lab = lab.reshape(n, grid * grid, patch * patch).astype(np.int64)
    h = np.zeros((n, grid * grid, C), np.float32)
    for c in range(C):
        h[..., c] = (lab == c).mean(-1)
    return h


def token_preds(logits: np.ndarray, grid: int, patch: int) -> np.ndarray:
    """Token logits [N, grid*grid, C] -> pixel class map [N, H, W] (nearest upsample)."""
    n = len(logits)
    a = logits.argmax(-1).reshape(n, grid, 1, grid, 1)
    return np.broadcast_to(a, (n, grid, patch, grid, patch)).reshape(n, grid * patch,
                                                                       grid * patch)


def confusions(pred: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Per-image confusion matrices [N, C, C] (rows: label, columns: prediction)."""
    n = len(pred)
    idx = lab.reshape(n, -1).astype(np.int64) * C + pred.reshape(n, -1)
    return np.stack([np.bincount(r, minlength=C * C).reshape(C, C) for r in idx])


def miou_of(conf: np.ndarray) -> float:
    """mIoU (percent) of a confusion matrix [C, C]; per image rows give per-image mIoU."""
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou) * 100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trunk", default=str(ROOT / "samples" / "seg" / "seg_vit_linear.npz"))
    ap.add_argument("--train-scenes", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=60, help="head epochs (batches of 100 scenes)")
    ap.add_argument("--gate-epochs", type=int, default=60)
    ap.add_argument("--tol", type=float, default=1.0,
                    help="gate target: exit k's per-image mIoU >= full's - tol points")
    ap.add_argument("--head-hidden", type=int, default=64,
                    help="0: LayerNorm + Linear heads; H: LayerNorm, Linear(d, H), GELU, Linear")
    ap.add_argument("--gate-wd", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "samples" / "exits"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    trunk = load_trunk(Path(a.trunk))
    g, p = trunk.grid, trunk.cfg["patch"]
    model = SegExits(trunk, head_hidden=a.head_hidden)
    sets = {"train": cached_scenes(a.train_scenes, 0, "train", trunk.cfg["size"]),
            "val": cached_scenes(200, 7, "train", trunk.cfg["size"]),
            "test": cached_scenes(300, 1, "test", trunk.cfg["size"])}
    feats = {k: block_tokens(trunk, v[0]) for k, v in sets.items()}
    print(f"trunk tokens of {sum(len(v[0]) for v in sets.values())} scenes in "
          f"{time.time() - t0:.0f} s", flush=True)

    # heads: full-batch-ish Adam over the cached tokens
    hist = torch.from_numpy(patch_hist(sets["train"][1], g, p))
    params = [q for h in model.heads for q in h.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(a.seed)
    n = len(hist)
    tr_tok = [torch.from_numpy(f) for f in feats["train"]]
    for ep in range(a.epochs):
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        for i in range(0, n, 100):
            idx = perm[i:i + 100]
            loss = sum(-(hist[idx] * F.log_softmax(h(tr_tok[k][idx]), -1)).sum(-1).mean()
                       for k, h in enumerate(model.heads))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        if ep % 5 == 4 or ep == a.epochs - 1:
            print(f"heads epoch {ep + 1}: loss {tot / n:.4f}", flush=True)

    @torch.no_grad()
    def exit_preds(split: str) -> list[np.ndarray]:
        f = feats[split]
        out = [token_preds(h(torch.from_numpy(f[k])).numpy(), g, p)
               for k, h in enumerate(model.heads)]
        out.append(token_preds(trunk.head(trunk.norm(torch.from_numpy(f[-1]))).numpy(), g, p))
        return out

    report: dict = {}
    per_image: dict[str, np.ndarray] = {}
    split_confs: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        preds = exit_preds(split)
        confs = np.stack([confusions(pr, sets[split][1]) for pr in preds], 1)  # [N, K, C, C]
        split_confs[split] = confs
        per_image[split] = np.array([[miou_of(c) for c in row] for row in confs])
        report[split] = {"miou": [round(miou_of(confs[:, k].sum(0)), 2)
                                  for k in range(len(EXITS))],
                         "scenes": len(confs)}
        print(f"{split}: float mIoU per exit {report[split]['miou']}", flush=True)

    # gate: per image and early exit, does that exit keep the image's mIoU (within tol)?
    pi = per_image["train"]
    target = torch.from_numpy((pi[:, :-1] >= pi[:, -1:] - a.tol).astype(np.float32))
    print(f"gate targets (train): exit ok share {target.mean(0).numpy().round(3).tolist()}",
          flush=True)
    t1 = tr_tok[0]
    gopt = torch.optim.Adam([*model.gate_tok.parameters(), *model.gate_out.parameters()],
                            lr=2e-3, weight_decay=a.gate_wd)
    for ep in range(a.gate_epochs):
        perm = torch.randperm(n, generator=gen)
        tot = 0.0
        for i in range(0, n, 250):
            idx = perm[i:i + 250]
            loss = F.binary_cross_entropy_with_logits(model.gate(t1[idx]), target[idx])
            gopt.zero_grad()
            loss.backward()
            gopt.step()
            tot += float(loss.detach()) * len(idx)
        if ep % 50 == 49:
            with torch.no_grad():
                vg = model.gate(torch.from_numpy(feats["val"][0])).numpy()
            pv = per_image["val"]
            vt = pv[:, :-1] >= pv[:, -1:] - a.tol
            acc = ((vg > 0) == vt).mean(0)
            print(f"gate epoch {ep + 1}: loss {tot / n:.4f}, val agreement "
                  f"{acc.round(3).tolist()}", flush=True)

    with torch.no_grad():
        for split in ("val", "test"):
            gl = model.gate(torch.from_numpy(feats[split][0])).numpy()
            confs = split_confs[split]
            pi = per_image[split]
            oracle = np.array([next((k for k in range(len(EXITS) - 1)
                                     if pi[i, k] >= pi[i, -1] - a.tol), len(EXITS) - 1)
                               for i in range(len(pi))])
            rows = [("oracle", oracle)]
            for t in (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0):
                fire = gl >= t
                rows.append((f"gate>={t:+.1f}", np.where(fire.any(1), fire.argmax(1),
                                                         len(EXITS) - 1)))
            for name, ex in rows:
                m = miou_of(confs[np.arange(len(ex)), ex].sum(0))
                print(f"{split} {name}: mIoU {m:.2f} (full {report[split]['miou'][-1]}), "
                      f"mean blocks {(ex + 1).mean():.2f}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, 3, trunk.cfg["size"], trunk.cfg["size"]),),
                      str(out / "seg_exits.onnx"), input_names=["x"],
                      output_names=[*EXITS, "gate"], opset_version=17, dynamo=False,
                      do_constant_folding=True)
    own = {k: v.detach().clone() for k, v in model.state_dict().items()
           if not k.startswith("trunk.")}
    torch.save(own, out / "seg_exits.pt")
    meta = {"trunk": "samples/seg/seg_vit_linear.npz", "exits": list(EXITS),
            "blocks_per_exit": [1, 2, 3, 4], "gate": "block-1 tokens -> Linear(128,8) -> "
            "ReLU -> flatten -> Linear(512,3)", "tol": a.tol, "seed": a.seed,
            "float": report, "torch": torch.__version__,
            "seconds": round(time.time() - t0),
            "command": " ".join(["tools/train_seg_exits.py", *(argv or sys.argv[1:])])}
    (out / "seg_exits.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out}/seg_exits.{{onnx,pt,json}} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
