"""The energy model reproduces EcoFormer's accounting (fp32: multiplies × 3.7 pJ + additions ×
0.9 pJ, Horowitz 45 nm) on a worked example, and shows the integer saving beside it."""

from __future__ import annotations

import pytest
from profile_graphs import attention_graph, float_attention_graph

from sdk.profile.energy import HOROWITZ_45NM, compute_energy_pj, memory_energy_pj
from sdk.profile.opcount import OpCount, count_graph


def test_ecoformer_worked_example_attention_matmuls() -> None:
    """Self-attention with N = 6 tokens, D = 8: Q·Kᵀ and P·V are each N·N·D = 288
    multiplications and 288 additions (a MAC is one of each), so in fp32
    E = 576 × 3.7 pJ + 576 × 0.9 pJ = 2131.2 + 518.4 = 2649.6 pJ."""
    counts = {c.node: c for c in count_graph(float_attention_graph(6, 8))}
    pj = sum(compute_energy_pj(counts[n], HOROWITZ_45NM) for n in ("scores", "context"))
    assert pj == pytest.approx(576 * 3.7 + 576 * 0.9) == pytest.approx(2649.6)
    # the same MACs in the integer graph: int8 multiply 0.2 pJ + int32 add 0.1 pJ per MAC,
    # plus one requantization (int32 multiply + add, 3.2 pJ) per output element (36 + 48)
    icounts = {c.node: c for c in count_graph(attention_graph(6, 8))}
    ipj = sum(compute_energy_pj(icounts[n], HOROWITZ_45NM) for n in ("scores", "context"))
    assert ipj == pytest.approx(576 * 0.3 + (36 + 48) * 3.2)
    print(f"\nEcoFormer accounting, attention matmuls N=6 D=8: fp32 {pj:.1f} pJ, "
          f"int8 {ipj:.1f} pJ, saving {pj / ipj:.1f}x")
    assert pj / ipj > 5


def test_whole_float_graph_is_multiplies_times_3_7_plus_additions_times_0_9() -> None:
    counts = count_graph(float_attention_graph(6, 8))
    mults = sum(c.macs + c.muls for c in counts)
    adds = sum(c.macs + c.accumulates + c.adds + c.other for c in counts)
    total = sum(compute_energy_pj(c, HOROWITZ_45NM) for c in counts)
    assert mults == 2112
    assert total == pytest.approx(mults * 3.7 + adds * 0.9)


def test_fp32_pricing_of_integer_counts() -> None:
    c = OpCount("n", "QFullyConnected", "int", macs=1000, adds=10, requants=10)
    assert compute_energy_pj(c, HOROWITZ_45NM) == pytest.approx(1000 * 0.3 + 10 * 0.1 + 10 * 3.2)
    assert compute_energy_pj(c, HOROWITZ_45NM, "fp32") == pytest.approx(1000 * 4.6 + 10 * 0.9)


def test_memory_energy_per_level() -> None:
    c = OpCount("n", "QFullyConnected", "int", weight_bytes=800, activation_read_bytes=16,
                activation_write_bytes=8)
    # 8 KB cache: 10 pJ per 64-bit access; DRAM 1.3 nJ per 64-bit access
    assert memory_energy_pj(c, HOROWITZ_45NM, "flash", "sram") == pytest.approx(824 * 1.25)
    assert memory_energy_pj(c, HOROWITZ_45NM, "dram", "dram") == pytest.approx(824 * 162.5)


def test_accumulate_is_cheaper_than_mac() -> None:
    mac = OpCount("a", "QFullyConnected", "int", macs=100)
    acc = OpCount("b", "QFullyConnected", "int", accumulates=100, spike_driven=True)
    assert compute_energy_pj(acc, HOROWITZ_45NM) == pytest.approx(10.0)
    assert compute_energy_pj(mac, HOROWITZ_45NM) == pytest.approx(30.0)
