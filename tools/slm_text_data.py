"""Sentence-restoration data for the small language models, offline: real English sentences
from Debian's ``fortunes`` package (``/usr/share/games/fortunes``, in SYSTEM_PKGS).

Target: a sentence as written (16-48 characters, starts upper case, ends in ``. ! ?``, at
least 3 words, only the characters of ``sdk.TextTokenizer``). Source: the same sentence
lower-cased, punctuation dropped (``TextTokenizer.normalize``) and 0-2 seeded typos (a letter
substituted, deleted, doubled, or two neighbours swapped). The task asks for case,
punctuation and spelling back: asymmetric in the paper's sense (the output is longer and
richer than the input).

Split **by sentence**, seeded: 4 % held out (``samples/slm/text/heldout.txt``: the target
sentences; their sources are derived from each one's own seed, so the pairs are fixed),
2 % validation, the rest train. Training draws fresh typos per epoch from a seeded stream.

    .venv/bin/python tools/slm_text_data.py          # writes samples/slm/text/heldout.txt
"""

from __future__ import annotations

import argparse
import re
import zlib
from pathlib import Path

import numpy as np

import sdk

FORTUNES = Path("/usr/share/games/fortunes")
MIN_CHARS, MAX_CHARS, MAX_TYPOS = 16, 48, 2
#: encoder input capacity: a normalized sentence plus one doubled letter per typo
MAX_SRC = MAX_CHARS + MAX_TYPOS
HELDOUT_FRACTION, VALID_FRACTION, SEED = 0.04, 0.02, 17
HELDOUT = Path(__file__).resolve().parents[1] / "samples" / "slm" / "text" / "heldout.txt"
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def load_sentences(root: Path = FORTUNES) -> list[str]:
    """Every distinct qualifying sentence of the fortune files (not the offensive set under
    ``off/``), sorted."""
    if not root.is_dir():
        raise SystemExit(f"{root} not found: apt-get install fortunes (tools/bootstrap.sh)")
    alphabet = set(sdk.TextTokenizer.alphabet)
    out: set[str] = set()
    for f in sorted(root.iterdir()):
        if not f.is_file() or "." in f.name:
            continue
        text = f.read_text(encoding="latin-1")
        for fortune in text.split("\n%\n"):
            lines = [x.strip() for x in fortune.split("\n") if not x.strip().startswith("--")]
            t = re.sub(r"\s+", " ", " ".join(lines)).strip()
            for s in _SPLIT.split(t):
                s = s.strip()
                if (MIN_CHARS <= len(s) <= MAX_CHARS and set(s) <= alphabet and s[0].isupper()
                        and s[-1] in ".!?" and len(s.split()) >= 3):
                    out.add(s)
    return sorted(out)


def corrupt(sentence: str, rng: np.random.Generator) -> str:
    """The source side of ``sentence``: normalized, then 0-2 typos drawn from ``rng``."""
    s = list(sdk.TextTokenizer.normalize(sentence))
    for _ in range(int(rng.integers(0, MAX_TYPOS + 1))):
        spots = [i for i, c in enumerate(s) if c != " "]
        if len(spots) < 2:
            break
        i = spots[int(rng.integers(len(spots)))]
        kind = int(rng.integers(4))
        if kind == 0:
            s[i] = LETTERS[int(rng.integers(26))]
        elif kind == 1:
            del s[i]
        elif kind == 2:
            s.insert(i, s[i])
        elif i + 1 < len(s) and s[i + 1] != " ":
            s[i], s[i + 1] = s[i + 1], s[i]
    return re.sub(r"\s+", " ", "".join(s)).strip() or sdk.TextTokenizer.normalize(sentence)


def source_of(sentence: str) -> str:
    """The fixed source of a held-out / validation sentence (seeded by its own text)."""
    return corrupt(sentence, np.random.default_rng([SEED, zlib.crc32(sentence.encode())]))


def split(sentences: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(train, valid, heldout) sentence lists, seeded, disjoint."""
    perm = np.random.default_rng(SEED).permutation(len(sentences))
    n_h = int(len(sentences) * HELDOUT_FRACTION)
    n_v = int(len(sentences) * VALID_FRACTION)
    held = sorted(sentences[i] for i in perm[:n_h])
    valid = sorted(sentences[i] for i in perm[n_h:n_h + n_v])
    train = sorted(sentences[i] for i in perm[n_h + n_v:])
    return train, valid, held


def heldout_pairs(path: Path = HELDOUT) -> list[tuple[str, str]]:
    """(source, target) of every held-out sentence in the committed list."""
    return [(source_of(t), t) for t in path.read_text().split("\n") if t]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HELDOUT)
    ap.add_argument("--show", type=int, default=0, help="print N held-out pairs")
    args = ap.parse_args()
    sents = load_sentences()
    train, valid, held = split(sents)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(held) + "\n")
    print(f"{len(sents)} sentences: train {len(train)}, valid {len(valid)}, held out "
          f"{len(held)} -> {args.out}")
    for t in held[:args.show]:
        print(f"{source_of(t)!r:52s} -> {t!r}")


if __name__ == "__main__":
    main()
