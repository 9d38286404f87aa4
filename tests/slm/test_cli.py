"""`edge generate` (from --text and from stdin) and `edge demo slm`, as real processes."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, SLM

import sdk


def _edge(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdk.cli.main", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          check=False)


def test_generate_from_text_and_from_stdin_agree_with_the_session(encdec):
    tok = sdk.G2PTokenizer()
    words = ["phoneme", "Kitchen", "zebra"]
    want = [f"{w}\t" + " ".join(tok.decode(encdec.generate(tok.encode_word(w)).tokens))
            for w in words]
    a = _edge("generate", str(SLM / "encdec.edge"), "--text", " ".join(words))
    assert a.returncode == 0, a.stderr
    assert a.stdout.splitlines() == want
    b = _edge("generate", str(SLM / "encdec.edge"), "--stream", stdin="phoneme Kitchen\nzebra\n")
    assert b.returncode == 0, b.stderr
    assert b.stdout.splitlines() == want


def test_generate_refuses_bad_input_in_one_line():
    r = _edge("generate", str(SLM / "deconly.edge"), "--text", "r2d2")
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "'2'" in r.stderr and "spell numbers" in r.stderr
    r = _edge("generate", str(SLM / "deconly.edge"), stdin="")
    assert r.returncode != 0 and "no input text" in r.stderr


def test_demo_slm_streams_phonemes_for_piped_words(encdec):
    tok = sdk.G2PTokenizer()
    r = _edge("demo", "slm", stdin="table\n")
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    word, phones, timing = line.split("\t")
    assert word == "table" and "ms first" in timing
    assert phones.split() == tok.decode(encdec.generate(tok.encode_word("table")).tokens)
