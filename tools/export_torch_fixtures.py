"""Export the PyTorch transformer fixtures under ``tests/fixtures/torch/`` (needs the ``train``
extra: ``pip install torch==2.13.0``; CI never runs this, it only reads the committed files).

Two models, built with fixed seeds and exported by the TorchScript-based exporter
(``torch.onnx.export(..., opset_version=17, dynamo=False)``; the default dynamo exporter of
torch 2.13 needs ``onnxscript``, which the SDK does not depend on):

* ``encoder.onnx``: a pre-LN BERT-style encoder. Inputs ``input_ids`` int64 [1, 16] and
  ``attention_mask`` int64 [1, 16] (1 = token, 0 = padding); learned token and position
  embeddings (the position table is gathered by a constant arange), 2 blocks of width 64 with
  4 heads, GELU FFN (erf form), ``nn.LayerNorm``; the additive mask is HF's
  ``(1 − mask)·finfo(float32).min``. Output ``hidden`` [1, 16, 64] (per token, after a final
  LayerNorm). Exported without constant folding, so the file keeps the Shape / Gather /
  ConstantOfShape / Equal / Where / Expand / Cast chains the SDK must fold.
* ``encoder_dynamic.onnx``: the same weights with dynamic batch and sequence axes.
* ``rope_block.onnx``: one pre-norm decoder block on float ``x`` [1, 16, 64]: RMSNorm spelled
  out (``x·rsqrt(mean(x²) + ε)·w``), q/k/v projections, rotary embedding with the
  rotate-half form (Slice, Neg, Concat), a constant causal mask, softmax attention, output
  projection, residual, RMSNorm, GELU MLP, residual.
* ``hf_style.onnx``: HF-BERT-like post-LN encoder (token + segment + position embeddings,
  hand-written LayerNorm, boolean mask into ``scaled_dot_product_attention``, tanh pooler on
  the first token: output ``pooled``).
* ``gpt_block.onnx``: GPT-2-like pre-LN block on float ``x`` [1, 16, 64] with
  ``attention_mask``: fused qkv + ``split``, ``masked_fill`` with a causal tril buffer and with
  ``attention_mask == 0``, tanh-approximate GELU.
* ``unsupported.onnx``: a tiny model with CumSum, TopK and Einsum, which the importer must
  refuse in one line naming all three.

Each ``.npz`` holds the inputs and the torch float outputs: ``*_calib.npz`` (calibration
samples, first axis = samples) and ``*_test.npz`` (held-out samples, with
``expected_<output>``; the encoder's also has padded masks, last tokens masked).

    .venv/bin/python tools/export_torch_fixtures.py [--out tests/fixtures/torch]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEQ, WIDTH, HEADS, VOCAB, BLOCKS = 16, 64, 4, 96, 2


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, rope: bool = False) -> None:
        super().__init__()
        self.h, self.d = heads, width // heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.rope = rope
        if rope:
            inv = 1.0 / (10000 ** (torch.arange(0, self.d, 2, dtype=torch.float32) / self.d))
            ang = torch.arange(SEQ, dtype=torch.float32)[:, None] * inv[None, :]
            ang = torch.cat([ang, ang], dim=-1)
            self.register_buffer("cos", ang.cos(), persistent=False)
            self.register_buffer("sin", ang.sin(), persistent=False)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(t.shape[0], t.shape[1], self.h, self.d).transpose(1, 2)

    @staticmethod
    def _rotate_half(t: torch.Tensor) -> torch.Tensor:
        half = t.shape[-1] // 2
        return torch.cat([-t[..., half:], t[..., :half]], dim=-1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        if self.rope:
            q = q * self.cos + self._rotate_half(q) * self.sin
            k = k * self.cos + self._rotate_half(k) * self.sin
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d)
        probs = torch.softmax(scores + bias, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2)
        ctx = ctx.reshape(x.shape[0], x.shape[1], self.h * self.d)
        return self.o(ctx)


class EncoderBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = Attention(WIDTH, HEADS)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), bias)
        return x + self.ff(self.ln2(x))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Embedding(SEQ, WIDTH)
        self.register_buffer("position_ids", torch.arange(SEQ)[None, :], persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock() for _ in range(BLOCKS))
        self.ln_f = nn.LayerNorm(WIDTH)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bsz, seq = input_ids.shape
        x = self.tok(input_ids) + self.pos(self.position_ids[:, :seq])
        keep = attention_mask[:, None, None, :].expand(bsz, 1, seq, seq).to(torch.float32)
        bias = (1.0 - keep) * torch.finfo(torch.float32).min
        for blk in self.blocks:
            x = blk(x, bias)
        return self.ln_f(x)


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class RopeBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.n1, self.n2 = RMSNorm(WIDTH), RMSNorm(WIDTH)
        self.attn = Attention(WIDTH, HEADS, rope=True)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))
        causal = torch.triu(torch.full((SEQ, SEQ), float("-inf")), diagonal=1)
        self.register_buffer("causal", causal[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.n1(x), self.causal)
        return x + self.ff(self.n2(x))


class HandLayerNorm(nn.Module):
    """LayerNorm written out, as older BERT code does (exports ReduceMean/Sub/Pow/Sqrt/Div)."""

    def __init__(self, width: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return self.weight * ((x - u) / torch.sqrt(s + self.eps)) + self.bias


class SdpaBlock(nn.Module):
    """Post-LN BERT layer with F.scaled_dot_product_attention and a boolean mask."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.o = nn.Linear(WIDTH, WIDTH)
        self.ln1, self.ln2 = HandLayerNorm(WIDTH), HandLayerNorm(WIDTH)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        ctx = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        x = self.ln1(x + self.o(ctx.transpose(1, 2).reshape(b, t, WIDTH)))
        return self.ln2(x + self.ff(x))


class HfStyleEncoder(nn.Module):
    """HF-BERT-like: token + segment (zeros) + position embeddings, hand-written LayerNorm,
    a boolean mask from ``attention_mask`` by masked_fill-free ``bool`` cast, SDPA, and a
    tanh pooler on the first token (``pooled`` output)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok, self.seg = nn.Embedding(VOCAB, WIDTH), nn.Embedding(2, WIDTH)
        self.pos = nn.Embedding(SEQ, WIDTH)
        self.ln = HandLayerNorm(WIDTH)
        self.blocks = nn.ModuleList(SdpaBlock() for _ in range(BLOCKS))
        self.pool = nn.Linear(WIDTH, WIDTH)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, t = input_ids.shape
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        seg = torch.zeros_like(input_ids)
        x = self.ln(self.tok(input_ids) + self.seg(seg) + self.pos(pos))
        keep = attention_mask[:, None, None, :].to(torch.bool).expand(b, 1, t, t)
        for blk in self.blocks:
            x = blk(x, keep)
        return torch.tanh(self.pool(x[:, 0]))


class GptBlock(nn.Module):
    """GPT-2-like pre-LN block on float ``x`` with a padding mask: fused qkv + torch.split,
    ``masked_fill`` with a constant causal tril buffer and with ``attention_mask == 0``
    (Where/Equal), tanh-approximate GELU (spelled out at opset 17)."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.o = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(approximate="tanh"),
                                nn.Linear(2 * WIDTH, WIDTH))
        self.register_buffer("tril", torch.tril(torch.ones(SEQ, SEQ, dtype=torch.bool)),
                             persistent=False)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // HEADS))
        att = att.masked_fill(~self.tril[:t, :t], float("-inf"))
        att = att.masked_fill(attention_mask[:, None, None, :] == 0, float("-inf"))
        y = (att.softmax(dim=-1) @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.o(y)
        return x + self.ff(self.ln2(x))


class Unsupported(nn.Module):
    """Ops the importer lacks (CumSum, TopK, Einsum) next to supported ones."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.lin(x)).cumsum(-1)
        top = torch.topk(h, 4, dim=-1).values
        return torch.einsum("bi,bj->bij", top, top).flatten(1)


def _randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial γ/β so the tests see them (fresh modules hold ones and zeros)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, RMSNorm, HandLayerNorm)):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def _export(model: nn.Module, args: tuple, names: list[str], path: Path, fold: bool) -> None:
    torch.onnx.export(model, args, str(path), input_names=names, output_names=["hidden"],
                      opset_version=17, dynamo=False, do_constant_folding=fold)


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, VOCAB, size=(n, 1, SEQ), dtype=np.int64)


def _masks(rng: np.random.Generator, n: int, full: bool) -> np.ndarray:
    m = np.ones((n, 1, SEQ), np.int64)
    if not full:
        for i in range(n):
            m[i, 0, SEQ - int(rng.integers(1, SEQ // 2)):] = 0
    return m


def _run(model: nn.Module, *arrays: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        outs = [model(*(torch.from_numpy(a[i]) for a in arrays)).numpy()
                for i in range(arrays[0].shape[0])]
    return np.stack(outs).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/torch")
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    enc = Encoder().eval()
    _randomise_norms(enc, gen)
    rng = np.random.default_rng(2)
    ids, mask = _ids(rng, 1)[0], np.ones((1, SEQ), np.int64)
    _export(enc, (torch.from_numpy(ids), torch.from_numpy(mask)), ["input_ids", "attention_mask"],
            out / "encoder.onnx", fold=False)
    # the same weights with dynamic batch and sequence axes (Shape chains stay in the file)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    torch.onnx.export(enc, (torch.from_numpy(ids), torch.from_numpy(mask)),
                      str(out / "encoder_dynamic.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["hidden"], opset_version=17, dynamo=False,
                      dynamic_axes=axes)
    # calibration: mostly full masks plus a few padded ones; test: held-out full and padded
    c_ids = _ids(rng, 24)
    c_mask = np.concatenate([_masks(rng, 16, True), _masks(rng, 8, False)])
    np.savez(out / "encoder_calib.npz", input_ids=c_ids, attention_mask=c_mask)
    t_ids = _ids(rng, 8)
    t_mask = np.concatenate([_masks(rng, 4, True), _masks(rng, 4, False)])
    np.savez(out / "encoder_test.npz", input_ids=t_ids, attention_mask=t_mask,
             expected_hidden=_run(enc, t_ids, t_mask))

    torch.manual_seed(3)
    blk = RopeBlock().eval()
    _randomise_norms(blk, gen)
    x = torch.randn(1, SEQ, WIDTH, generator=gen)
    _export(blk, (x,), ["x"], out / "rope_block.onnx", fold=True)
    c_x = rng.standard_normal((24, 1, SEQ, WIDTH)).astype(np.float32)
    np.savez(out / "rope_block_calib.npz", x=c_x)
    t_x = rng.standard_normal((8, 1, SEQ, WIDTH)).astype(np.float32)
    np.savez(out / "rope_block_test.npz", x=t_x, expected_hidden=_run(blk, t_x))
    torch.manual_seed(5)
    hf = HfStyleEncoder().eval()
    _randomise_norms(hf, gen)
    torch.onnx.export(hf, (torch.from_numpy(ids), torch.from_numpy(mask)), str(out / "hf_style.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["pooled"],
                      opset_version=17, dynamo=False, do_constant_folding=True)
    np.savez(out / "hf_style_calib.npz", input_ids=c_ids, attention_mask=c_mask)
    np.savez(out / "hf_style_test.npz", input_ids=t_ids, attention_mask=t_mask,
             expected_pooled=_run(hf, t_ids, t_mask))

    torch.manual_seed(6)
    gpt = GptBlock().eval()
    _randomise_norms(gpt, gen)
    torch.onnx.export(gpt, (x, torch.from_numpy(mask)), str(out / "gpt_block.onnx"),
                      input_names=["x", "attention_mask"], output_names=["hidden"],
                      opset_version=17, dynamo=False, do_constant_folding=True)
    g_x = rng.standard_normal((24, 1, SEQ, WIDTH)).astype(np.float32)
    np.savez(out / "gpt_block_calib.npz", x=g_x, attention_mask=c_mask)
    g_tx = rng.standard_normal((8, 1, SEQ, WIDTH)).astype(np.float32)
    np.savez(out / "gpt_block_test.npz", x=g_tx, attention_mask=t_mask,
             expected_hidden=_run(gpt, g_tx, t_mask))

    torch.manual_seed(4)
    _export(Unsupported().eval(), (torch.randn(1, 8),), ["x"], out / "unsupported.onnx", fold=True)
    for p in sorted(out.iterdir()):
        print(f"{p}  {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
