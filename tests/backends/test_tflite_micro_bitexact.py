"""FC, conv and add are bit-exact with TFLite Micro on the same int8 .tflite model.

The SDK's reference kernels use TFLite Micro's double rounding (SaturatingRoundingDoublingHighMul
then RoundingDivideByPOT), so against TFLite Micro the test demands 0 mismatches. Against
LiteRT 2.3 it allows 1 LSB: its BUILTIN_REF kernels round once (sign(acc)·floor(|acc·M|+0.5))
and its default XNNPACK path computes rint(float32(acc)·float32(M)) (half to even), which can
land one step away from the double-rounded result.
"""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import lsb_diff, run_tflite_micro

from sdk.backends import sample_graphs as sg
from sdk.backends.partition import compile_for
from sdk.compile.tflite_writer import write_tflite
from sdk.ops.interpreter import run_graph

pytest.importorskip("tflite_micro", reason="tflite-micro not installed")

CASES = {
    "fc": lambda seed: sg.fc_graph(batch=8, k=64, n=24, seed=seed),
    "conv": lambda seed: sg.conv_graph(seed=seed),
    "add": lambda seed: sg.add_graph(seed=seed),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_tflite_micro_matches_reference_kernels_bit_for_bit(case: str, seed: int, tmp_path) -> None:
    graph = CASES[case](seed)
    feeds = sg.random_feeds(graph, seed=100 + seed)
    expected = run_graph(graph, feeds, fast=False)  # the NumPy specification
    got = run_tflite_micro(write_tflite(graph), feeds, tmp_path)
    for name in graph.outputs:
        assert got[name].dtype == np.int8
        assert int((lsb_diff(got[name], expected[name]) > 0).sum()) == 0, name


def test_per_tensor_fc_weights_also_bit_exact(tmp_path) -> None:
    """One weight scale for the whole matrix (TFLite's float32-product multiplier rule)."""
    graph = sg.fc_graph(batch=8, k=48, n=12, seed=5)
    w = graph.tensor("y_w")
    from sdk.frontends.tflite_format import fc_multipliers
    from sdk.graph.ir import QuantParams

    w.quant = QuantParams(np.float32(0.0041), 0)
    node = graph.nodes[0]
    m0, sh = fc_multipliers(float(graph.tensor("x").quant.scale), w.quant.scale,
                            float(graph.tensor("y").quant.scale))
    node.attrs["m0"], node.attrs["shift"] = np.repeat(m0, 12), np.repeat(sh, 12)
    feeds = sg.random_feeds(graph, seed=9)
    expected = run_graph(graph, feeds, fast=False)
    got = run_tflite_micro(write_tflite(graph), feeds, tmp_path)
    assert np.array_equal(got["y"], expected["y"])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend", ["litert-ref", "litert"])
def test_litert_within_one_lsb(case: str, backend: str) -> None:
    # LiteRT rounds the requantization once (BUILTIN_REF) or in float32 (XNNPACK): 1 LSB.
    graph = CASES[case](3)
    feeds = sg.random_feeds(graph, seed=7)
    expected = run_graph(graph, feeds, fast=False)
    got = compile_for(graph, backend, "laptop").run(feeds)
    for name in graph.outputs:
        assert lsb_diff(got[name], expected[name]).max() <= 1


@pytest.mark.parametrize("make", [sg.cnn_graph, sg.step_graph, sg.segmentation_graph])
def test_whole_models_bit_exact_with_tflite_micro(make, tmp_path) -> None:
    """Beyond single ops: conv+ReLU, depthwise with a PAD, residual add, pooling, flatten
    through a layout TRANSPOSE, nearest upsampling, a recurrent step — all 0 mismatches."""
    graph = make()
    feeds = sg.random_feeds(graph, seed=21)
    expected = run_graph(graph, feeds, fast=False)
    got = run_tflite_micro(write_tflite(graph), feeds, tmp_path)
    for name in graph.outputs:
        assert np.array_equal(got[name], expected[name]), name
