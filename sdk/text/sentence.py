"""Character-level tokenizer of the sentence-restoration models (``samples/slm/text``).

Task: a sentence typed carelessly — lower case, no punctuation, a few typos — in; the
sentence as written out. One shared vocabulary (tied embeddings), **one token per
character**, ``TEXT_TOKENIZER`` = ``"text-char-v1"`` in a bundle's metadata:

* the specials of :mod:`sdk.text` with the same ids (``<pad>`` 0, ``<s>`` 1, ``</s>`` 2,
  ``<sep>`` 3, ``<unk>`` 4), so :class:`sdk.GenerationSession` needs nothing new;
* space, ``a``–``z``, ``A``–``Z``, ``0``–``9`` and ``. , ; : ! ? ' " - ( )`` (79 tokens).

The **source** side is what the models were trained on: :meth:`TextTokenizer.normalize`
lower-cases, drops every punctuation mark (a hyphen becomes a space) and collapses spaces,
so ``"Don't panic!"`` and ``"dont panic"`` give the same input. A character outside the
alphabet is refused (:class:`~sdk.errors.InputError`), never mapped to ``<unk>`` silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sdk.errors import InputError
from sdk.text import SPECIALS

TEXT_TOKENIZER = "text-char-v1"
PUNCTUATION = ".,;:!?'\"-()"
ALPHABET = (" " + "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "0123456789"
            + PUNCTUATION)
CHAR_ID = {c: len(SPECIALS) + i for i, c in enumerate(ALPHABET)}
ID_TO_CHAR = {i: c for c, i in CHAR_ID.items()}
SOURCE_CHARS = frozenset(" abcdefghijklmnopqrstuvwxyz0123456789")


class TextTokenizer:
    """Characters in, characters out (see the module docstring)."""

    name = TEXT_TOKENIZER
    alphabet = ALPHABET
    vocab_size = len(SPECIALS) + len(ALPHABET)

    @staticmethod
    def normalize(text: str) -> str:
        """The model's input form: lower case, punctuation dropped (``-`` → space), single
        spaces, stripped."""
        t = text.lower().replace("-", " ")
        t = "".join(c for c in t if c not in PUNCTUATION)
        return re.sub(r"\s+", " ", t).strip()

    def encode_source(self, text: str, max_len: int | None = None) -> list[int]:
        """A sentence → source token ids (normalized first); one-line InputError for an
        empty one, characters outside the alphabet, or more than ``max_len`` characters."""
        t = self.normalize(text)
        if not t:
            raise InputError("empty sentence: give at least one letter or digit")
        bad = sorted({c for c in t if c not in SOURCE_CHARS})
        if bad:
            raise InputError(f"sentence {text!r} has characters outside a-z 0-9 and punctuation "
                             f"({''.join(bad)!r}); this model reads plain ASCII English")
        if max_len is not None and len(t) > max_len:
            raise InputError(f"sentence has {len(t)} characters after normalizing; this model "
                             f"takes at most {max_len} (split it into shorter sentences)")
        return [CHAR_ID[c] for c in t]

    def encode(self, text: str) -> list[int]:
        """A target sentence as written (any character of the alphabet) → token ids."""
        bad = sorted({c for c in text if c not in CHAR_ID})
        if bad:
            raise InputError(f"text {text!r} has characters outside the alphabet "
                             f"({''.join(bad)!r})")
        return [CHAR_ID[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids → text; specials are dropped."""
        return "".join(ID_TO_CHAR.get(int(i), "") for i in ids)

    def token(self, i: int) -> str:
        return ID_TO_CHAR.get(int(i), "")


def tokenizer_for(name: str):
    """The tokenizer a generation bundle's metadata names (``slm.tokenizer``)."""
    from sdk.text import G2PTokenizer

    if name == "g2p-char-arpabet":
        return G2PTokenizer()
    if name == TEXT_TOKENIZER:
        return TextTokenizer()
    raise InputError(f"unknown tokenizer {name!r} in the bundle's metadata; this SDK knows "
                     f"g2p-char-arpabet and {TEXT_TOKENIZER}")


__all__ = ["ALPHABET", "TEXT_TOKENIZER", "TextTokenizer", "tokenizer_for"]
