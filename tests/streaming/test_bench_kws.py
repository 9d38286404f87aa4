"""tools/bench_kws.py --quick runs and reports what it measured (no timing thresholds: the
shared test machine is noisy; the figures go in the report)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "samples" / "kws" / "models" / "kws_lmuformer_nonspiking.onnx"


@pytest.mark.skipif(not MODEL.is_file(), reason="trained keyword model not committed yet")
def test_quick_bench_writes_latency_agreement_and_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_kws", ROOT / "tools" / "bench_kws.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "kws.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    backends = {r["backend"] for r in doc["latency"]}
    assert {"edge numba", "edge numpy-ref", "onnxruntime QDQ", "edge reference",
            "onnxruntime"} <= backends
    for r in doc["latency"]:
        assert 0 < r["median_us"] <= r["p99_us"]
        assert r["rtf"] == pytest.approx(r["median_us"] / 10_000)
    assert doc["numba_equals_numpy_ref"] is True
    assert doc["ort_one_step_max_lsb"] <= 3  # ORT's float requantization: a few LSB
    assert doc["float_ort_max_abs_diff"] < 1e-3
    nonspiking = next(v for v in doc["variants"] if v["model"].endswith("nonspiking"))
    assert 10_000 < nonspiking["parameters"] < 1_600_000
    assert sum(nonspiking["macs_per_hop"].values()) == pytest.approx(
        doc["bundle_macs_per_hop"], rel=0.01)
    assert all(0.0 <= r <= 1.0 for r in nonspiking["rates"].values())
    text = capsys.readouterr().out
    assert "LMUFormer (paper)" in text and "MMAC/s" in text
