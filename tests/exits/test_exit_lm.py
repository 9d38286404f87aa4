"""Per-token exit in the decoder of the committed G2P encoder-decoder (samples/slm/encdec.npz
with the exit head of samples/exits/g2p_exit_head.npz, compiled by
sdk.exits.lm.compile_exit_generation_model from real CMUdict words): the stage entries
reproduce the model without exits bit for bit when no exit fires, the skipped layer's K/V
rows filled from the exit layer's hidden state equal the rows that layer computes itself,
the margin threshold fires at equality, NumPy and Numba decide the same, and the committed
calibrated bundle (samples/exits/g2p_exits.edge) keeps its threshold."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.compile.bundle import load_bundle
from sdk.errors import InputError
from sdk.exits.lm import LMExitSession, compile_exit_generation_model, load_exit_heads
from sdk.models.slm import load_weights
from sdk.runtime.generation import GenerationSession
from sdk.text import G2PTokenizer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
WORDS = ["thunderstorm", "basil", "quixotic", "ab", "measurement", "phone"]


@pytest.fixture(scope="module")
def bundle():
    import slm_data

    lex = slm_data.load_lexicon()
    train, _, _ = slm_data.split(lex)
    tok = G2PTokenizer()
    calib = train[::max(1, len(train) // 32)][:32]
    samples = [(tok.encode_word(x), tok.encode_phonemes(lex[x][0])) for x in calib]
    cfg, w = load_weights(ROOT / "samples" / "slm" / "encdec.npz")
    heads = load_exit_heads(ROOT / "samples" / "exits" / "g2p_exit_head.npz")
    return compile_exit_generation_model(cfg, w, heads, samples)


def test_entries_and_costs(bundle):
    plan = bundle.manifest["lm_exits"]
    assert plan["stages"] == ["exit_stage_1", "exit_stage_2"]
    assert plan["fills"] == ["exit_fill_2"]
    assert {"encoder", "decoder_step", "exit_stage_1", "exit_stage_2",
            "exit_fill_2"} <= set(bundle.entry_names)
    m = plan["macs"]
    # one decoder layer each; the fill is the skipped layer's K/V projections only
    assert m["exit_fill_2"] < m["exit_stage_2"] / 5
    assert m["exit_stage_1"] + m["exit_stage_2"] > m["decoder_step"]  # + the exit head
    assert m["exit_stage_2"] < m["decoder_step"] < m["exit_stage_1"] + m["exit_stage_2"]


def test_no_exit_equals_the_model_without_exits(bundle):
    tok = G2PTokenizer()
    never = LMExitSession(bundle, thresholds=[1 << 20])
    plain = GenerationSession(bundle, compiled=False)
    for w in WORDS:
        ids = tok.encode_word(w)
        r = never.generate(ids)
        assert r.tokens == plain.generate(ids).tokens
        assert set(r.exits) == {1}
        plan = never.plan
        assert r.macs == len(r.exits) * (plan["macs"]["exit_stage_1"] +
                                         plan["macs"]["exit_stage_2"])
        assert r.layers == 2 * len(r.exits)


def test_fill_writes_the_rows_the_skipped_layer_computes(bundle):
    sess = LMExitSession(bundle, thresholds=[1 << 20])
    tok = G2PTokenizer()
    feeds = sess.gen.encode(tok.encode_word("thunderstorm"))
    s1, s2, fill = sess.stages[0], sess.stages[1], sess.fills[0]
    st1 = s1.new_state()
    st_full, st_fill = s2.new_state(), s2.new_state()
    token = sess.bos
    for i in range(4):
        pool = dict(feeds, tokens=np.array([[token]], np.int64),
                    positions=np.array([[i]], np.int64))
        pool.update(s1.run({n: pool[n] for n in s1.input_names if n in pool}, state=st1))
        out = s2.run({n: pool[n] for n in s2.input_names if n in pool}, state=st_full)
        fill.run({n: pool[n] for n in fill.input_names if n in pool}, state=st_fill)
        for name in st_full.values:
            assert np.array_equal(st_full.values[name], st_fill.values[name]), name
        assert st_full.position == st_fill.position == i + 1
        token = int(np.argmax(out[sess.plan["logits"][1]]))


def test_threshold_at_the_margin_fires_and_numpy_equals_numba(bundle):
    tok = G2PTokenizer()
    ids = tok.encode_word("basil")
    probe = LMExitSession(bundle, thresholds=[1 << 20])
    m0 = probe.margins_along_full(ids)[0][0]
    at = LMExitSession(bundle, thresholds=[m0]).generate(ids, max_new_tokens=1)
    above = LMExitSession(bundle, thresholds=[m0 + 1]).generate(ids, max_new_tokens=1)
    assert at.exits == [0] and above.exits == [1]
    # NumPy reference kernels + NumPy rule vs Numba: the same tokens, exits and costs
    thr = int(np.median(probe.margins_along_full(ids)[0]))
    fast = LMExitSession(bundle, thresholds=[thr])
    ref = LMExitSession(bundle, thresholds=[thr], fast=False)
    for w in WORDS[:3]:
        a, b = fast.generate(tok.encode_word(w)), ref.generate(tok.encode_word(w))
        assert a.tokens == b.tokens and a.exits == b.exits and a.macs == b.macs
        assert 0 < a.exits.count(0) < len(a.exits) or len(a.exits) <= 2


def test_committed_calibrated_bundle(bundle):
    path = ROOT / "samples" / "exits" / "g2p_exits.edge"
    b = load_bundle(path)
    plan = b.manifest["lm_exits"]
    cal = plan["calibration"]
    assert isinstance(plan["thresholds"][0], int)
    assert cal["chosen"]["threshold"] == plan["thresholds"][0]
    assert cal["chosen"]["score"] <= cal["score_full"] + cal["max_drop"] + 1e-9
    sess = LMExitSession(b)
    assert sess.thresholds == plan["thresholds"]
    r = sess.generate(G2PTokenizer().encode_word("thunderstorm"))
    assert r.tokens and len(r.exits) == len(r.tokens) + 1


def test_bad_input_is_one_line(bundle, tmp_path):
    with pytest.raises(InputError, match="1 exit thresholds"):
        LMExitSession(bundle, thresholds=[1, 2])
    plain = load_bundle(ROOT / "samples" / "slm" / "encdec.edge")
    with pytest.raises(InputError, match="no per-token exits"):
        LMExitSession(plain)
