"""Integer-only lowering: a float graph plus a :class:`QuantPlan` → an integer graph whose
nodes are the operators of docs/ops.md.

Every multiplier is folded at compile time into a Q31 ``m0`` and a shift
(:func:`sdk.kernels.requant.quantize_multiplier`); weights become per-channel symmetric int8,
biases int32 with scale ``s_in·s_w``. The only float nodes are ``QuantizeLinear`` at the graph
inputs and ``DequantizeLinear`` at the outputs; integer graph inputs (token ids) pass through.

Op map: Conv → QConv1d / QConv2d / QDepthwiseConv2d; a BatchNormalization that did not fold →
1×1 QDepthwiseConv2d; Gemm, MatMul with constant weights → QFullyConnected; MatMul of two
activations → QMatMul; Add/Sub → QAdd; Mul/Div → QMul; Relu/Clip → fused clamp or QClamp;
MaxPool/AveragePool/GlobalAveragePool → QMaxPool2d/QAvgPool2d/QGlobalAvgPool; Softmax →
Shiftmax; LayerNormalization → ILayerNorm; Gelu → ShiftGELU; Sigmoid, Tanh and other unary
functions → QLut; Resize → ResizeNearest; layout ops kept (Concat and Softmax/GELU/LUT inputs
get a Requantize where grids differ); Dropout → Identity. Anything else: UnsupportedOpError
naming every such op.

Fusions done while lowering: Relu/Clip into the producer's ``act_min``/``act_max`` (when the
producer requantizes and the activation is its only consumer), ``MatMul`` + constant ``Add``
into one ``QFullyConnected`` with bias, a Mul/Div by a scalar into the producer's multiplier
(attention's 1/√d). A QDQ plan (``fuse_quantized=False``) keeps every rounding its model asks for.
"""

from __future__ import annotations

from sdk.errors import UnsupportedOpError
from sdk.graph import Graph
from sdk.quant import (
    lower_elementwise,
    lower_layout,
    lower_linear,
    lower_pooling,
    lower_transformer,
)
from sdk.quant.lowering import Lowering, OpLowering
from sdk.quant.plan import QuantPlan

LOWERINGS: dict[str, OpLowering] = {
    **lower_linear.LOWERINGS, **lower_elementwise.LOWERINGS, **lower_pooling.LOWERINGS,
    **lower_transformer.LOWERINGS, **lower_layout.LOWERINGS,
}


def check_lowerable(float_graph: Graph) -> None:
    """Raise UnsupportedOpError naming every op the integer lowering lacks."""
    missing = [n.op for n in float_graph.nodes if n.op not in LOWERINGS]
    if missing:
        raise UnsupportedOpError(missing, "integer lowering",
                                 "the integer graph supports the ops listed in docs/ops.md")


def lower(float_graph: Graph, plan: QuantPlan) -> Graph:
    """Lower a prepared float graph (see :func:`sdk.quant.fuse.prepare_float_graph`)."""
    check_lowerable(float_graph)
    return Lowering(float_graph.copy(), plan).run(LOWERINGS)
