"""``compile_model``: ONNX file + calibration data → verified integer :class:`Bundle`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sdk.compile.bundle import Bundle


def is_qdq_model(model: Any) -> bool:
    """True when the ONNX model already carries QuantizeLinear/DequantizeLinear pairs."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


#: ops a dynamic-axes export keeps only because its input shapes are unknown at import
SHAPE_ARITHMETIC = frozenset({"Shape", "ConstantOfShape", "Range", "Expand", "Size"})


def _static_for(graph: Any, calib: Mapping[str, np.ndarray]) -> Any:
    """A dynamic-axes export (``torch.onnx.export(..., dynamic_axes=...)``) with shape
    arithmetic left in it gets the static input shapes of one calibration sample and is folded
    again (:func:`sdk.frontends.onnx_import.specialize_input_shapes`): an integer graph needs
    static shapes for its masks and arena plan. Other graphs are returned as they are."""
    from sdk.frontends.onnx_import import specialize_input_shapes

    dynamic = [n for n in graph.inputs
               if graph.tensor(n).shape is not None and -1 in graph.tensor(n).shape]
    if not dynamic or not any(n.op in SHAPE_ARITHMETIC for n in graph.nodes):
        return graph
    shapes = {n: np.shape(calib[n])[1:] for n in dynamic if n in calib}
    return specialize_input_shapes(graph, shapes) if shapes else graph


def compile_model(onnx_path: str | os.PathLike | Any,
                  calib: Mapping[str, np.ndarray] | None = None, *, observer: str = "minmax",
                  activation_bits: int = 8, per_channel: bool = True,
                  mixed_precision: bool = True,
                  state_pairs: Mapping[str, str] | None = None,
                  int16_layers: str | Sequence[str] = "none",
                  smooth_alpha: float | None = None,
                  observer_for: Mapping[str, str] | None = None,
                  target_cosine: float = 0.99, sensitivity: str = "integer",
                  report: bool = False) -> Bundle:
    """Compile an ONNX model to an integer bundle.

    A float model is calibrated on ``calib`` (input name → array, first axis = samples) and
    quantized (see :func:`sdk.quant.quantize`); a dynamic-axes export whose shape arithmetic
    only static shapes can fold is first given one calibration sample's input shapes. A QDQ
    model (e.g. from ``onnxruntime.quantization.quantize_static``) brings its own scales and
    needs no ``calib``.
    ``state_pairs`` (state input → state output; None: by name, ``{}``: none) is passed to
    :func:`sdk.quant.quantize`, which gives each recurrent state pair one shared grid.
    ``int16_layers`` (``"none"`` | ``"auto"`` | tensor names), ``smooth_alpha`` (SmoothQuant
    α, None = off), ``observer`` ``"auto"`` / ``observer_for`` (per-tensor observers) and
    ``target_cosine`` (the auto int16 choice's goal), ``sensitivity`` (``integer`` |
    ``float``: how the sensitivity report measures) are the outlier tools of
    :func:`sdk.quant.quantize`. ``report=True`` attaches ``bundle.ptq_report``
    (:class:`sdk.quant.ptq.PTQReport`, with per-layer errors of the integer graph against
    float on calibration samples in ``layers``) for a float model.
    """
    from sdk.errors import CalibrationError, UnsupportedOpError
    from sdk.frontends.onnx_import import load_onnx, read_onnx_model
    from sdk.frontends.onnx_qdq import load_qdq
    from sdk.quant.ptq import PTQReport, quantize

    model, _ = read_onnx_model(onnx_path)
    rep = PTQReport() if report else None
    if is_qdq_model(model):
        graph = load_qdq(model)
    else:
        if calib is None:
            raise CalibrationError("a float model needs calibration data: pass calib "
                                   "(CLI: --calib CALIB.npz keyed by input name)")
        try:
            float_graph = load_onnx(model)
        except UnsupportedOpError as exc:
            raise _with_lowering_gaps(exc, model) from None
        graph = quantize(_static_for(float_graph, calib), calib, observer=observer,
                         activation_bits=activation_bits, per_channel=per_channel,
                         mixed_precision=mixed_precision, state_pairs=state_pairs,
                         int16_layers=int16_layers, smooth_alpha=smooth_alpha,
                         observer_for=observer_for, target_cosine=target_cosine,
                         sensitivity=sensitivity, report=rep)
    if isinstance(onnx_path, (str, os.PathLike)):
        from pathlib import Path

        graph.name = Path(onnx_path).stem if graph.name in ("", "model") else graph.name
    bundle = Bundle.from_graph(graph)
    if rep is not None and rep.float_graph is not None:
        from sdk.quant.sensitivity import layer_errors

        rep.layers = layer_errors(rep.float_graph, bundle.graph, rep.samples)
        bundle.ptq_report = rep
    return bundle


# Ops that the float-graph preparation can absorb into a fused pattern (spelled-out LayerNorm /
# RMSNorm / GELU, attention masks, identity casts) or that only ever compute shapes: a node of
# one of these is not reported as a lowering gap before the graph exists.
_ABSORBABLE = frozenset({
    "Pow", "Sqrt", "ReduceMean", "Reciprocal", "Div", "Erf", "Tanh", "Cast", "Where",
    "Equal", "Not", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor",
    "Expand", "Shape", "Size", "Range", "ConstantOfShape", "Constant", "IsNaN", "IsInf",
    "Min", "Max", "Floor", "Ceil", "Round", "Mod", "Sign", "Sin", "Cos", "Tile", "Sum",
    "Mean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
    "ReduceSumSquare", "Log",
})


def _with_lowering_gaps(exc: Any, model: Any) -> Any:
    """The importer's UnsupportedOpError, extended by the ops the integer lowering will refuse
    once the importer's gaps are fixed, so a user sees ONE list instead of two rounds.

    Only ops that certainly fail are added: an op with no integer lowering, computed from the
    model's inputs (not folded as a constant), and not one the float-graph preparation can fuse
    away (``_ABSORBABLE``)."""
    from sdk.errors import UnsupportedOpError
    from sdk.quant.lower import LOWERINGS

    g = model.graph
    dynamic = {i.name for i in g.input} - {t.name for t in g.initializer}
    later: set[str] = set()
    for node in g.node:
        if node.op_type in ("Shape", "Size"):
            continue                    # shapes are static once the inputs are specialised
        if not any(i in dynamic for i in node.input if i):
            continue
        dynamic.update(o for o in node.output if o)
        if (node.domain in ("", "ai.onnx") and node.op_type not in LOWERINGS
                and node.op_type not in _ABSORBABLE and node.op_type not in exc.ops):
            later.add(node.op_type)
    if not later:
        return exc
    first = str(exc).split("; ", 1)
    hint = ((first[1] + "; ") if len(first) == 2 else "") + (
        f"the integer lowering will also refuse: {', '.join(sorted(later))} "
        "(docs/ops.md lists what it supports)")
    return UnsupportedOpError(exc.ops, "the ONNX importer", hint)
