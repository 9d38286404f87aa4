"""KV-cached integer generation with the committed G2P models (samples/slm).

The central property: each token's logits from the cached decoder step (one token per call,
K/V rows written into the fixed-capacity int8 cache at the position) equal, bit for bit,
the logits of the compiled decoder recomputing the whole prefix without a cache
(``decoder_full``: the same integer graph before the cache transform, causal mask constant).
"""

from __future__ import annotations

import numpy as np
import pytest

import sdk
from sdk.errors import InputError


def _step_logits(gs, ids, tokens):
    feeds, state, lg = gs.start(ids)
    out = [lg]
    for t in tokens[:-1]:
        out.append(gs._decode(feeds, [t], state))
    return np.stack(out)


@pytest.mark.parametrize("kind", ["encdec", "deconly"])
def test_cached_steps_equal_recomputing_the_full_prefix_bit_for_bit(kind, request, heldout):
    gs = request.getfixturevalue(kind)
    tok = sdk.G2PTokenizer()
    checked = 0
    for word in heldout[::400][:5]:
        ids = tok.encode_word(word)
        g = gs.generate(ids)
        seq = g.tokens + ([gs.eos] if g.finished == "stop" else [])
        step = _step_logits(gs, ids, seq)
        full = gs.full_logits(ids, seq[:-1])
        assert step.dtype.kind == "i" and step.shape == full.shape == (len(seq), gs.vocab)
        assert np.array_equal(step, full), word
        checked += len(seq)
    assert checked >= 20


def test_numpy_specification_and_numba_agree_on_every_token(encdec, heldout):
    spec = sdk.GenerationSession(encdec.bundle, fast=False)
    tok = sdk.G2PTokenizer()
    ids = tok.encode_word(heldout[7])
    g = encdec.generate(ids)
    assert spec.generate(ids).tokens == g.tokens
    seq = g.tokens[:4]
    assert np.array_equal(_step_logits(spec, ids, seq), _step_logits(encdec, ids, seq))


def test_the_caches_are_int8_state_of_the_compiled_capacity(encdec, deconly):
    for gs, cap in ((encdec, 24), (deconly, 48)):
        decls = gs.step.state_decls
        assert len(decls) == 2 * len([d for d in decls if d.input.startswith("k_cache")])
        assert {d.kind for d in decls} == {"kv_cache"} and {d.capacity for d in decls} == {cap}
        assert {d.dtype for d in decls} == {"int8"}
        ops = {n.op for n in gs.step.graph.nodes}
        assert {"KVCacheWrite", "CausalMask", "Shiftmax", "IRMSNorm", "QMatMul"} <= ops
        assert "Softmax" not in ops and "MatMul" not in ops
        # the table lookups (embedding, RoPE rows, mask bias) live in their own entry
        assert "Gather" not in ops
        assert {n.op for n in gs._lookup["decoder_step"].graph.nodes} == {"Gather"}
    # the encoder runs once per input: its entry holds no cache
    assert not encdec.encoder.state_decls


def test_input_past_the_encoder_capacity_is_one_line(encdec):
    with pytest.raises(InputError) as err:
        encdec.generate(list(range(5, 5 + 21)))
    msg = str(err.value)
    assert "\n" not in msg and "21 tokens" in msg and "at most 20" in msg


def test_prompt_past_the_cache_is_one_line(deconly):
    with pytest.raises(InputError) as err:
        deconly.generate([5] * 47)
    assert "\n" not in str(err.value) and "48" in str(err.value)


@pytest.mark.parametrize("kind", ["encdec", "deconly"])
def test_max_new_tokens_past_the_capacity_is_refused_before_generating(kind, request):
    gs = request.getfixturevalue(kind)
    ids = sdk.G2PTokenizer().encode_word("cat")
    room = gs.capacity - (1 if kind == "encdec" else len(ids) + 1) + 1
    assert len(gs.generate(ids, sdk.GenerationConfig(max_new_tokens=room)).tokens) <= room
    with pytest.raises(InputError, match=f"max_new_tokens={room + 1} does not fit"):
        gs.generate(ids, sdk.GenerationConfig(max_new_tokens=room + 1))
    # the step itself refuses a write past the end, in one line
    feeds, state, _ = gs.start(ids)
    while state.position < gs.capacity:
        gs._decode(feeds, [5], state)
    with pytest.raises(InputError) as err:
        gs._decode(feeds, [5], state)
    assert "\n" not in str(err.value) and f"holds {gs.capacity} tokens" in str(err.value)


def test_max_new_tokens_and_stop_tokens(encdec):
    tok = sdk.G2PTokenizer()
    ids = tok.encode_word("understanding")
    full = encdec.generate(ids).tokens
    assert len(full) >= 4
    cut = encdec.generate(ids, sdk.GenerationConfig(max_new_tokens=3))
    assert cut.tokens == full[:3] and cut.finished == "max_new_tokens"
    stop = full[2]
    got = encdec.generate(ids, sdk.GenerationConfig(stop_tokens=(stop,))).tokens
    assert got == full[:full.index(stop)]


def test_stream_yields_what_generate_returns(deconly):
    ids = sdk.G2PTokenizer().encode_word("pronunciation")
    assert list(deconly.stream(ids)) == deconly.generate(ids).tokens


def test_sampling_is_seeded_and_top_k_1_is_greedy(encdec, heldout):
    tok = sdk.G2PTokenizer()
    words = heldout[100:106]
    greedy = [encdec.generate(tok.encode_word(w)).tokens for w in words]
    one = sdk.GenerationConfig(strategy="sample", top_k=1, seed=3)
    assert [encdec.generate(tok.encode_word(w), one).tokens for w in words] == greedy
    hot = {"strategy": "sample", "temperature": 2.0, "top_p": 0.95}
    a = [encdec.generate(tok.encode_word(w), sdk.GenerationConfig(seed=1, **hot)).tokens
         for w in words]
    b = [encdec.generate(tok.encode_word(w), sdk.GenerationConfig(seed=1, **hot)).tokens
         for w in words]
    c = [encdec.generate(tok.encode_word(w), sdk.GenerationConfig(seed=2, **hot)).tokens
         for w in words]
    assert a == b and a != c
    with pytest.raises(InputError, match="top_p"):
        encdec.generate(tok.encode_word("cat"), sdk.GenerationConfig(strategy="sample", top_p=0))


def _score(gs, ids, tokens, length_penalty=1.0):
    """Length-normalised log-probability of ``tokens`` + ``</s>`` under the integer model."""
    seq = list(tokens) + [gs.eos]
    lg = _step_logits(gs, ids, seq).astype(np.float64)
    z = (lg - gs._logit_zp) * gs._logit_scale
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(logp[np.arange(len(seq)), seq].sum()) / len(seq) ** length_penalty


def test_beam_search_scores_its_result_and_is_no_worse_than_greedy(encdec, heldout):
    tok = sdk.G2PTokenizer()
    for w in heldout[200:203]:
        ids = tok.encode_word(w)
        beam = encdec.generate(ids, sdk.GenerationConfig(strategy="beam", num_beams=3))
        greedy = encdec.generate(ids)
        assert encdec.generate(ids, sdk.GenerationConfig(strategy="beam", num_beams=1)).tokens \
            == greedy.tokens
        assert beam.finished == "stop" and all(5 <= t < 73 for t in beam.tokens)
        assert beam.score == pytest.approx(_score(encdec, ids, beam.tokens), abs=1e-9)
        assert beam.score >= _score(encdec, ids, greedy.tokens) - 1e-9
    with pytest.raises(InputError, match="no token stream"):
        list(encdec.stream([5], sdk.GenerationConfig(strategy="beam")))


def test_integer_model_tracks_the_float_model(encdec, heldout):
    """Greedy int8 output equals the float model (ONNX Runtime, past-KV graphs) on most
    held-out words (tools/slm_eval.py measures PER/WER on all of them)."""
    from slm_eval import SLM, OrtGenerator

    from sdk.models.slm import load_weights

    cfg, w = load_weights(SLM / "encdec.npz")
    ref = OrtGenerator(cfg, w)
    tok = sdk.G2PTokenizer()
    words = heldout[::100]
    same = [ref.generate(tok.encode_word(x)) == encdec.generate(tok.encode_word(x)).tokens
            for x in words]
    assert np.mean(same) >= 0.8, np.mean(same)
