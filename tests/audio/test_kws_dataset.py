"""The espeak-ng keyword-spotting dataset generator on a tiny run (one clip per class)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import kws_dataset

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed")

TINY = kws_dataset.DatasetConfig(seed=3, train_per_class=2, val_per_class=1, test_per_class=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return kws_dataset.generate(tmp_path_factory.mktemp("kws"), TINY, workers=2)


def test_twelve_classes_of_one_second_int16_clips(tiny):
    for split, per_class in (("train", 2), ("val", 1), ("test", 1)):
        d = kws_dataset.load_split(tiny, split)
        assert d["audio"].shape == (12 * per_class, 16000)
        assert d["audio"].dtype == np.int16
        assert np.array_equal(np.bincount(d["label"], minlength=12), [per_class] * 12)


def test_words_match_their_labels(tiny):
    d = kws_dataset.load_split(tiny, "train")
    for label, word in zip(d["label"], d["word"]):
        name = kws_dataset.CLASSES[label]
        if name == kws_dataset.UNKNOWN:
            assert word in kws_dataset.UNKNOWN_WORDS
        else:
            assert word == name


def test_speech_clips_carry_speech_and_no_clip_is_digital_silence(tiny):
    d = kws_dataset.load_split(tiny, "train")
    silence = d["label"] == kws_dataset.CLASSES.index(kws_dataset.SILENCE)
    peaks = np.abs(d["audio"].astype(np.int32)).max(axis=1)
    assert np.all(peaks[~silence] > 500)  # at least −36 dBFS of speech (level floor −30 dB)
    assert np.all(peaks > 0)  # the _silence_ class is background noise, never all zeros


def test_splits_are_voice_disjoint(tiny):
    meta = json.loads((tiny / "meta.json").read_text())
    sets = {s: set(v) for s, v in meta["speakers"].items()}
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["val"]
    assert not sets["val"] & sets["test"]
    for split in ("train", "val", "test"):
        d = kws_dataset.load_split(tiny, split)
        assert set(d["speaker"]) <= sets[split]
        assert all(v.split("+")[1] in sets[split] for v in d["voice"])


def test_generation_is_reproducible_from_the_seed(tiny, tmp_path):
    again = kws_dataset.generate(tmp_path, TINY, workers=1)
    a = kws_dataset.load_split(tiny, "val")
    b = kws_dataset.load_split(again, "val")
    assert np.array_equal(a["audio"], b["audio"])
    other = kws_dataset.DatasetConfig(seed=4, train_per_class=2, val_per_class=1,
                                      test_per_class=1)
    assert other.key() != TINY.key()


def test_speaker_split_covers_all_variants():
    variants = kws_dataset.list_variants()
    split = kws_dataset.split_speakers(variants, kws_dataset.DatasetConfig())
    assert sorted(split["train"] + split["val"] + split["test"]) == variants
    assert len(split["test"]) >= 10 and len(split["val"]) >= 10
