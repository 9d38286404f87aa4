"""Text front ends for the small language models (no torch, no downloads).

The tokenizer is **character level** on the grapheme side and **one token per ARPAbet
phoneme** on the output side, in one shared vocabulary (so the two models of
``samples/slm`` tie one embedding table between input and output):

* specials ``<pad>`` 0, ``<s>`` 1 (decoder start), ``</s>`` 2 (stop), ``<sep>`` 3 (the
  decoder-only model's boundary between the word and its pronunciation), ``<unk>`` 4;
* graphemes: ``a``–``z``, apostrophe, hyphen and period (CMUdict's word alphabet);
* the 39 ARPAbet phonemes of CMUdict, stress digits removed (``AH0`` → ``AH``).

A character outside the alphabet is refused (:class:`~sdk.errors.InputError`) rather than
mapped to ``<unk>`` silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sdk.errors import InputError

PAD, BOS, EOS, SEP, UNK = 0, 1, 2, 3, 4
SPECIALS = ("<pad>", "<s>", "</s>", "<sep>", "<unk>")
GRAPHEMES = tuple("abcdefghijklmnopqrstuvwxyz'-.")
PHONEMES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F",
            "G", "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S",
            "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH")
VOCAB = SPECIALS + GRAPHEMES + PHONEMES
GRAPHEME_ID = {g: len(SPECIALS) + i for i, g in enumerate(GRAPHEMES)}
PHONEME_ID = {p: len(SPECIALS) + len(GRAPHEMES) + i for i, p in enumerate(PHONEMES)}
ID_TO_TOKEN = dict(enumerate(VOCAB))


def strip_stress(phone: str) -> str:
    """``AH0`` → ``AH``: CMUdict's stress digit removed."""
    return phone.rstrip("012")


class G2PTokenizer:
    """Character-level graphemes in, ARPAbet phoneme tokens out (see the module docstring)."""

    vocab_size = len(VOCAB)
    pad_id, bos_id, eos_id, sep_id = PAD, BOS, EOS, SEP

    def normalize(self, word: str) -> str:
        return word.strip().lower()

    def encode_word(self, word: str) -> list[int]:
        w = self.normalize(word)
        if not w:
            raise InputError("empty word: give at least one letter a-z")
        bad = sorted({c for c in w if c not in GRAPHEME_ID})
        if bad:
            raise InputError(f"word {word!r} has characters outside a-z ' - . ({''.join(bad)!r}); "
                             "spell numbers and symbols out as words")
        return [GRAPHEME_ID[c] for c in w]

    def encode_phonemes(self, phones: Iterable[str]) -> list[int]:
        out = []
        for p in phones:
            q = strip_stress(p).upper()
            if q not in PHONEME_ID:
                raise InputError(f"{p!r} is not an ARPAbet phoneme (CMUdict's 39 without stress)")
            out.append(PHONEME_ID[q])
        return out

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Token ids → phoneme strings; specials and graphemes are dropped."""
        return [ID_TO_TOKEN[int(i)] for i in ids if int(i) in ID_TO_TOKEN
                and ID_TO_TOKEN[int(i)] in PHONEME_ID]

    def token(self, i: int) -> str:
        return ID_TO_TOKEN.get(int(i), "<unk>")


ARPABET_TO_KIRSHENBAUM = {
    "AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "B": "b", "CH": "tS",
    "D": "d", "DH": "D", "EH": "E", "ER": "3:", "EY": "eI", "F": "f", "G": "g", "HH": "h",
    "IH": "I", "IY": "i:", "JH": "dZ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "N",
    "OW": "oU", "OY": "OI", "P": "p", "R": "r", "S": "s", "SH": "S", "T": "t", "TH": "T",
    "UH": "U", "UW": "u:", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "Z"}
"""ARPAbet → espeak-ng's phoneme mnemonics (``[[...]]`` input), for speaking a G2P output."""


def espeak_phonemes(phones: Sequence[str]) -> str:
    """``['HH', 'AH', 'L', 'OW']`` → ``[[hVloU]]`` (espeak-ng phoneme input)."""
    return "[[" + "".join(ARPABET_TO_KIRSHENBAUM.get(strip_stress(p), "") for p in phones) + "]]"


__all__ = ["BOS", "EOS", "GRAPHEMES", "PAD", "PHONEMES", "SEP", "UNK", "VOCAB", "G2PTokenizer",
           "espeak_phonemes", "strip_stress"]
