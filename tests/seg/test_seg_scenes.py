"""The scene generator: seeded, exact labels, at least six classes, held-out source regions."""

from __future__ import annotations

import numpy as np
import pytest

import sdk
from sdk.errors import InputError


def test_same_seed_same_scenes_and_another_seed_others() -> None:
    a_img, a_lab = sdk.vision.make_scenes(4, seed=3, split="train", size=48)
    b_img, b_lab = sdk.vision.make_scenes(4, seed=3, split="train", size=48)
    c_img, _ = sdk.vision.make_scenes(4, seed=4, split="train", size=48)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)
    assert a_img.shape == (4, 48, 48, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == (4, 48, 48) and a_lab.dtype == np.uint8


def test_every_class_appears_and_labels_are_valid() -> None:
    classes = sdk.vision.CLASSES
    assert len(classes) >= 6
    _, lab = sdk.vision.make_scenes(40, seed=0, split="test", size=48)
    counts = np.bincount(lab.ravel(), minlength=len(classes))
    assert len(counts) == len(classes), "a label outside the class list"
    assert (counts > 0).all(), dict(zip(classes, counts.tolist()))
    # objects occupy a real share of the frame, background does not swamp it
    assert 0.2 < counts[1:].sum() / counts.sum() < 0.8


def test_labels_are_exact_where_an_object_was_pasted(monkeypatch) -> None:
    """Sources replaced by flat colours (value 20·class + 10) and lighting switched off: every
    pixel's value then names the label of the object on top, so masks, occlusion order and
    labels agree pixel for pixel."""
    from sdk.vision import scenes

    real = scenes._library()
    flat = {c: [scenes.Source(c, np.full((120, 160, 3), 20 * c + 10, np.uint8))]
            for c in range(len(scenes.CLASSES))}
    face = np.full((25, 25, 3), 20 * scenes.CLASSES.index("face") + 10, np.uint8)
    fake = {"sources": flat, "faces": {"train": [face], "test": [face]},
            "horse": real["horse"]}
    monkeypatch.setattr(scenes, "_library", lambda: fake)
    monkeypatch.setattr(scenes, "_photometric", lambda rng, img: img)
    monkeypatch.setattr(scenes, "_object_light", lambda rng, tex: tex)
    monkeypatch.setattr(scenes, "_face", _flat_face(scenes._face, face))
    rng = np.random.default_rng(5)
    for _ in range(6):
        img, lab = scenes.make_scene(rng, 64, "train")
        want = 20 * lab.astype(np.int32) + 10
        assert (img[..., 0].astype(np.int32) == want).all(), "a label disagrees with its pixel"
        assert len(np.unique(lab)) >= 2


def _flat_face(real_face, face):
    def fn(rng, faces, size):
        _, mask = real_face(rng, faces, size)
        return np.broadcast_to(face[0, 0], (size, size, 3)).copy(), mask
    return fn


def test_test_regions_never_overlap_train_regions() -> None:
    from sdk.vision.scenes import TEST_FRACTION, _library

    lib = _library()
    for srcs in lib["sources"].values():
        for s in srcs:
            tr, te = s.region("train"), s.region("test")
            h, w = s.image.shape[:2]
            axis = 1 if w >= h else 0
            assert tr.shape[axis] + te.shape[axis] == s.image.shape[axis]
            assert te.shape[axis] >= int(TEST_FRACTION * s.image.shape[axis]) - 1
            # the two regions are disjoint views of the same image
            assert not np.shares_memory(tr, te) or tr.size == 0
    faces = lib["faces"]
    assert faces["train"] and faces["test"]
    train_ids = {f.tobytes() for f in faces["train"]}
    assert not any(f.tobytes() in train_ids for f in faces["test"])


def test_bad_split_is_refused() -> None:
    with pytest.raises(InputError, match="split"):
        sdk.vision.make_scenes(1, split="val")


def test_preprocess_centre_crops_and_normalises() -> None:
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:, 10:40] = 255  # the centre square is white
    x = sdk.vision.preprocess(rgb, 16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    assert np.allclose(x, 2.0)
    with pytest.raises(InputError):
        sdk.vision.preprocess(np.zeros((8, 8)), 16)
