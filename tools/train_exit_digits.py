"""Train the early-exit digit classifier (scikit-learn's 8x8 digits, upsampled to 16x16).

    nice -n 10 .venv/bin/python tools/train_exit_digits.py            # ~10 min on 1 CPU thread
    nice -n 10 .venv/bin/python tools/train_exit_digits.py --epochs 5  # a quick smoke run

A small CNN in three stages, each ending in a classifier head (exit_1, exit_2, exit_3 = the
full model), plus a gating head on the stage-1 features that predicts, per exit, whether that
exit already suffices (ECO-M2F's derived target: the exit is correct). Trained jointly (the
sum of the three exits' cross-entropies, later exits weighted more), then the gate on the
frozen trunk. Seeded and single-threaded: two runs give the same checkpoint.

Writes under ``samples/exits/`` (``--out``):

* ``digits_exits.onnx``: one graph, input ``x`` [1, 1, 16, 16] in [0, 1], outputs ``exit_1``,
  ``exit_2``, ``exit_3`` (logits [1, 10]) and ``gate`` ([1, 3] logits); the SDK splits it into
  stage entries (:func:`sdk.exits.split_stages`).
* ``digits_exits.pt``: the state dict (float32).
* ``digits_calib.npz`` (``x``, ``label``): the calibration split (exit thresholds);
  ``digits_quant.npz`` (``x``): its first 64 images (quantization ranges);
  ``digits_test.npz``: the held-out test split, never seen in training or calibration. The
  training split is the rest.
* ``digits_exits.json``: the split sizes and the float accuracy of each exit on each split.

torch is needed here only (the ``train`` extra); nothing in ``sdk/`` imports it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SEED = 14
EXITS = ("exit_1", "exit_2", "exit_3")


def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train / calib / test of scikit-learn's digits, a fixed seeded permutation; pixels
    scaled from 0..16 to [0, 1] and upsampled 2x (bilinear) to [N, 1, 16, 16] float32."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = upsample2((d.images.astype(np.float32) / 16.0)[:, None])
    y = d.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    n_test, n_calib = 450, 360
    te, ca, tr = order[:n_test], order[n_test:n_test + n_calib], order[n_test + n_calib:]
    return {"train": (x[tr], y[tr]), "calib": (x[ca], y[ca]), "test": (x[te], y[te])}


def upsample2(x: np.ndarray) -> np.ndarray:
    """2x bilinear upsampling of [N, C, H, W] (half-pixel centres, edge clamped), NumPy only
    (the same on every machine)."""
    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(2 * n) + 0.5) / 2 - 0.5
        lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
        hi = np.clip(lo + 1, 0, n - 1)
        w = np.clip(pos - np.floor(pos), 0, 1).astype(np.float32)
        w[pos < 0] = 0
        return lo, hi, w
    lo, hi, w = axis(x.shape[2])
    x = x[:, :, lo] * (1 - w)[:, None] + x[:, :, hi] * w[:, None]
    lo, hi, w = axis(x.shape[3])
    return (x[..., lo] * (1 - w) + x[..., hi] * w).astype(np.float32)


def build_model():
    from torch import nn

    class ExitNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stage1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool2d(2))                     # 16x8x8
            self.head1 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10))
            self.gate = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 3))
            self.stage2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())  # 32x8x8
            self.head2 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10))
            self.stage3 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                                        nn.MaxPool2d(4))                     # 64x2x2
            self.head3 = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4, 10))

        def forward(self, x):
            h1 = self.stage1(x)
            h2 = self.stage2(h1)
            h3 = self.stage3(h2)
            return self.head1(h1), self.head2(h2), self.head3(h3), self.gate(h1)

    return ExitNet()


def shifted(x, gen):
    """Each image moved by up to two pixels (one original pixel) in x and y (zero fill): a
    padded random crop."""
    import torch.nn.functional as F

    pad = F.pad(x, (2, 2, 2, 2))
    off = torch_randint(gen, 5, (len(x), 2))
    h, w = x.shape[2:]
    return torch_stack([pad[i, :, oy:oy + h, ox:ox + w] for i, (oy, ox) in
                        enumerate(off.tolist())])


def torch_randint(gen, high, shape):
    import torch

    return torch.randint(0, high, shape, generator=gen)


def torch_stack(xs):
    import torch

    return torch.stack(xs)


def accuracy(logits, y) -> float:
    return float((logits.argmax(1) == y).float().mean()) * 100


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--gate-epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] /
                    "samples" / "exits")
    args = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    data = splits()
    xtr, ytr = (torch.from_numpy(a) for a in data["train"])
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    gen = torch.Generator().manual_seed(SEED)
    weights = (0.6, 0.8, 1.0)  # deep supervision, the full model weighted most
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            xb = shifted(xtr[idx], gen)
            outs = model(xb)[:3]
            loss = sum(w * F.cross_entropy(o, ytr[idx]) for w, o in zip(weights, outs))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            model.eval()
            with torch.no_grad():
                xc, yc = (torch.from_numpy(a) for a in data["calib"])
                accs = [accuracy(o, yc) for o in model(xc)[:3]]
            print(f"epoch {epoch + 1}: loss {float(loss.detach()):.3f} calib acc "
                  + " ".join(f"{a:.1f}" for a in accs), flush=True)
    # gate: per exit, does that exit get the label right (on the frozen trunk)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.gate.parameters():
        p.requires_grad_(True)
    model.eval()
    with torch.no_grad():
        outs = model(xtr)
        target = torch.stack([(o.argmax(1) == ytr).float() for o in outs[:3]], 1)
    gopt = torch.optim.Adam(model.gate.parameters(), lr=5e-3)
    for _ in range(args.gate_epochs):
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            g = model(xtr[idx])[3]
            loss = F.binary_cross_entropy_with_logits(g, target[idx])
            gopt.zero_grad()
            loss.backward()
            gopt.step()
    report: dict = {"seed": SEED, "epochs": args.epochs, "exits": list(EXITS),
                    "sizes": {k: len(v[1]) for k, v in data.items()}, "float_accuracy": {}}
    with torch.no_grad():
        for split, (x, y) in data.items():
            outs = model(torch.from_numpy(x))
            report["float_accuracy"][split] = [round(accuracy(o, torch.from_numpy(y)), 2)
                                               for o in outs[:3]]
    print(json.dumps(report["float_accuracy"]))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "digits_exits.pt")
    torch.onnx.export(model, (torch.zeros(1, 1, 16, 16),), str(args.out / "digits_exits.onnx"),
                      input_names=["x"], output_names=[*EXITS, "gate"], opset_version=17,
                      dynamo=False)
    np.savez(args.out / "digits_calib.npz", x=data["calib"][0], label=data["calib"][1])
    np.savez(args.out / "digits_test.npz", x=data["test"][0], label=data["test"][1])
    # quantization ranges need few samples: the first 64 of the calibration split
    np.savez(args.out / "digits_quant.npz", x=data["calib"][0][:64])
    (args.out / "digits_exits.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
