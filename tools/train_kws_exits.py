"""Keyword spotting, exits over depth: a classifier head after the LMU block of the committed
streaming non-spiking LMUFormer (samples/kws/models/kws_lmuformer_nonspiking.npz, read-only,
frozen), so a clip whose decision is already clear there skips the channel-mixing MLP
(``mix_1``, ``mix_2``, the final head: 33.5 k of the 67 k MACs per hop).

    nice -n 10 .venv/bin/python tools/train_kws_exits.py        # ~1-2 min, one thread

The head reads what the MLP reads (``a1 = ReLU(y1)``, 64 channels) and, like the final head,
gives frame logits whose running sum over the clip is the decision:
``exit_logits = a1 @ W^T + b`` (12 x 64 + 12). The decision uses the clip sum, so the head is
trained on the clip mean of ``a1`` (cross-entropy against the label plus the KL divergence to
the final head's clip-mean distribution, ``--kl``) over the training voices of the generated
dataset (tools/kws_dataset.py, ``data/kws``), float NumPy trunk. Seeded, one torch thread.
Writes ``samples/exits/kws_depth_head.npz`` (``w`` [12, 64], ``b`` [12]) and ``.json``
(validation accuracy of the head and of the full model on clip means, the command).
``tools/bench_exit.py --kws-only`` compiles the step graph with the head as a second output
(:func:`kws_exit_step_onnx` here), calibrates the integer margin threshold on the
validation voices and measures the held-out test voices.
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

import kws_dataset

import sdk
from sdk.models import LMUFormerWeights
from sdk.models.lmuformer import initial_state, lmuformer_step

MODEL = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.npz"
HEAD = ROOT / "samples" / "exits" / "kws_depth_head.npz"
assert sdk.__version__


def kws_exit_step_onnx(model: LMUFormerWeights, head: dict[str, np.ndarray],
                       batch: int | None = 1):
    """The step graph of :func:`sdk.models.build_step_onnx` plus the output ``exit_logits``
    [batch, K] = Gemm(a1, w, b) on the MLP's input (the ReLU in front of ``w_1``)."""
    from onnx import TensorProto, checker, helper, numpy_helper

    from sdk.models import build_step_onnx

    m = build_step_onnx(model, batch=batch)
    g = m.graph
    names = {i.name for i in g.initializer}
    gemm = next(n for n in g.node if n.op_type == "Gemm" and n.input[1].startswith("w_1_")
                and n.input[1] in names)
    a1 = gemm.input[0]
    g.initializer.extend([numpy_helper.from_array(head["w"].astype(np.float32), "exit_w"),
                          numpy_helper.from_array(head["b"].astype(np.float32), "exit_b")])
    g.node.append(helper.make_node("Gemm", [a1, "exit_w", "exit_b"], ["exit_logits"],
                                   name="exit_head", transB=1))
    b = batch if batch is not None else "batch"
    g.output.insert(1, helper.make_tensor_value_info("exit_logits", TensorProto.FLOAT,
                                                     [b, model.config.n_classes]))
    checker.check_model(m)
    return m


def clip_features(model: LMUFormerWeights, feats: np.ndarray, batch: int = 1000
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Clip means of a1 [N, 64] and of the final frame logits [N, K] (float trunk)."""
    a1s, lgs = [], []
    for i in range(0, len(feats), batch):
        f = feats[i:i + batch]
        state = initial_state(model.config, batch=len(f))
        a_sum = 0.0
        l_sum = 0.0
        for t in range(f.shape[1]):
            logits, state, acts = lmuformer_step(model, f[:, t], state)
            a_sum = a_sum + acts["v_mix_in"]
            l_sum = l_sum + logits
        a1s.append(a_sum / f.shape[1])
        lgs.append(l_sum / f.shape[1])
    return np.concatenate(a1s).astype(np.float32), np.concatenate(lgs).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1500)
    ap.add_argument("--kl", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HEAD))
    a = ap.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ModuleNotFoundError:  # pragma: no cover - the train extra
        sys.exit("tools/train_kws_exits.py needs torch: .venv/bin/pip install -e '.[train]'")
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    folder = ROOT / "data" / "kws" / kws_dataset.DatasetConfig(seed=0).key()
    if not (folder / "meta.json").is_file():
        sys.exit("the KWS dataset is not generated: python tools/kws_dataset.py --out data/kws "
                 "--seed 0")
    model = LMUFormerWeights.load(MODEL)
    data = {s: kws_dataset.load_features(folder, s) for s in ("train", "val")}
    feats = {s: clip_features(model, x) for s, (x, _) in data.items()}
    print(f"trunk over {sum(len(x) for x, _ in data.values())} clips in "
          f"{time.time() - t0:.0f} s", flush=True)
    c, k = model.config.d_model, model.config.n_classes
    lin = torch.nn.Linear(c, k)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    x = torch.from_numpy(feats["train"][0])
    t = torch.from_numpy(feats["train"][1])
    y = torch.from_numpy(data["train"][1].astype(np.int64))
    xv = torch.from_numpy(feats["val"][0])
    yv = data["val"][1]
    for ep in range(a.epochs):
        z = lin(x)
        loss = F.cross_entropy(z, y) + a.kl * F.kl_div(
            F.log_softmax(z, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        if ep % 250 == 249:
            with torch.no_grad():
                acc = float((lin(xv).argmax(-1).numpy() == yv).mean() * 100)
            print(f"epoch {ep + 1}: loss {float(loss.detach()):.4f}, val acc {acc:.2f}",
                  flush=True)
    with torch.no_grad():
        head_acc = float((lin(xv).argmax(-1).numpy() == yv).mean() * 100)
    full_acc = float((feats["val"][1].argmax(-1) == yv).mean() * 100)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, w=lin.weight.detach().numpy().astype(np.float32),
             b=lin.bias.detach().numpy().astype(np.float32))
    meta = {"model": "samples/kws/models/kws_lmuformer_nonspiking.npz",
            "head": "a1 (MLP input, 64) -> Linear(64, 12), frame logits summed over the clip",
            "val_clip_accuracy": {"exit_head": round(head_acc, 2), "full": round(full_acc, 2)},
            "kl": a.kl, "epochs": a.epochs, "seed": a.seed, "torch": torch.__version__,
            "seconds": round(time.time() - t0),
            "command": " ".join(["tools/train_kws_exits.py", *(argv or sys.argv[1:])])}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta["val_clip_accuracy"]), f"wrote {out} in {time.time() - t0:.0f} s",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
