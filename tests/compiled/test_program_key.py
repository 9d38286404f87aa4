"""The program cache key covers the kernels a generated program calls: Numba's cache does not
notice a changed callee, so code cached by another SDK version must not be reused."""
from __future__ import annotations

import hashlib
from pathlib import Path

from sdk.ops import codegen


def test_fingerprint_hashes_every_fast_kernel_source():
    root = Path(codegen.__file__).resolve().parents[1] / "kernels" / "fast"
    files = sorted(root.glob("*.py"))
    assert len(files) > 3
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    assert codegen.kernels_fingerprint() == h.hexdigest()[:16]


def test_program_key_changes_with_the_kernels(monkeypatch):
    source = "def program():\n    return 0\n"
    before = codegen.program_key(source)
    assert codegen.program_key(source) == before  # stable within a version
    monkeypatch.setattr(codegen, "kernels_fingerprint", lambda: "0" * 16)
    assert codegen.program_key(source) != before
    assert codegen.program_key(source + "#") != codegen.program_key(source)
