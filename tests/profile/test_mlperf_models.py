"""MLPerf Tiny's reference architectures rebuilt from their layer lists: the MAC counts and
weights the benchmark publishes, and the published figures the report compares against."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.frontends import load_onnx
from sdk.profile.mlperf_tiny import MODELS, PUBLISHED, build_onnx, published
from sdk.profile.opcount import count_graph


@pytest.mark.parametrize("name, macs, params", [
    # DS-CNN: conv 10x4 (64) 2,624 + 4 x (dw 640 + pw 4,160) + FC 780 parameters
    ("kws", 2_656_768, 22_604),
    ("vww", 7_489_664, 210_850),    # MobileNetV1 0.25 at 96x96: 7.5 M MACs
    ("ic", 12_501_632, 77_706),     # ResNet-8: 12.5 M MACs
    ("ad", 264_192, 265_864),       # FC autoencoder: 264,192 weights + 1,672 biases
])
def test_reference_architectures(name: str, macs: int, params: int) -> None:
    model = build_onnx(name)
    assert sum(int(np.prod(t.dims)) for t in model.graph.initializer) == params
    assert sum(c.macs for c in count_graph(load_onnx(model))) == macs


def test_published_table_has_each_model_on_each_stack() -> None:
    for m in MODELS:
        assert published(m, "nucleo-l4r5zi", "tflm-reference") is not None
        assert published(m, "nucleo-l4r5zi", "x-cube-ai") is not None
        assert published(m, "nucleo-h7a3zi", "x-cube-ai") is not None
    kws = published("kws", "nucleo-l4r5zi", "tflm-reference")
    assert round(kws.latency_ms) == 182 and round(kws.energy_uj) == 7374
    # average power of each published run: 40-48 mW on the L4R5, 150-170 mW on the H7A3
    for p in PUBLISHED:
        mw = p.energy_uj / p.latency_ms
        assert (38 < mw < 50) if p.board == "nucleo-l4r5zi" else (140 < mw < 175)
