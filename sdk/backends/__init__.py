"""Backends: one interface (sdk.backends.base), generic partitioning with reference fallback
(sdk.backends.partition), and one small package per executor family.

The calls the CLI and Session need:

* :func:`compile_for` — partition a graph for a backend/target and compile every segment;
* :func:`default_backend` — the backend a target's first usable delegate implies;
* :func:`run_float` — run a compiled integer graph with float feeds/outputs on a backend;
* :func:`check_fits`, :func:`emulate` — emulator mode (limits, modelled vs measured latency).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.backends.base import BACKENDS, Backend, Executable, get_backend
from sdk.backends.partition import Plan, compile_for, partition


def default_backend(target: Any) -> str:
    """'npu' for a target with an accelerator this SDK emulates, 'onnxruntime' when the
    target's delegates are ONNX Runtime providers (Jetson), else 'litert'; 'reference' for
    microcontrollers without an NPU."""
    from targets import load_target

    t = load_target(target) if target is not None else load_target("laptop")
    acc = t.accelerator(include_optional=False)
    if acc is not None and acc.kind == "npu":
        return "npu"
    first = t.delegates[0].lower() if t.delegates else "cpu"
    if first in ("tensorrt", "cuda", "openvino", "qnn"):
        return "onnxruntime"
    if t.is_mcu:
        return "reference"
    return "litert"


def run_float(graph: Any, feeds: Mapping[str, np.ndarray], backend: str | None = None,
              target: Any = None) -> tuple[dict[str, np.ndarray], Plan]:
    """Run ``graph`` on ``backend`` (default: the target's) with float feeds and outputs:
    integer inputs are quantized and integer outputs dequantized with their tensors' scales."""
    from sdk.kernels.quantize import dequantize_linear, quantize_linear

    exe = compile_for(graph, backend or default_backend(target), target)
    internal = {}
    for name in graph.inputs:
        t = graph.tensor(name)
        x = np.asarray(feeds[name])
        if t.dtype != "float32" and t.quant is not None and x.dtype.kind == "f":
            x = quantize_linear(x, t.quant.scale, t.quant.zero_point, t.dtype, t.quant.axis)
        internal[name] = x
    out = {}
    for name, y in exe.run(internal).items():
        t = graph.tensor(name)
        if t.dtype != "float32" and t.quant is not None:
            y = dequantize_linear(y, t.quant.scale, t.quant.zero_point, t.quant.axis)
        out[name] = y
    return out, exe.plan


def check_fits(graph: Any, target: Any) -> Any:
    from sdk.backends.emulator import check_fits as _check
    return _check(graph, target)


def emulate(graph: Any, target: Any, feeds: Mapping[str, np.ndarray],
            backend: str = "reference", repeats: int = 10) -> Any:
    from sdk.backends.emulator import emulate as _emulate
    return _emulate(graph, target, feeds, backend, repeats)


__all__ = ["BACKENDS", "Backend", "Executable", "Plan", "check_fits", "compile_for",
           "default_backend", "emulate", "get_backend", "partition", "run_float"]
