"""ONNX Runtime backend: provider choice by target, QDQ export validity."""

from __future__ import annotations

import logging

import onnx

from sdk.backends import sample_graphs as sg
from sdk.backends.onnxruntime import OrtBackend, choose_providers
from sdk.backends.onnxruntime.export import export_qdq


def test_missing_providers_are_dropped_in_order() -> None:
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    chosen, skipped = choose_providers(["tensorrt", "cuda", "cpu"])  # Jetson's order
    assert chosen[-1] == "CPUExecutionProvider"
    assert all(p in available for p in chosen)
    for ep in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
        assert (ep in chosen) == (ep in available)
        if ep not in available:
            assert any(ep in note for note in skipped)


def test_the_provider_used_is_logged(caplog) -> None:
    caplog.set_level(logging.INFO, logger="sdk.backends.onnxruntime")
    exe = OrtBackend().compile(sg.fc_graph(), "jetson-orin-nano")
    assert exe.provider in exe.session.get_providers()
    assert any("runs 'fc' with" in r.getMessage() for r in caplog.records)


def test_exported_qdq_model_is_valid_onnx() -> None:
    model = export_qdq(sg.cnn_graph())
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "MatMul", "MaxPool"} <= ops
    assert [i.name for i in model.graph.input] == ["x"]
