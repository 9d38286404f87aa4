"""The committed models and graphs: tokenizer, parameter budget, ONNX entry graphs.

The ONNX files in samples/slm are what sdk.models.slm builds from the committed weights;
ONNX Runtime's past-KV step graph gives the float model's own logits (the baseline
tools/slm_eval.py and tools/bench_slm.py use)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SLM

import sdk
from sdk.errors import InputError
from sdk.models.slm import SLMConfig, decoder_onnx, encoder_onnx, load_weights


def test_tokenizer_round_trip_and_refusal():
    tok = sdk.G2PTokenizer()
    assert tok.vocab_size == 73
    ids = tok.encode_word("Don't")
    assert len(ids) == 5 and tok.encode_word("don't") == ids
    assert tok.decode(tok.encode_phonemes(["D", "OW1", "N", "T"])) == ["D", "OW", "N", "T"]
    with pytest.raises(InputError) as err:
        tok.encode_word("naïve")
    assert "\n" not in str(err.value) and "ï" in str(err.value)
    with pytest.raises(InputError, match="ARPAbet"):
        tok.encode_phonemes(["QX"])


def test_same_parameter_budget_and_split_by_word(heldout):
    import slm_data

    p = {k: json.loads((SLM / f"{k}.json").read_text())["params"] for k in ("encdec", "deconly")}
    assert abs(p["encdec"] - p["deconly"]) / p["deconly"] < 0.05
    assert p["encdec"] < 834_890  # g2p-en's GRU
    lex = slm_data.load_lexicon()
    train, valid, held = slm_data.split(lex)
    assert held == heldout and len(held) > 3000
    assert not set(train) & set(held) and not set(valid) & set(held)


@pytest.mark.parametrize("kind", ["encdec", "deconly"])
def test_committed_onnx_is_built_from_the_committed_weights(kind):
    cfg, w = load_weights(SLM / f"{kind}.npz")
    want = decoder_onnx(cfg, w, 1, "past")
    got = onnx.load(SLM / f"{kind}_decoder_step.onnx")
    assert got.graph.SerializeToString() == want.graph.SerializeToString()
    if cfg.encdec:
        assert onnx.load(SLM / f"{kind}_encoder.onnx").graph.SerializeToString() == \
            encoder_onnx(cfg, w).graph.SerializeToString()


@pytest.mark.parametrize("kind", ["encdec", "deconly"])
def test_ort_past_kv_steps_equal_the_full_causal_graph(kind):
    cfg, w = load_weights(SLM / f"{kind}.npz")
    from slm_eval import OrtGenerator

    g = OrtGenerator(cfg, w)
    ids = sdk.G2PTokenizer().encode_word("carrot")
    feeds, past, lg, pos = g.start(ids)
    toks = [int(np.argmax(lg))] + [40, 50, 60]
    steps = [lg]
    for t in toks[:-1]:
        lg, past = g._step(feeds, past, t, pos)
        steps.append(lg)
        pos += 1
    T = len(toks) if cfg.encdec else len(ids) + 1 + len(toks) - 1
    seq = ([1] + toks[:-1]) if cfg.encdec else (ids + [3] + toks[:-1])
    full = ort.InferenceSession(decoder_onnx(cfg, w, T, "full").SerializeToString())
    f = dict({k: v for k, v in feeds.items()}, tokens=np.asarray(seq, np.int64)[None],
             positions=np.arange(T, dtype=np.int64)[None])
    ref = full.run(["logits"], f)[0][0, -len(toks):]
    np.testing.assert_allclose(np.stack(steps), ref, atol=1e-4)


def test_rope_tables_rotate_by_position():
    cos, sin = SLMConfig.rope_tables(8, 24)
    assert cos.shape == sin.shape == (8, 24) and np.allclose(cos[0], 1) and np.allclose(sin[0], 0)
    assert np.allclose(cos ** 2 + sin ** 2, 1, atol=1e-6)


def test_the_builder_matches_the_torch_model():
    torch = pytest.importorskip("torch")
    import train_slm

    torch.manual_seed(3)
    for kind in ("encdec", "deconly"):
        cfg = SLMConfig.preset(kind)
        m = train_slm.G2PModel(cfg).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        w = m.export()
        S, T = cfg.max_src, 9
        src, mask = np.zeros((1, S), np.int64), np.zeros((1, S), np.int64)
        src[0, :6], mask[0, :6] = [5, 6, 7, 8, 9, 10], 1
        tgt = np.array([[1, 40, 41, 42, 50, 60, 61, 62, 70]], np.int64)
        with torch.no_grad():
            ref = m(torch.from_numpy(src), torch.from_numpy(mask), torch.from_numpy(tgt)).numpy()
        feeds = {"tokens": tgt, "positions": np.arange(T, dtype=np.int64)[None]}
        if cfg.encdec:
            e = ort.InferenceSession(encoder_onnx(cfg, w).SerializeToString())
            feeds.update(zip([o.name for o in e.get_outputs()],
                             e.run(None, {"input_ids": src, "attention_mask": mask})))
            feeds["enc_mask"] = mask
        d = ort.InferenceSession(decoder_onnx(cfg, w, T, "full").SerializeToString())
        np.testing.assert_allclose(d.run(["logits"], feeds)[0], ref, atol=1e-4)
