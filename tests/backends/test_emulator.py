"""Emulator mode: target limits enforced at compile time; modelled beside measured latency."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.backends import sample_graphs as sg
from sdk.backends.emulator import check_fits, emulate
from sdk.errors import TargetError, UnsupportedOpError
from sdk.ops.interpreter import run_graph


def test_model_too_big_for_flash_fails_with_needed_and_available() -> None:
    graph = sg.fc_graph(batch=1, k=1536, n=1536)  # 2.25 MiB of int8 weights
    with pytest.raises(TargetError, match=r"needs 23\d\d\.\d KiB for weights; target stm32h7 "
                                          r"has 2048\.0 KiB of flash"):
        check_fits(graph, "stm32h7")
    assert check_fits(graph, "raspberry-pi-4").flash_needed_bytes > 1536 * 1536


def test_activations_too_big_for_ram_fail_with_needed_and_available() -> None:
    graph = sg.fc_graph(batch=1100, k=1024, n=16)  # 1100 KiB input, 1 MiB of SRAM
    with pytest.raises(TargetError, match=r"needs 11\d\d\.\d KiB of arena; target stm32h7 "
                                          r"has 1024\.0 KiB of RAM"):
        check_fits(graph, "stm32h7")


def test_mcu_target_rejects_ops_without_firmware_kernel() -> None:
    pytest.importorskip("firmware_bridge.op_encoders", reason="firmware bridge not built")
    from firmware_bridge.op_encoders import ENCODERS

    # the segmentation graph's Pad and ResizeNearest have no firmware kernel (the attention
    # block, used here before, is now fully implemented, so it no longer tested anything)
    graph = sg.segmentation_graph()
    missing = sorted({n.op for n in graph.nodes if n.op not in ENCODERS})
    if not missing:
        pytest.skip("the firmware now implements every op of the segmentation graph; "
                    "pick a graph with an op it lacks")
    with pytest.raises(UnsupportedOpError) as err:
        check_fits(graph, "stm32h7")
    assert all(op in str(err.value) for op in missing), (missing, str(err.value))
    check_fits(sg.attention_graph(), "stm32h7")   # a graph the firmware does run passes


def test_emulate_runs_same_numerics_and_reports_both_latencies() -> None:
    graph = sg.cnn_graph()
    feeds = sg.random_feeds(graph, seed=8)
    report = emulate(graph, "stm32h7", feeds, repeats=3)
    assert np.array_equal(report.outputs["logits"], run_graph(graph, feeds, fast=False)["logits"])
    assert report.host_latency_s > 0 and report.modelled_latency_s > 0
    text = str(report)
    assert "measured on this machine" in text and "modelled on stm32h7" in text
    assert "estimate" in text
