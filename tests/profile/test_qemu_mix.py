"""The instruction mix of one inference from the counting QEMU plugin, on the real Cortex-M4
firmware, and tools/report_mlperf_tiny.py --quick end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.profile.qemu_mix import mix_unavailable

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(mix_unavailable() is not None,
                                reason=f"QEMU mix unavailable: {mix_unavailable()}")


def _fc(k: int, n: int):
    from sdk.graph.ir import Graph, Tensor
    from sdk.kernels.requant import quantize_multiplier_array

    rng = np.random.default_rng(3)
    g = Graph(f"fc_{k}x{n}")
    g.add_tensor(Tensor("x", "int8", (1, k)))
    g.add_tensor(Tensor("y", "int8", (1, n)))
    g.add_constant("w", rng.integers(-127, 128, (n, k)).astype(np.int8))
    g.add_constant("b", rng.integers(-5000, 5000, n).astype(np.int32))
    m0, sh = quantize_multiplier_array(np.full(n, 0.5 / (60.0 * np.sqrt(k))))
    g.add_node("QFullyConnected", ["x", "w", "b"], ["y"], x_zp=-3, m0=m0, shift=sh, out_zp=0,
               act_min=-128, act_max=127, dtype="int8")
    g.inputs, g.outputs = ["x"], ["y"]
    return g, {"x": rng.integers(-128, 128, (1, k)).astype(np.int8)}


def test_plain_fc_mix_matches_the_firmware_count_and_its_macs() -> None:
    from sdk.kernels import linear
    from sdk.profile.cycles import CORTEX_M4, estimate_cycles
    from sdk.profile.qemu_mix import measure_mix

    g, feeds = _fc(256, 32)
    mix = measure_mix(g, feeds, packed_kernels=False, runs=1)
    node = g.nodes[0]
    want = linear.fully_connected(feeds["x"], g.tensor("w").data, g.tensor("b").data,
                                  **node.attrs)
    assert np.array_equal(mix.outputs["y"], want)
    m = mix.per_inference
    # the plugin's count of the inference code agrees with the firmware's own -icount count
    assert m.instructions == pytest.approx(mix.firmware_instructions, rel=0.02)
    assert m.counts["mac"] == pytest.approx(256 * 32, rel=0.01)      # one SMLAL per MAC
    assert m.counts["load"] >= 2 * 256 * 32                          # input and weight bytes
    assert m.flash_reads >= 256 * 32                                  # weights read in place
    assert max(mix.functions, key=mix.functions.get) == "k_fully_connected"
    per_mac = estimate_cycles(m, CORTEX_M4, 120e6).core_cycles / (256 * 32)
    assert 8 < per_mac < 12          # 9 cycles per loop iteration + per-output requantization


def test_report_mlperf_tiny_quick(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "tools/report_mlperf_tiny.py"), "--quick",
                          "--json", str(tmp_path / "m.json")], capture_output=True, text=True,
                         timeout=600, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    d = json.loads((tmp_path / "m.json").read_text())
    rows = {(r["model"], r["board"]): r for r in d["rows"]}
    assert set(rows) == {(m, b) for m in ("kws", "ad")
                         for b in ("nucleo-l4r5zi", "nucleo-h7a3zi")}
    kws = rows["kws", "nucleo-l4r5zi"]
    assert kws["instructions"] == pytest.approx(kws["firmware_instructions"], rel=0.02)
    assert kws["wait_states"] == 5 and rows["kws", "nucleo-h7a3zi"]["core_timing_estimate"]
    t = kws["tflm_reference"]
    assert t["published_ms"] == pytest.approx(181.9, abs=0.1)
    assert t["published_uj"] == pytest.approx(7373.7, abs=0.1)
    assert abs(t["latency_error"]) <= 0.30      # the acceptance bound on the anchor
    assert kws["predicted_uj"] == pytest.approx(
        kws["active_w"] * kws["predicted_ms"] * 1e3)
    assert rows["kws", "nucleo-h7a3zi"]["x_cube_ai"]["published_ms"] == pytest.approx(
        22.29, abs=0.01)
    assert "TFLM reference" in out.stdout and "X-CUBE-AI" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "tools/report_mlperf_tiny.py"),
                          "--models", "kws,mnist"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode != 0 and "unknown model(s) ['mnist']" in bad.stderr
