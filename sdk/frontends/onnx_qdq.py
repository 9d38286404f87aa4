"""QDQ ONNX models (e.g. from ``onnxruntime.quantization.quantize_static``) → integer graph.

A QDQ model is a float model whose tensors pass through ``QuantizeLinear → DequantizeLinear``
pairs, and whose weights are stored as integers behind a ``DequantizeLinear``. It only
*provides the scales*: this module

1. replaces every constant ``DequantizeLinear`` by the float constant ``s·(q − z)`` and keeps
   ``(s, z, axis)`` as that constant's quantization (a uint8 constant, e.g. ORT's bias of an
   ``Add`` with uint8 activations, as int8 with ``z − 128``: the lowering writes int8
   constants, and a uint8 zero point there would clip every value above it);
2. removes every activation ``QuantizeLinear → DequantizeLinear`` pair and keeps its
   ``(s, z)`` and integer type as the tensor's quantization (uint8 becomes int8 with
   ``z − 128``, the same real grid);
3. imports the remaining float model with :func:`sdk.frontends.onnx_import.load_onnx` and runs
   the same integer lowering as post-training quantization (:mod:`sdk.quant.lower`). Weights
   re-quantized with their own scales give back the model's integers exactly.

Tensors that carry no pair (e.g. the output of a Relu that ORT left in place) take the
parameters of their input when the op keeps the grid (ReLU, pooling, layout ops), or
``(s·c, z)`` after a multiplication or division by a positive scalar constant ``c`` (the same
integers; e.g. the ``x/√2`` that ORT leaves in float before an Erf).

The model's int8 tensors that feed the integer transformer kernels (ILayerNorm, Shiftmax,
ShiftGELU) are widened exactly to int16 by the lowering (``(q − z)·k``), as PTQ would give
them int16: on the model's coarse grids those kernels' own rounding (the mean rounded to one
input step, shift-exp with a few steps per unit) costs tens of output steps.

Refused, in one line naming the node: integer graph inputs, run-time scales, int16 constants,
a DequantizeLinear whose parameters differ from its QuantizeLinear's, per-axis weights not
quantized along the output channels of their MatMul/Gemm/Conv, int8 weights holding -128,
block quantization, per-channel activations.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from sdk.errors import GraphError, ModelFormatError
from sdk.graph import Graph, QuantParams

_ONNX_INT = {2: "uint8", 3: "int8", 5: "int16"}
KEEPS_GRID = {"Relu", "Clip", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze",
              "Unsqueeze", "Identity", "Slice", "Gather", "Split", "Pad", "Resize",
              "AveragePool"}


def _params(inits: dict[str, np.ndarray], node, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Scale, zero point and integer type of a Q/DQ node (constant operands only)."""
    attrs = {a.name: a for a in node.attribute}
    if "block_size" in attrs and attrs["block_size"].i:
        raise ModelFormatError(f"{where}: {node.op_type} {node.name!r} is block-quantized "
                               "(block_size); the SDK takes per-tensor and per-axis scales")
    try:
        scale = inits[node.input[1]].astype(np.float32)
    except KeyError:
        raise ModelFormatError(f"{where}: {node.op_type} {node.name!r} has a run-time scale; "
                               "only constant scales are supported") from None
    if len(node.input) > 2 and node.input[2]:
        zp = inits[node.input[2]]
        dtype = str(zp.dtype)
    elif "output_dtype" in attrs and attrs["output_dtype"].i:
        dtype = {**_ONNX_INT, 6: "int32"}.get(attrs["output_dtype"].i)
        if dtype is None:
            raise ModelFormatError(f"{where}: {node.op_type} {node.name!r} has output_dtype "
                                   f"{attrs['output_dtype'].i}; the SDK reads int8, uint8 and "
                                   "int16 QDQ models")
        zp = np.zeros(scale.shape, dtype)
    else:
        zp, dtype = np.zeros(scale.shape, np.uint8), "uint8"
    if dtype not in ("int8", "uint8", "int16", "int32"):
        raise ModelFormatError(f"{where}: {node.op_type} {node.name!r} uses type {dtype}; "
                               "the SDK reads int8, uint8 and int16 QDQ models")
    return scale, zp.astype(np.int64), dtype


_WEIGHTED = ("MatMul", "Gemm", "Conv")


def _check_weight_axis(dq, axis: int, q: np.ndarray, uses: list, where: str) -> None:
    """A per-axis weight must be quantized along its consumer's output channels (the axis
    the integer kernels requantize per channel); scales along the reduction axis cannot be
    mapped."""
    for c, i in uses:
        want = None
        if c.op_type == "MatMul" and i == 1:
            want = q.ndim - 1
        elif c.op_type == "Gemm" and i == 1:
            trans_b = next((a.i for a in c.attribute if a.name == "transB"), 0)
            want = 0 if trans_b else 1
        elif c.op_type == "Conv" and i == 1:
            want = 0
        if want is not None and axis != want:
            raise ModelFormatError(f"{where}: DequantizeLinear {dq.name!r} quantizes the weight "
                                   f"of {c.op_type} {c.name!r} along axis {axis}; only its "
                                   f"output channels (axis {want}) can be requantized per channel")


def _as_int8(scale: np.ndarray, zp: np.ndarray, dtype: str) -> tuple[QuantParams, str]:
    if dtype == "uint8":  # same real grid: q_int8 = q_uint8 − 128
        return QuantParams(scale, (zp - 128).astype(np.int32)), "int8"
    return QuantParams(scale, zp.astype(np.int32)), dtype


def strip_qdq(model: Any) -> tuple[Any, dict[str, tuple[QuantParams, str]],
                                   dict[str, QuantParams]]:
    """Float ModelProto without Q/DQ nodes, activation parameters and weight parameters."""
    from onnx import numpy_helper

    where = f"QDQ model {model.graph.name!r}"
    model = copy.deepcopy(model)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    act: dict[str, tuple[QuantParams, str]] = {}
    weights: dict[str, QuantParams] = {}
    new_inits: dict[str, np.ndarray] = {}
    rename: dict[str, str] = {}
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for c in g.node:
        for i, x in enumerate(c.input):
            consumers.setdefault(x, []).append((c, i))
    keep = []
    drop_names: set[str] = set()
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            scale, zp, dtype = _params(inits, n, where)
            q = inits[n.input[0]].astype(np.int64)
            axis = None
            if scale.ndim == 1 and scale.size > 1:
                axis = int(next((a.i for a in n.attribute if a.name == "axis"), 1))
                axis = axis + q.ndim if axis < 0 else axis
                _check_weight_axis(n, axis, q, consumers.get(n.output[0], []), where)
                shape = [1] * q.ndim
                shape[axis] = -1
                real = (q - zp.reshape(shape)) * scale.reshape(shape)
            else:
                scale, zp = scale.reshape(()), zp.reshape(())
                real = (q - zp) * scale
            if dtype == "int8" and q.size and q.min() < -127 and any(
                    c.op_type in _WEIGHTED and i == 1 for c, i in consumers.get(n.output[0], [])):
                raise ModelFormatError(f"{where}: DequantizeLinear {n.name!r}: weight "
                                       f"{n.input[0]!r} holds -128; the integer kernels take "
                                       "symmetric weights in [-127, 127]")
            new_inits[n.output[0]] = real.astype(np.float32)
            if dtype == "int16":
                raise ModelFormatError(f"{where}: DequantizeLinear {n.name!r} holds constant "
                                       f"{n.input[0]!r} as int16; the SDK keeps constants on "
                                       "int8 grids (quantize weights with QInt8)")
            if dtype != "int32":
                # the lowering writes constants as int8: a uint8 grid moves to z − 128 (the
                # same real grid), so the constant's integers are the model's exactly
                zp8 = zp - 128 if dtype == "uint8" else zp
                weights[n.output[0]] = QuantParams(scale, zp8.astype(np.int32), axis)
            drop_names.add(n.input[0])
            continue
        if n.op_type == "DequantizeLinear":
            q = producer.get(n.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                raise ModelFormatError(f"{where}: DequantizeLinear {n.name!r} reads "
                                       f"{n.input[0]!r}, which is not a QuantizeLinear output; "
                                       "integer graph inputs are not supported")
            qs, qz, qd = _params(inits, q, where)
            ds, dz, dd = _params(inits, n, where)
            if qd != dd or qs.size != ds.size or not (np.array_equal(qs.ravel(), ds.ravel())
                                                      and np.array_equal(qz.ravel(), dz.ravel())):
                raise ModelFormatError(f"{where}: DequantizeLinear {n.name!r} reads "
                                       f"{n.input[0]!r} with other parameters than its "
                                       f"QuantizeLinear {q.name!r} wrote it with; a Q/DQ pair "
                                       "must share scale, zero point and type")
            x = q.input[0]
            if n.output[0] in outputs:  # keep the graph output's name
                rename[x] = n.output[0]
            else:
                rename[n.output[0]] = x
            continue
        if n.op_type == "QuantizeLinear":
            scale, zp, dtype = _params(inits, n, where)
            if scale.size != 1 or dtype == "int32":
                raise ModelFormatError(f"{where}: QuantizeLinear {n.name!r} quantizes activation "
                                       f"{n.input[0]!r} per channel or to {dtype}; the SDK takes "
                                       "per-tensor int8/uint8/int16 activations")
            act[n.input[0]] = _as_int8(scale.reshape(()), zp.reshape(()), dtype)
            continue
        keep.append(n)
    # resolve chains so every name maps to its final name
    def final(name: str) -> str:
        seen = set()
        while name in rename and name not in seen:
            seen.add(name)
            name = rename[name]
        return name
    for n in keep:
        for i, x in enumerate(n.input):
            n.input[i] = final(x)
        for i, x in enumerate(n.output):
            n.output[i] = final(x)
    act = {final(k): v for k, v in act.items()}
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept_inits = [t for t in g.initializer if t.name not in drop_names and t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items() if k in used)
    del g.value_info[:]
    for vi in list(g.input):
        vi.name = final(vi.name)
    return model, act, {k: v for k, v in weights.items() if k in used}


def _positive_scale(graph: Graph, n) -> tuple[str, float] | None:
    """``(x, c)`` when node ``n`` computes ``x·c``, ``c·x`` or ``x/c`` (then ``c`` is the
    reciprocal) for a positive finite scalar constant; else None."""
    from sdk.quant.fuse import const_value

    if n.op not in ("Mul", "Div") or len(n.inputs) != 2:
        return None
    for k in ((1,) if n.op == "Div" else (1, 0)):
        c = const_value(graph, n.inputs[k])
        if c is not None and np.size(c) == 1 and const_value(graph, n.inputs[1 - k]) is None:
            c = float(np.ravel(c)[0])
            if c > 0 and np.isfinite(c):
                return n.inputs[1 - k], (1.0 / c if n.op == "Div" else c)
    return None


def _propagate(graph: Graph, act: dict[str, tuple[QuantParams, str]]) -> None:
    """Tensors without a Q/DQ pair inherit their input's grid through grid-keeping ops."""
    missing = []
    for n in graph.topological_order():
        for o in n.outputs:
            if not o or o in act or graph.tensor(o).dtype != "float32":
                continue
            if n.op in KEEPS_GRID and n.inputs[0] in act:
                act[o] = act[n.inputs[0]]
            elif (xc := _positive_scale(graph, n)) is not None and xc[0] in act:
                # x·c or x/c on x's grid (s, z) is exactly (s·c, z) with the same integers
                (qp, dt), c = act[xc[0]], xc[1]
                act[o] = (QuantParams(np.float32(float(qp.scale) * c), qp.zero_point), dt)
            elif graph.consumers().get(o) or o in graph.outputs:
                missing.append(o)
    if missing:
        raise GraphError(f"QDQ model leaves tensor(s) {missing[:8]} unquantized; quantize "
                         "every operator (quantize_static with the default op types)")


def load_qdq(source: Any) -> Graph:
    """Import a QDQ ONNX model (path or ModelProto) as an integer-only graph."""
    from sdk.frontends.onnx_import import load_onnx, read_onnx_model
    from sdk.quant.fuse import prepare_float_graph
    from sdk.quant.integer_ops import assert_integer_only
    from sdk.quant.lower import lower
    from sdk.quant.plan import QuantPlan

    model, _ = read_onnx_model(source)
    float_model, act, weights = strip_qdq(model)
    fg = prepare_float_graph(load_onnx(float_model), keep=frozenset(act))
    _propagate(fg, act)
    per_channel = any(q.per_axis for q in weights.values())
    plan = QuantPlan(act={k: v[0] for k, v in act.items()},
                     dtype={k: v[1] for k, v in act.items()}, weights=weights,
                     per_channel=per_channel, fuse_quantized=False)
    ig = lower(fg, plan)
    ig.metadata.update(source="onnx-qdq", per_channel=per_channel)
    assert_integer_only(ig)
    return ig
