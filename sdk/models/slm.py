"""The G2P small language models of ``samples/slm`` as ONNX entry graphs (torch-free).

Weights come from ``samples/slm/<model>.npz`` (written by tools/train_slm.py; matrices stored
[in, out], one embedding table ``emb`` tied between inputs and the output projection). The
graphs are written with ``onnx.helper`` so every Reshape keeps the batch and token axes as
``0`` (one integer graph then serves any number of tokens) and the tensors the KV cache
needs carry fixed names:

* ``encoder_onnx``: ``input_ids`` / ``attention_mask`` int64 [1, S] → per decoder layer ``j``
  the cross-attention keys and values ``cross_k{j}`` / ``cross_v{j}`` [1, KVH, S, dh]
  (computed once per input).
* ``decoder_onnx``: ``tokens`` / ``positions`` int64 [1, T] (+ the cross K/V and
  ``enc_mask`` for the encoder-decoder) → ``logits`` [1, T, V]. ``mode="full"``: causal
  self-attention over its own T tokens (a constant −1e9 upper triangle), self-attention
  rows named ``k{j}_rows`` / ``v{j}_rows`` [1, KVH, T, dh] (keys after RoPE) and scores
  ``self{j}_scores``: what :func:`sdk.add_kv_cache` turns into a cached step graph after
  integer compilation. ``mode="past"``: ONNX Runtime's usual past-KV form (``past_k{j}``
  inputs of any length, ``present_k{j}`` outputs), for the float baseline.

RoPE is the rotate-half form on ``dh`` channels, base 10000, its cos/sin tables gathered by
``positions``; GQA repeats the KVH key/value heads (query head ``h`` reads ``h % KVH``); the
1/√dh scale is folded into the query weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SLMConfig:
    vocab: int = 73
    d: int = 96
    heads: int = 4
    kv_heads: int = 2
    ff: int = 192
    enc_layers: int = 4
    dec_layers: int = 2
    max_src: int = 20      # encoder input capacity (tokens); 0 for decoder-only
    capacity: int = 24     # decoder self-attention KV cache capacity (tokens)
    eps: float = 1e-5

    @property
    def dh(self) -> int:
        return self.d // self.heads

    @property
    def encdec(self) -> bool:
        return self.enc_layers > 0

    @staticmethod
    def preset(name: str) -> SLMConfig:
        if name == "encdec":
            return SLMConfig()
        if name == "deconly":
            return SLMConfig(enc_layers=0, dec_layers=7, max_src=20, capacity=48)
        raise ValueError(f"no SLM preset {name!r}; choose encdec or deconly")

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> SLMConfig:
        return SLMConfig(**d)

    @staticmethod
    def rope_tables(n: int, dh: int) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin [n, dh] of the rotate-half RoPE (base 10000), float32."""
        inv = 1.0 / (10000.0 ** (np.arange(0, dh, 2, dtype=np.float64) / dh))
        ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
        ang = np.concatenate([ang, ang], -1)
        return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    def params(self, weights: dict[str, np.ndarray]) -> int:
        return int(sum(v.size for v in weights.values()))


def load_weights(path: str | Path) -> tuple[SLMConfig, dict[str, np.ndarray]]:
    """``<model>.npz`` and its ``<model>.json`` (config) → (config, weights)."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as z:
        w = {k: z[k].astype(np.float32) for k in z.files}
    return SLMConfig.from_json(meta["config"]), w


class _Builder:
    def __init__(self, cfg: SLMConfig, w: dict[str, np.ndarray]) -> None:
        from onnx import helper, numpy_helper

        self.h, self.nh = helper, numpy_helper
        self.cfg, self.w = cfg, w
        self.nodes, self.inits, self.n = [], [], 0
        self._consts: dict[str, str] = {}

    def const(self, value, name: str | None = None) -> str:
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def shared(self, key: str, value) -> str:
        if key not in self._consts:
            self._consts[key] = self.const(value, key)
        return self._consts[key]

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        self.n += 1
        out = out or f"{op.lower()}_{self.n}"
        self.nodes.append(self.h.make_node(op, inputs, [out], name=f"{op}_{self.n}", **attrs))
        return out

    def matmul(self, x: str, key: str, scale: float = 1.0, out: str | None = None) -> str:
        return self.node("MatMul", [x, self.shared(key, (self.w[key] * scale).astype(np.float32))],
                         out)

    def rmsnorm(self, x: str, key: str) -> str:
        sq = self.node("Mul", [x, x])
        m = self.node("ReduceMean", [sq], axes=[-1], keepdims=1)
        r = self.node("Sqrt", [self.node("Add", [m, self.shared("eps", np.float32(self.cfg.eps))])])
        return self.node("Mul", [self.node("Div", [x, r]), self.shared(key, self.w[key])])

    def heads(self, x: str, n: int, out: str | None = None) -> str:
        r = self.node("Reshape", [x, self.shared(f"shape_h{n}", np.array(
            [0, 0, n, self.cfg.dh], np.int64))])
        return self.node("Transpose", [r], out, perm=[0, 2, 1, 3])

    def merge(self, x: str) -> str:
        t = self.node("Transpose", [x], perm=[0, 2, 1, 3])
        return self.node("Reshape", [t, self.shared("shape_merge", np.array(
            [0, 0, self.cfg.heads * self.cfg.dh], np.int64))])

    def rope(self, x: str, cos: str, sin: str, out: str | None = None) -> str:
        half = self.cfg.dh // 2
        lo = self.node("Slice", [x, self.shared("s0", np.array([0], np.int64)),
                                 self.shared("shalf", np.array([half], np.int64)),
                                 self.shared("s3", np.array([3], np.int64))])
        hi = self.node("Slice", [x, self.shared("shalf", None), self.shared(
            "sdh", np.array([self.cfg.dh], np.int64)), self.shared("s3", None)])
        rot = self.node("Concat", [self.node("Neg", [hi]), lo], axis=-1)
        return self.node("Add", [self.node("Mul", [x, cos]), self.node("Mul", [rot, sin])], out)

    def tile_kv(self, x: str) -> str:
        g = self.cfg.heads // self.cfg.kv_heads
        return x if g == 1 else self.node("Concat", [x] * g, axis=1)

    def attend(self, q: str, k: str, v: str, bias: str | None, scores: str | None = None) -> str:
        kt = self.node("Transpose", [self.tile_kv(k)], perm=[0, 1, 3, 2])
        s = self.node("MatMul", [q, kt], scores)
        if bias is not None:
            s = self.node("Add", [s, bias])
        p = self.node("Softmax", [s], axis=-1)
        return self.merge(self.node("MatMul", [p, self.tile_kv(v)]))

    def rope_from_positions(self, positions: str, n: int) -> tuple[str, str]:
        cos, sin = SLMConfig.rope_tables(n, self.cfg.dh)
        out = []
        for name, table in (("rope_cos", cos), ("rope_sin", sin)):
            g = self.node("Gather", [self.const(table, name), positions], axis=0)
            out.append(self.node("Unsqueeze", [g, self.shared("ax1", np.array([1], np.int64))]))
        return out[0], out[1]

    def mlp(self, x: str, p: str) -> str:
        h = self.rmsnorm(x, f"{p}.n2")
        return self.node("Add", [x, self.matmul(self.node("Relu", [self.matmul(h, f"{p}.f1")]),
                                                f"{p}.f2")])

    def model(self, name: str, inputs, outputs):
        from onnx import checker, helper

        g = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        checker.check_model(m)
        return m


def _io(name: str, dtype: str, shape: list):
    from onnx import TensorProto, helper

    t = {"int64": TensorProto.INT64, "float32": TensorProto.FLOAT}[dtype]
    return helper.make_tensor_value_info(name, t, shape)


def encoder_onnx(cfg: SLMConfig, w: dict[str, np.ndarray], src_len: int | None = None):
    """The encoder entry: input_ids, attention_mask [1, S] → cross_k{j} / cross_v{j}."""
    if not cfg.encdec:
        raise ValueError("a decoder-only model has no encoder")
    S = src_len or cfg.max_src
    b = _Builder(cfg, w)
    scale = 1.0 / np.sqrt(cfg.dh)
    cos, sin = SLMConfig.rope_tables(S, cfg.dh)
    cos_c, sin_c = b.const(cos[None, None], "enc_cos"), b.const(sin[None, None], "enc_sin")
    x = b.node("Gather", [b.shared("emb", w["emb"]), "input_ids"], axis=0)
    keep = b.node("Cast", [b.node("Unsqueeze", ["attention_mask", b.shared(
        "ax12", np.array([1, 2], np.int64))])], to=1)
    bias = b.node("Mul", [b.node("Sub", [b.const(np.float32(1.0)), keep]),
                          b.const(np.float32(-1e9))])
    for i in range(cfg.enc_layers):
        p = f"enc.{i}"
        h = b.rmsnorm(x, f"{p}.n1")
        q = b.rope(b.heads(b.matmul(h, f"{p}.q", scale), cfg.heads), cos_c, sin_c)
        k = b.rope(b.heads(b.matmul(h, f"{p}.k"), cfg.kv_heads), cos_c, sin_c)
        v = b.heads(b.matmul(h, f"{p}.v"), cfg.kv_heads)
        x = b.node("Add", [x, b.matmul(b.attend(q, k, v, bias), f"{p}.o")])
        x = b.mlp(x, p)
    mem = b.rmsnorm(x, "enc.norm")
    outs = []
    for j in range(cfg.dec_layers):
        for n in "kv":
            b.heads(b.matmul(mem, f"dec.{j}.c{n}"), cfg.kv_heads, f"cross_{n}{j}")
            outs.append(_io(f"cross_{n}{j}", "float32", [1, cfg.kv_heads, S, cfg.dh]))
    return b.model("encoder", [_io("input_ids", "int64", [1, S]),
                               _io("attention_mask", "int64", [1, S])], outs)


def decoder_onnx(cfg: SLMConfig, w: dict[str, np.ndarray], tokens: int, mode: str = "full",
                 src_len: int | None = None, present: bool = False):
    """The decoder over ``tokens`` new tokens (see the module docstring for ``mode``);
    ``present`` adds the self-attention rows as outputs ``present_k{j}`` (ONNX Runtime's
    prefill form)."""
    if mode not in ("full", "past"):
        raise ValueError(f"mode must be full or past, not {mode!r}")
    T, S = tokens, src_len or cfg.max_src
    b = _Builder(cfg, w)
    scale = 1.0 / np.sqrt(cfg.dh)
    inputs = [_io("tokens", "int64", [1, T]), _io("positions", "int64", [1, T])]
    outs = [_io("logits", "float32", [1, T, cfg.vocab])]
    cos, sin = b.rope_from_positions("positions", max(cfg.capacity, T))
    self_bias = None
    if mode == "full" and T > 1:
        self_bias = b.const(np.triu(np.full((T, T), -1e9, np.float32), 1)[None, None], "causal")
    cross_bias = None
    if cfg.encdec:
        inputs.append(_io("enc_mask", "int64", [1, S]))
        keep = b.node("Cast", [b.node("Unsqueeze", ["enc_mask", b.shared(
            "ax12", np.array([1, 2], np.int64))])], to=1)
        cross_bias = b.node("Mul", [b.node("Sub", [b.const(np.float32(1.0)), keep]),
                                    b.const(np.float32(-1e9))])
    x = b.node("Gather", [b.shared("emb", w["emb"]), "tokens"], axis=0)
    for j in range(cfg.dec_layers):
        p = f"dec.{j}"
        h = b.rmsnorm(x, f"{p}.n1")
        q = b.rope(b.heads(b.matmul(h, f"{p}.q", scale), cfg.heads), cos, sin)
        k = b.rope(b.heads(b.matmul(h, f"{p}.k"), cfg.kv_heads), cos, sin, f"k{j}_rows")
        v = b.heads(b.matmul(h, f"{p}.v"), cfg.kv_heads, f"v{j}_rows")
        if mode == "past":
            for n, rows in (("k", k), ("v", v)):
                inputs.append(_io(f"past_{n}{j}", "float32", [1, cfg.kv_heads, "past", cfg.dh]))
                b.node("Concat", [f"past_{n}{j}", rows], f"present_{n}{j}", axis=2)
            k, v = f"present_k{j}", f"present_v{j}"
        if mode == "past" or present:
            for n in "kv":
                outs.append(_io(f"present_{n}{j}", "float32", [1, cfg.kv_heads, None, cfg.dh]))
        if present and mode == "full":
            b.node("Identity", [k], f"present_k{j}")
            b.node("Identity", [v], f"present_v{j}")
        x = b.node("Add", [x, b.matmul(b.attend(q, k, v, self_bias, f"self{j}_scores"),
                                       f"{p}.o")])
        if cfg.encdec:
            for n in "kv":
                inputs.append(_io(f"cross_{n}{j}", "float32", [1, cfg.kv_heads, S, cfg.dh]))
            hc = b.rmsnorm(x, f"{p}.nc")
            qc = b.heads(b.matmul(hc, f"{p}.cq", scale), cfg.heads)
            x = b.node("Add", [x, b.matmul(b.attend(qc, f"cross_k{j}", f"cross_v{j}",
                                                    cross_bias), f"{p}.co")])
        x = b.mlp(x, p)
    y = b.rmsnorm(x, "dec.norm")
    b.node("MatMul", [y, b.shared("emb_t", np.ascontiguousarray(w["emb"].T))], "logits")
    return b.model("decoder", inputs, outs)


__all__ = ["SLMConfig", "decoder_onnx", "encoder_onnx", "load_weights"]
