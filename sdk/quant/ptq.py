"""Post-training quantization: calibrate a float graph and lower it to integer operators.

``quantize(graph, data)`` = prepare (fold BatchNorm, fuse GELU) → calibrate every activation
with an observer → plan integer types and parameters → integer-only lowering. The result
holds only docs/ops.md integer ops, with ``QuantizeLinear`` at the inputs and
``DequantizeLinear`` at the outputs. A step graph's recurrent state (input ``s`` paired with
output ``s_next``) gets one grid per pair, int16 under mixed precision (:mod:`sdk.quant.state`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sdk.graph import Graph
from sdk.quant.calibrate import calibrate
from sdk.quant.fuse import constants_to_tensors, prepare_float_graph
from sdk.quant.integer_ops import assert_integer_only
from sdk.quant.lower import check_lowerable, lower
from sdk.quant.plan import plan_from_observers
from sdk.quant.state import find_state_pairs


def quantize(graph: Graph, data: Mapping[str, np.ndarray], observer: str = "minmax",
             activation_bits: int = 8, per_channel: bool = True,
             mixed_precision: bool = True,
             state_pairs: Mapping[str, str] | None = None) -> Graph:
    """Integer graph for the float ``graph``, calibrated on ``data``.

    ``data`` maps each input name to an array whose first axis is the sample axis.
    ``observer``: ``minmax`` | ``percentile`` | ``mse``. ``activation_bits``: 8 or 16.
    ``per_channel``: per-output-channel weight scales (else per tensor). ``mixed_precision``:
    int16 for attention scores, LayerNorm inputs, the residual stream and recurrent state.
    ``state_pairs``: state input → state output of a step graph; None pairs them by name
    (:func:`sdk.graph.state.pair_states`: ``s`` ↔ ``s_next``/``s_out``/``s_new``),
    ``{}`` treats the graph as stateless. Each pair's input and output share dtype, scale and
    zero point, so a stream feeds the integer output straight back.
    Raises CalibrationError for missing, empty or non-finite data, UnsupportedOpError listing
    every operator the integer lowering lacks.
    """
    g = graph.copy()
    constants_to_tensors(g)
    fg = prepare_float_graph(g)
    check_lowerable(fg)  # fail before the (slow) calibration
    pairs = find_state_pairs(g, state_pairs)
    observers = calibrate(g, data, observer)
    fg = prepare_float_graph(g)  # again: calibration filled in shapes
    plan = plan_from_observers(fg, observers, activation_bits, per_channel, mixed_precision,
                               pairs)
    ig = lower(fg, plan)
    ig.metadata.update(observer=observer, activation_bits=activation_bits,
                       per_channel=per_channel, mixed_precision=mixed_precision)
    assert_integer_only(ig)
    return ig
