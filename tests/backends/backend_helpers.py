"""Shared test helpers: run a .tflite in TFLite Micro, compare integer outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdk.compile.tflite_writer import TFLiteModel
from sdk.frontends.tflite_format import NCHW_TO_NHWC, NHWC_TO_NCHW


def run_tflite_micro(model: TFLiteModel, feeds: dict[str, np.ndarray], tmp: Path) -> dict[str, np.ndarray]:
    """Run an SDK-written model in TFLite Micro's host interpreter (PyPI tflite-micro)."""
    import tflite_micro

    path = model.save(tmp / "model.tflite")
    it = tflite_micro.runtime.Interpreter.from_file(str(path))
    for i, name in enumerate(model.inputs):
        x = feeds[name]
        it.set_input(np.ascontiguousarray(x.transpose(NCHW_TO_NHWC) if name in model.nhwc else x), i)
    it.invoke()
    out = {}
    for i, name in enumerate(model.outputs):
        y = it.get_output(i)
        out[name] = y.transpose(NHWC_TO_NCHW) if name in model.nhwc else y
    return out


def lsb_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape, (a.shape, b.shape)
    return np.abs(a.astype(np.int64) - b.astype(np.int64))
