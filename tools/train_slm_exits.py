"""Train the per-token exit head of the encoder-decoder G2P model (samples/slm/encdec.npz,
read-only): an RMSNorm gain on the residual stream after decoder layer 0, feeding the tied
output embedding (CALM / DYNAMAX's shared output layer with a small trained norm).

    nice -n 10 .venv/bin/python tools/train_slm_exits.py          # ~1-3 min, one thread

Data: ``--words`` training words of tools/slm_data.py (never the validation or held-out
words), teacher-forced through the float model in ONNX Runtime
(``sdk.exits.lm.decoder_exit_onnx(..., expose_hidden=True)``): the hidden state after layer 0
and the final model's logits at every target position. Loss: cross-entropy against the
gold next phoneme plus the KL divergence to the final layer's distribution (``--kl``); only
the gain (96 numbers, initialised from the final ``dec.norm``) is trained; ``--proj`` adds a
d x d projection (identity-initialised). Seeded, one torch thread. Writes
``samples/exits/g2p_exit_head.npz`` (``exit0.norm`` [, ``exit0.proj``]) and ``.json``
(losses, agreement with the final layer on validation words, the command).
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

import slm_data

import sdk
from sdk.exits.lm import decoder_exit_onnx
from sdk.models.slm import encoder_onnx, load_weights
from sdk.text import BOS, EOS

try:
    import torch
    import torch.nn.functional as F
except ModuleNotFoundError:  # pragma: no cover - the train extra
    sys.exit("tools/train_slm_exits.py needs torch: .venv/bin/pip install -e '.[train]'")

assert sdk.__version__


def teacher_forced(cfg, w, words, lex):
    """Hidden state after layer 0 [N, d], final logits [N, V], gold next ids [N]."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    C, S = cfg.capacity, cfg.max_src
    heads = {0: {"norm": w["dec.norm"]}}
    dec = ort.InferenceSession(decoder_exit_onnx(cfg, w, C, heads, expose_hidden=True)
                               .SerializeToString(), so, providers=["CPUExecutionProvider"])
    enc = ort.InferenceSession(encoder_onnx(cfg, w).SerializeToString(), so,
                               providers=["CPUExecutionProvider"])
    enc_names = [o.name for o in enc.get_outputs()]
    tok = sdk.G2PTokenizer()
    hs, ls, ys = [], [], []
    for word in words:
        src = tok.encode_word(word)[:S]
        tgt = tok.encode_phonemes(lex[word][0])
        x = np.zeros((1, S), np.int64)
        m = np.zeros((1, S), np.int64)
        x[0, :len(src)], m[0, :len(src)] = src, 1
        cross = dict(zip(enc_names, enc.run(None, {"input_ids": x, "attention_mask": m})))
        seq = [BOS] + tgt
        gold = tgt + [EOS]
        n = min(len(seq), C)
        t = np.zeros((1, C), np.int64)
        t[0, :n] = seq[:n]
        out = dec.run(["hidden0", "logits"], dict(cross, enc_mask=m, tokens=t,
                                                  positions=np.arange(C)[None]))
        hs.append(out[0][0, :n])
        ls.append(out[1][0, :n])
        ys.append(np.asarray(gold[:n]))
    return np.concatenate(hs), np.concatenate(ls), np.concatenate(ys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "samples" / "slm" / "encdec.npz"))
    ap.add_argument("--words", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--kl", type=float, default=1.0, help="weight of the KL to the final layer")
    ap.add_argument("--proj", action="store_true", help="also train a d x d projection")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "samples" / "exits"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    cfg, w = load_weights(a.model)
    lex = slm_data.load_lexicon()
    train, valid, _ = slm_data.split(lex)
    rng = np.random.default_rng(a.seed)
    words = [train[i] for i in sorted(rng.choice(len(train), a.words, replace=False))]
    h, lg, y = teacher_forced(cfg, w, words, lex)
    hv, lgv, yv = teacher_forced(cfg, w, valid, lex)
    print(f"{len(y)} training / {len(yv)} validation positions in {time.time() - t0:.0f} s",
          flush=True)
    emb = torch.from_numpy(w["emb"])
    gain = torch.nn.Parameter(torch.from_numpy(w["dec.norm"].copy()))
    params = [gain]
    proj = None
    if a.proj:
        proj = torch.nn.Parameter(torch.eye(cfg.d))
        params.append(proj)
    opt = torch.optim.Adam(params, lr=1e-2)

    def head(x: torch.Tensor) -> torch.Tensor:
        u = x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.eps) * gain
        if proj is not None:
            u = u @ proj
        return u @ emb.T

    H, T, Y = torch.from_numpy(h), torch.from_numpy(lg), torch.from_numpy(y)
    Hv, Tv, Yv = torch.from_numpy(hv), torch.from_numpy(lgv), torch.from_numpy(yv)
    gen = torch.Generator().manual_seed(a.seed)
    log = []
    for ep in range(a.epochs):
        perm = torch.randperm(len(Y), generator=gen)
        tot = 0.0
        for i in range(0, len(Y), 512):
            idx = perm[i:i + 512]
            z = head(H[idx])
            loss = F.cross_entropy(z, Y[idx])
            if a.kl:
                loss = loss + a.kl * F.kl_div(F.log_softmax(z, -1),
                                              F.log_softmax(T[idx], -1), log_target=True,
                                              reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
        with torch.no_grad():
            zv = head(Hv)
            agree = float((zv.argmax(-1) == Tv.argmax(-1)).float().mean() * 100)
            acc = float((zv.argmax(-1) == Yv).float().mean() * 100)
        log.append({"epoch": ep + 1, "loss": round(tot / len(Y), 4),
                    "val_agree_final": round(agree, 2), "val_acc": round(acc, 2)})
        if ep % 5 == 4 or ep == a.epochs - 1:
            print(log[-1], flush=True)
    with torch.no_grad():
        final_acc = float((Tv.argmax(-1) == Yv).float().mean() * 100)
        untrained = Hv / torch.sqrt((Hv * Hv).mean(-1, keepdim=True) + cfg.eps) * \
            torch.from_numpy(w["dec.norm"])
        base_agree = float(((untrained @ emb.T).argmax(-1) == Tv.argmax(-1)).float().mean()
                           * 100)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"exit0.norm": gain.detach().numpy().astype(np.float32)}
    if proj is not None:
        arrays["exit0.proj"] = proj.detach().numpy().astype(np.float32)
    np.savez(out / "g2p_exit_head.npz", **arrays)
    meta = {"model": "samples/slm/encdec.npz", "exit_after_layer": 0, "words": a.words,
            "positions": len(Y), "kl": a.kl, "proj": a.proj, "seed": a.seed,
            "val_teacher_forced": {"final_layer_acc": round(final_acc, 2),
                                   "head_acc": log[-1]["val_acc"],
                                   "head_agrees_with_final": log[-1]["val_agree_final"],
                                   "untrained_norm_agrees_with_final": round(base_agree, 2)},
            "log": log, "torch": torch.__version__, "seconds": round(time.time() - t0),
            "command": " ".join(["tools/train_slm_exits.py", *(argv or sys.argv[1:])])}
    (out / "g2p_exit_head.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta["val_teacher_forced"]), flush=True)
    print(f"wrote {out}/g2p_exit_head.{{npz,json}} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
