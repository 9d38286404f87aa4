"""The house's layering, checked by walking every import (module level and inside functions).

Data flows down: frontends → graph → quant → compile, over the op schema and interpreter of
``sdk.ops``; backends, runtime and profile sit above. Nothing below may reach up, and no
module borrows another module's ``_private`` names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk"
LOWER = ("graph", "frontends", "quant", "compile", "ops", "kernels")
UPPER = ("sdk.backends", "sdk.runtime", "sdk.profile", "sdk.cli")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base, [a.name for a in node.names]))
    return found


def _sdk_files() -> list[Path]:
    return sorted(p for p in SDK.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_walk_sees_the_lazy_imports_too() -> None:
    # shapes imports the registry inside a function
    shapes = [m for _, m, _ in _imports(SDK / "ops" / "shapes.py")]
    assert "sdk.ops.registry" in shapes


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_backends_runtime_or_profile(layer: str) -> None:
    bad = []
    for path in (SDK / layer).rglob("*.py"):
        for line, mod, _ in _imports(path):
            if mod.startswith(UPPER):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "imports running back up the layers:\n" + "\n".join(bad)


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for path in _sdk_files():
        for line, mod, names in _imports(path):
            if not mod.startswith("sdk"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{path.relative_to(ROOT)}:{line} takes {private} from {mod}")
    assert not bad, "\n".join(bad)
