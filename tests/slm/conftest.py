"""Shared fixtures: the committed G2P generation bundles of samples/slm (no torch needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLM = ROOT / "samples" / "slm"
sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture(scope="session")
def encdec():
    import sdk

    return sdk.GenerationSession(SLM / "encdec.edge", compiled=False)


@pytest.fixture(scope="session")
def deconly():
    import sdk

    return sdk.GenerationSession(SLM / "deconly.edge", compiled=False)


@pytest.fixture(scope="session")
def heldout():
    import slm_data

    return slm_data.heldout_words()
