"""The public API: what `import sdk` exports is all samples/ and tools/ may use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sdk

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_every_exported_name_resolves():
    missing = [name for name in sdk.__all__ if getattr(sdk, name, None) is None]
    assert missing == []
    for name in ("Session", "load_onnx", "compile_model", "quantize", "load_bundle", "Bundle",
                 "plan_memory", "MemoryPlan", "profile_graph", "profile_model", "compile_for",
                 "partition", "check_fits", "emulate", "write_tflite", "read_tflite",
                 "load_target", "list_targets", "StreamingSession"):
        assert name in sdk.__all__, name


def test_import_sdk_stays_light():
    loaded = _python("import sys, sdk; print(' '.join(m for m in ('onnxruntime', "
                     "'ai_edge_litert', 'targets', 'sdk.profile', 'sdk.backends.litert') "
                     "if m in sys.modules))")
    assert loaded == ""


def test_targets_first_then_sdk_has_no_import_cycle():
    out = _python("import targets, sdk; t = sdk.load_target('stm32h7'); "
                  "print(t.name, sdk.Target is targets.Target, "
                  "sdk.profile_graph.__module__)")
    assert out == "stm32h7 True sdk.profile.profiler"


def _sdk_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from sdk[...] import name` in a file."""
    tree = ast.parse(path.read_text(), str(path))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            and node.module.split(".")[0] == "sdk" for alias in node.names]


def test_tools_and_samples_import_only_names_sdk_exports():
    files = sorted((ROOT / "tools").glob("*.py")) + sorted((ROOT / "samples").rglob("*.py"))
    unknown = [f"{f.relative_to(ROOT)}: {name}" for f in files
               for module, name in _sdk_imports(f)
               if module == "sdk" and name not in sdk.__all__]
    assert unknown == []


def test_bench_backends_uses_only_the_public_api():
    imports = _sdk_imports(ROOT / "tools" / "bench_backends.py")
    assert imports and all(module == "sdk" for module, _ in imports)
