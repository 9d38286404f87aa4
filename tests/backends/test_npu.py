"""NPU: vela compiles an int8 model the SDK wrote; elsewhere a labelled roofline estimate."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.backends import sample_graphs as sg
from sdk.backends.npu import npu_estimate
from sdk.backends.npu.roofline import RooflineEstimate, roofline
from sdk.backends.npu.vela import compile_vela, vela_executable
from sdk.backends.partition import compile_for
from sdk.compile.tflite_writer import write_tflite
from sdk.graph.ir import Tensor
from sdk.ops.interpreter import run_graph

needs_vela = pytest.mark.skipif(vela_executable() is None, reason="ethos-u-vela not installed")


@needs_vela
def test_vela_compiles_sdk_model_and_sdk_reports_its_estimate() -> None:
    report = npu_estimate(sg.cnn_graph(), "corstone-300-ethos-u55")
    assert report.accelerator == "ethos-u55-128"
    assert report.cycles_total >= report.cycles_npu > 0
    assert report.inferences_per_s == pytest.approx(report.clock_hz / report.cycles_total, rel=0.01)
    # from cnn_graph's shapes: conv 3x3 3->8 on 16x16, depthwise 3x3 stride 2 -> 8x8x8,
    # pointwise 8->8 on 8x8, fc 128->10, and vela counts the 2x2 max pool's window reads
    conv, dw, pw = 16 * 16 * 8 * (3 * 3 * 3), 8 * 8 * 8 * (3 * 3), 8 * 8 * 8 * 8
    fc, pool = 128 * 10, 4 * 4 * 8 * (2 * 2)
    assert report.nn_macs == conv + dw + pw + fc + pool
    assert report.sram_traffic_bytes > 0
    assert report.optimized_ops == ["CUSTOM 'ethos-u'"] and report.cpu_operators == 0
    names = {layer.name for layer in report.layers if layer.target == "NPU"}
    assert {"c1", "dw", "pw", "res", "logits"} <= names
    assert "vela estimate" in report.summary()


@needs_vela
def test_ops_vela_cannot_place_stay_on_cpu_beside_the_ethos_u_op() -> None:
    graph = sg.fc_graph()
    graph.add_tensor(Tensor("y_float", "float32", (4, 16)))
    q = graph.tensor("y").quant
    graph.add_node("DequantizeLinear", ["y"], ["y_float"], name="deq",
                   scale=float(q.scale), zero_point=int(q.zero_point))
    graph.outputs = ["y_float"]
    report = compile_vela(write_tflite(graph).data, "fc_deq")
    assert "CUSTOM 'ethos-u'" in report.optimized_ops
    assert report.cpu_ops == ["DEQUANTIZE"]
    assert report.cpu_operators == 1 and report.npu_operators == 1


@needs_vela
def test_npu_backend_runs_integer_kernels_and_carries_the_estimate() -> None:
    graph = sg.cnn_graph()
    feeds = sg.random_feeds(graph, seed=5)
    exe = compile_for(graph, "npu", "corstone-300-ethos-u55")
    assert np.array_equal(exe.run(feeds)["logits"], run_graph(graph, feeds, fast=False)["logits"])
    assert exe.parts[0].estimate.cycles_total > 0


def test_npus_not_present_get_a_labelled_roofline_estimate() -> None:
    from targets import load_target

    target = load_target("raspberry-pi-5")
    est = npu_estimate(sg.cnn_graph(), target)
    assert isinstance(est, RooflineEstimate)
    assert "estimate" in est.source and "Hailo" in est.device
    acc = target.accelerator()
    peak = 2 * acc.macs_per_cycle * acc.clock_hz if acc.macs_per_cycle else acc.peak_int8_ops_per_s
    conv = next(layer for layer in est.layers if layer.node == "c1")
    assert conv.seconds == pytest.approx(max(conv.ops / peak, conv.bytes / est.bandwidth_bytes_per_s))
    assert est.seconds == pytest.approx(sum(layer.seconds for layer in est.layers))


def test_roofline_on_a_slow_cpu_is_slower_than_on_its_npu() -> None:
    from targets import load_target

    target = load_target("corstone-300-ethos-u55")
    g = sg.cnn_graph()
    assert roofline(g, target, use_accelerator=False).seconds > roofline(g, target).seconds
