"""Schema entries of the layout ops and the float (ONNX) ops.

Their kernels are registered by :mod:`sdk.ops.float_ops` (one implementation serves float and
integer graphs for a layout op); here each gets its traits, cost formula and firmware
treatment. ONNX ops keep ONNX attribute semantics and their kernels check attributes, so
their entries are not strict. Every other float op the registry implements is declared with
no traits and no cost (a float op that moves no arithmetic worth counting).
"""

from __future__ import annotations

import numpy as np

from sdk.ops.schema import (
    ELEMENTWISE,
    INPLACE,
    KEEPS_GRID,
    LAYOUT_FREE,
    VIEW,
    Cost,
    CostInputs,
    OpDef,
    declare,
    per_element,
)


def _layout(name: str, *traits: str, firmware: str | None = None, why_not: str = "",
            exporters_skip: dict[str, str] | None = None) -> OpDef:
    return declare(OpDef(name, "layout", traits=frozenset(traits), firmware=firmware,
                         firmware_why_not=why_not, strict=False,
                         exporters_skip=exporters_skip or {},
                         formula="moves or views elements; keeps the quantization grid"))


_NOT_WRITTEN = "the exporter has no mapping for it yet"
_HOST_ONLY = "not in the firmware yet (runs on the host)"

for _view in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
    _layout(_view, VIEW, KEEPS_GRID, firmware="COPY")
_layout("Identity", VIEW, KEEPS_GRID, LAYOUT_FREE, firmware="COPY",
        exporters_skip={"tflite": "TFLite has no identity builtin: fold it before export"})
_layout("Transpose", KEEPS_GRID, firmware="TRANSPOSE")
_layout("Slice", KEEPS_GRID, firmware="TRANSPOSE",  # a strided gather with a base offset
        exporters_skip={"tflite": _NOT_WRITTEN})
_layout("Concat", firmware="CONCAT")
_layout("Gather", KEEPS_GRID, firmware="GATHER",
        exporters_skip={"onnxruntime": _NOT_WRITTEN, "tflite": _NOT_WRITTEN})
_layout("Split", KEEPS_GRID, why_not=_HOST_ONLY,
        exporters_skip={"onnxruntime": _NOT_WRITTEN, "tflite": _NOT_WRITTEN})
_layout("Pad", KEEPS_GRID, LAYOUT_FREE, why_not=_HOST_ONLY)


# -- float (ONNX) ops ------------------------------------------------------------------------
def _float(name: str, cost=None, *traits: str) -> OpDef:
    return declare(OpDef(name, "float", traits=frozenset(traits), strict=False,
                         cost=cost or (lambda c: Cost()),
                         firmware_why_not="float op: compile the model to integers first"))


def _conv_cost(c: CostInputs) -> Cost:
    n = c.out_elems
    return Cost(macs=n * int(np.prod(c.shape(1)[1:], dtype=np.int64)), adds=n if c.has(2) else 0)


def _gemm_cost(c: CostInputs) -> Cost:
    a = c.shape(0)
    k = a[0] if c.attrs.get("transA", 0) else a[1]
    n = c.out_elems
    return Cost(macs=n * k, adds=n if c.has(2) else 0)


def _matmul_cost(c: CostInputs) -> Cost:
    return Cost(macs=c.out_elems * c.shape(0)[-1])


def _sum_cost(c: CostInputs) -> Cost:
    return Cost(adds=c.out_elems * max(len([i for i in c.node.inputs if i]) - 1, 1))


def _window(c: CostInputs) -> int:
    k = c.attrs.get("kernel_shape", (1, 1))
    return int(np.prod(k, dtype=np.int64))


_float("Conv", _conv_cost)
_float("Gemm", _gemm_cost)
_float("MatMul", _matmul_cost)
for _op in ("Add", "Sub"):
    _float(_op, _sum_cost, ELEMENTWISE, INPLACE)
_float("Sum", _sum_cost, ELEMENTWISE)
_float("Mul", per_element(muls=1), ELEMENTWISE, INPLACE)
_float("AveragePool", lambda c: Cost(adds=c.out_elems * _window(c), other=c.out_elems))
_float("MaxPool", lambda c: Cost(other=c.out_elems * _window(c)), KEEPS_GRID)
_float("GlobalAveragePool", lambda c: Cost(adds=c.size(0)))
_float("Relu", per_element(other=1), ELEMENTWISE, INPLACE, KEEPS_GRID)
_float("Clip", per_element(other=2), ELEMENTWISE, INPLACE, KEEPS_GRID)
_float("Sigmoid", per_element(other=4), ELEMENTWISE, INPLACE)
_float("Tanh", per_element(other=4), ELEMENTWISE, INPLACE)
_float("Neg", None, ELEMENTWISE, INPLACE)
_float("Abs", None, ELEMENTWISE, INPLACE)
_float("Div", per_element(other=1))
_float("Softmax", per_element(other=4))
_float("Gelu", per_element(other=8))
_float("LayerNormalization", per_element(other=4))
_float("Dropout", None, KEEPS_GRID)


def declare_remaining_float_ops() -> None:
    """Declare, with no traits and no cost, every registered float op not declared above."""
    from sdk.ops.float_ops import FLOAT_OPS
    from sdk.ops.schema import SCHEMA

    for name in sorted(FLOAT_OPS - set(SCHEMA)):
        _float(name)


declare_remaining_float_ops()
