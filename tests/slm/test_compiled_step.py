"""The compiled token step's hot path (``GenerationSession`` calling the step's two compiled
programs directly, ``sdk.runtime.generation._CompiledStep``) equals the interpreter bit for bit:
logits, KV caches and positions at every step, greedy / sampled / beam outputs, and a refused
step (a token id outside the table) reports the interpreter's error with the state untouched.

A tiny encoder-decoder (1 + 1 layers, d=16, seeded weights) keeps the cold compile of its
programs (encoder, step, lookups) to ~40 s of CPU."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.errors import InputError
from sdk.models.slm import SLMConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

pytestmark = pytest.mark.slow


def _sessions(cfg: SLMConfig, seed: int, out_len: int, weights_seed: int, name: str):
    """(compiled, interpreter) sessions of a tiny seeded model compiled on 4 random samples."""
    from bench_slm import random_weights

    rng = np.random.default_rng(seed)
    samples = [(list(rng.integers(5, 34, 5)), list(rng.integers(34, 73, out_len)))
               for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = sdk.compile_generation_model(cfg, random_weights(cfg, weights_seed), samples,
                                              name=name)
    return (sdk.GenerationSession(bundle, compiled=True),
            sdk.GenerationSession(bundle, compiled=False))


@pytest.fixture(scope="module")
def tiny():
    cfg = SLMConfig(vocab=73, d=16, heads=2, kv_heads=1, ff=32, enc_layers=1, dec_layers=1,
                    max_src=6, capacity=8)
    return _sessions(cfg, 0, 6, 3, "tiny_step")


def test_the_bound_step_equals_the_interpreter_step_by_step(tiny):
    fast, ref = tiny
    assert fast.step.executor == "compiled", fast.step.executor
    fa, sa, la = fast.start([5, 9, 30, 7])
    fb, sb, lb = ref.start([5, 9, 30, 7])
    assert np.array_equal(la, lb)
    for i, tok in enumerate([40, 4, 72, 0, 55, 13]):
        if i % 2:
            la = fast._decode(fa, [tok], sa)
        else:  # the bound step itself, not Session.run
            bound = fast._compiled_step
            assert bound is not None and bound.feeds_are(fa)
            la = bound(tok, sa)
            assert la is not None
        lb = ref._decode(fb, [tok], sb)
        assert np.array_equal(la, lb), i
        assert sa.positions == sb.positions
        for k in sb.values:
            assert np.array_equal(sa.values[k], sb.values[k]), (i, k)
    assert fast._compiled_step is not None and fast._compiled_step.feeds_are(fa)


def test_a_new_input_rebinds_and_every_strategy_gives_the_interpreters_tokens(tiny):
    fast, ref = tiny
    configs = [sdk.GenerationConfig(),
               sdk.GenerationConfig(strategy="sample", seed=4, top_k=20, stop_tokens=()),
               sdk.GenerationConfig(strategy="beam", num_beams=3, max_new_tokens=5)]
    for ids in ([5, 6, 7], [33, 8, 8, 20, 11, 5]):
        for config in configs:
            a, b = fast.generate(ids, config), ref.generate(ids, config)
            assert (a.tokens, a.finished, a.score) == (b.tokens, b.finished, b.score)


def test_a_refused_step_reports_the_interpreters_error_and_changes_nothing(tiny):
    fast, _ = tiny
    feeds, state, _ = fast.start([5, 6])
    fast._decode(feeds, [9], state)
    assert fast._compiled_step is not None and fast._compiled_step.feeds_are(feeds)
    before = {k: v.copy() for k, v in state.values.items()}
    with pytest.raises(InputError, match="out of range"):
        fast._decode(feeds, [999], state)
    assert state.position == 2
    assert all(np.array_equal(before[k], state.values[k]) for k in before)
    assert fast._compiled_step(999, state) is None  # the bound step refuses, Session.run reports


@pytest.fixture(scope="module")
def tiny_deconly():
    cfg = SLMConfig(vocab=73, d=16, heads=2, kv_heads=1, ff=32, enc_layers=0, dec_layers=1,
                    max_src=6, capacity=12)
    return _sessions(cfg, 1, 5, 5, "tiny_prefill")


def test_the_fixed_length_prefill_program_equals_the_prompt_shaped_prefill(tiny_deconly):
    """A decoder-only prompt runs zero-padded on a fixed-length prefill program: same logits,
    same cache rows, the position moved by the real tokens only; the steps after it and
    whole generations give the interpreter's tokens."""
    fast, ref = tiny_deconly
    assert fast._prefill_fixed and not ref._prefill_fixed
    for ids in ([5, 6], [33, 8, 8, 20, 11], [7, 9, 11, 13, 15, 17, 19, 21]):
        fa, sa, la = fast.start(ids)
        fb, sb, lb = ref.start(ids)
        n = len(ids) + 1  # the prompt and <sep>
        assert fast._prefill_length(n, 0) in (8, 12)
        look, sess = fast._prefill_at(fast._prefill_length(n, 0))
        assert sess.executor == "compiled", sess.executor
        assert np.array_equal(la, lb)
        assert sa.positions == sb.positions and sa.position == n
        for k in sb.values:
            assert np.array_equal(sa.values[k][:, :, :n], sb.values[k][:, :, :n]), k
        for tok in (40, 41):  # steps after the padded rows: the padding must stay invisible
            assert np.array_equal(fast._decode(fa, [tok], sa), ref._decode(fb, [tok], sb))
        config = sdk.GenerationConfig(stop_tokens=())
        a, b = fast.generate(ids, config), ref.generate(ids, config)
        assert (a.tokens, a.finished) == (b.tokens, b.finished)
    with pytest.raises(InputError, match="KV cache"):  # the capacity still refuses as before
        fast.generate(list(range(5, 17)))
