"""Every committed fuzz regression input (tests/fuzz_regressions/<target>/) replays to
success or an SDK error, and a short fuzz run finds no exception that is not an SDK error."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdk.errors import EdgeError

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted(p for p in (ROOT / "tests" / "fuzz_regressions").glob("*/*")
               if p.is_file() and p.parent.name in ("bundle", "npz", "frame", "toml", "tflite",
                                                     "onnx", "agent"))


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("edge_fuzz", ROOT / "tools" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FUZZ = _fuzz_module()


def test_there_are_regression_inputs():
    assert {p.parent.name for p in CASES} >= {"bundle", "npz", "tflite", "onnx", "agent"}


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_regression_input_gives_an_sdk_error_or_succeeds(case):
    try:
        FUZZ.replay(case.parent.name, case)
    except EdgeError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("target,cases", [("bundle", 200), ("npz", 400), ("frame", 400),
                                          ("tflite", 400), ("onnx", 300), ("agent", 150)])
def test_a_quick_fuzz_run_finds_no_non_sdk_exception(tmp_path, target, cases):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz.py"), "--quick",
                           "--target", target, "--cases", str(cases), "--seed", "11",
                           "--no-save", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False)
    report = json.loads(out.read_text())[0]
    assert report["cases"] == cases
    assert report["non_sdk_exceptions"] == 0, proc.stdout
    assert report["hangs"] == 0, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["seconds"] < 60


def test_unsupported_op_error_takes_non_text_op_names():
    from sdk.errors import UnsupportedOpError

    msg = str(UnsupportedOpError([7, "Foo", 7], "the ONNX importer"))
    assert msg == "unsupported operator(s) for the ONNX importer: 7, Foo"


def test_requantization_multiplier_errors_are_sdk_errors():
    from sdk.kernels.requant import quantize_multiplier

    for m in (5.5e35, float("nan")):
        with pytest.raises(EdgeError) as info:
            quantize_multiplier(m)
        assert "\n" not in str(info.value)
