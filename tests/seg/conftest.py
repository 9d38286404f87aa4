"""Shared fixtures of the segmentation tests: the committed model and its integer bundle,
compiled once per test session into a private cache (so a stale user cache never answers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "samples" / "seg" / "seg_vit_mask.onnx"


@pytest.fixture(scope="session")
def seg_cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("edge-cache")
    old = os.environ.get("EDGE_CACHE_DIR")
    os.environ["EDGE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EDGE_CACHE_DIR", None)
    else:
        os.environ["EDGE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def seg_bundle(seg_cache) -> Path:
    """The committed float model compiled to integers (default calibration set)."""
    import sdk

    return sdk.compile_segmenter(MODEL)
