"""The sentence-restoration models of samples/slm/text (fortune sentences after seeded typos,
dropped punctuation and lower-casing): data, the committed integer bundles, `edge generate`.
No torch: the committed checkpoints, bundles and held-out list."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SLM

import sdk

TEXT = SLM / "text"


def _edge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdk.cli.main", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


@pytest.fixture(scope="module")
def pairs():
    import slm_text_data

    return slm_text_data.heldout_pairs()


@pytest.fixture(scope="module")
def text_encdec():
    return sdk.GenerationSession(TEXT / "encdec.edge", compiled=False)


def test_data_is_deterministic_and_the_heldout_list_is_the_seeded_split():
    import slm_text_data

    a = slm_text_data.load_sentences()
    assert a == slm_text_data.load_sentences() and len(a) > 5000
    train, valid, held = slm_text_data.split(a)
    assert held == [t for t in (TEXT / "heldout.txt").read_text().split("\n") if t]
    assert not (set(train) & set(held)) and not (set(valid) & set(held))
    # the source of a sentence is fixed by its own text; fresh draws differ but are seeded
    s = held[0]
    assert slm_text_data.source_of(s) == slm_text_data.source_of(s)
    draws = [slm_text_data.corrupt(s, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    tok = sdk.TextTokenizer()
    for t in held:
        src = slm_text_data.source_of(t)
        assert src == src.lower() and not set(src) & set(".,;:!?'\"-()")
        assert len(tok.encode_source(src)) <= slm_text_data.MAX_SRC
        assert tok.decode(tok.encode(t)) == t


def test_bundles_name_their_tokenizer_and_compiled_lengths(text_encdec):
    import slm_text_data

    deconly = sdk.GenerationSession(TEXT / "deconly.edge", compiled=False)
    for gs in (text_encdec, deconly):
        assert gs.meta["tokenizer"] == sdk.TextTokenizer.name
        assert isinstance(sdk.tokenizer_for(gs.meta["tokenizer"]), sdk.TextTokenizer)
        assert gs.meta["config"]["max_src"] == slm_text_data.MAX_SRC
    assert text_encdec.capacity == slm_text_data.MAX_CHARS + 2
    assert deconly.capacity == slm_text_data.MAX_SRC + slm_text_data.MAX_CHARS + 2
    with pytest.raises(sdk.InputError, match="unknown tokenizer"):
        sdk.tokenizer_for("bpe-32k")


@pytest.mark.parametrize("kind,n", [("encdec", 8), ("deconly", 3)])
def test_integer_generation_restores_held_out_sentences_like_float(kind, n, pairs):
    """Integer (edge, KV caches) vs float (ONNX Runtime, past-KV) on held-out sentences: the
    outputs agree closely, and both restore: fewer character errors than the input had."""
    from slm_eval import OrtGenerator, edit_distance

    from sdk.models.slm import load_weights

    tok = sdk.TextTokenizer()
    cfg, w = load_weights(TEXT / f"{kind}.npz")
    ref = OrtGenerator(cfg, w)
    gs = sdk.GenerationSession(TEXT / f"{kind}.edge", compiled=False)
    chosen = pairs[:: len(pairs) // n][:n]
    same = err_int = err_float = err_src = chars = 0
    for src, tgt in chosen:
        ids = tok.encode_source(src)
        got = gs.generate(ids)
        assert got.finished == "stop"
        a, b = tok.decode(got.tokens), tok.decode(ref.generate(ids))
        same += a == b
        err_int += edit_distance(a, tgt)
        err_float += edit_distance(b, tgt)
        err_src += edit_distance(src, tgt)
        chars += len(tgt)
    assert same >= n - 1, (same, n)
    assert abs(err_int - err_float) <= max(2, chars // 100)
    assert err_int < 0.9 * err_src, (err_int, err_src)  # fewer errors than the input had


def test_edge_generate_restores_sentences_from_text_and_stdin(text_encdec):
    tok = sdk.TextTokenizer()
    lines = ["a snake lurks in the grass", "all programers are optimists"]
    want = [f"{s}\t" + tok.decode(text_encdec.generate(tok.encode_source(s)).tokens)
            for s in lines]
    a = _edge("generate", str(TEXT / "encdec.edge"), "--text", lines[0])
    assert a.returncode == 0, a.stderr
    assert a.stdout.splitlines() == want[:1]
    b = _edge("generate", str(TEXT / "encdec.edge"), "--stream", stdin="\n".join(lines) + "\n")
    assert b.returncode == 0, b.stderr
    assert b.stdout.splitlines() == want


def test_edge_generate_refuses_bad_sentences_in_one_line():
    r = _edge("generate", str(TEXT / "encdec.edge"), "--text", "caf\u00e9 au lait")
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "outside a-z 0-9" in r.stderr
    r = _edge("generate", str(TEXT / "encdec.edge"), "--text", "word " * 20)
    assert r.returncode != 0 and r.stdout == "" and "at most 50" in r.stderr
    # a bad line anywhere refuses the whole input before any output
    r = _edge("generate", str(TEXT / "encdec.edge"), stdin="all is well\n" + "x" * 60 + "\n")
    assert r.returncode != 0 and r.stdout == "" and r.stderr.count("\n") == 1
    r = _edge("generate", str(TEXT / "encdec.edge"), "--text", "!!! ...")
    assert r.returncode != 0 and "empty sentence" in r.stderr
