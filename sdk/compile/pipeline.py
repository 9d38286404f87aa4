"""``compile_model``: ONNX file + calibration data → verified integer :class:`Bundle`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.compile.bundle import Bundle


def is_qdq_model(model: Any) -> bool:
    """True when the ONNX model already carries QuantizeLinear/DequantizeLinear pairs."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def compile_model(onnx_path: str | os.PathLike | Any,
                  calib: Mapping[str, np.ndarray] | None = None, *, observer: str = "minmax",
                  activation_bits: int = 8, per_channel: bool = True,
                  mixed_precision: bool = True,
                  state_pairs: Mapping[str, str] | None = None) -> Bundle:
    """Compile an ONNX model to an integer bundle.

    A float model is calibrated on ``calib`` (input name → array, first axis = samples) and
    quantized (see :func:`sdk.quant.quantize`); a QDQ model (e.g. from
    ``onnxruntime.quantization.quantize_static``) brings its own scales and needs no ``calib``.
    ``state_pairs`` (state input → state output; None: by name, ``{}``: none) is passed to
    :func:`sdk.quant.quantize`, which gives each recurrent state pair one shared grid.
    """
    from sdk.errors import CalibrationError
    from sdk.frontends.onnx_import import load_onnx, read_onnx_model
    from sdk.frontends.onnx_qdq import load_qdq
    from sdk.quant.ptq import quantize

    model, _ = read_onnx_model(onnx_path)
    if is_qdq_model(model):
        graph = load_qdq(model)
    else:
        if calib is None:
            raise CalibrationError("a float model needs calibration data: pass calib "
                                   "(CLI: --calib CALIB.npz keyed by input name)")
        graph = quantize(load_onnx(model), calib, observer=observer,
                         activation_bits=activation_bits, per_channel=per_channel,
                         mixed_precision=mixed_precision, state_pairs=state_pairs)
    if isinstance(onnx_path, (str, os.PathLike)):
        from pathlib import Path

        graph.name = Path(onnx_path).stem if graph.name in ("", "model") else graph.name
    return Bundle.from_graph(graph)
