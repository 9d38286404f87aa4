"""Registers the float (ONNX-named) operators and the dtype-agnostic layout operators.

Attributes follow the newest ONNX opset: operands that older opsets carried as attributes
(Clip min/max, Squeeze/Unsqueeze/Reduce axes, Slice starts/ends, Pad pads, Split sizes,
Resize scales) are node inputs; the ONNX importer rewrites older opsets to this form. For
graphs built by hand the attribute form is accepted too. Float kernels have one NumPy/BLAS
implementation, so ``fast`` does not change them; on integer tensors ``fast`` runs the Numba
twins of Transpose, Concat, Slice and Gather (:mod:`sdk.kernels.fast.layout`, same results).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError, UnsupportedOpError
from sdk.kernels import float_ref as F
from sdk.kernels import layout as L
from sdk.kernels.fast import layout as FL
from sdk.ops.registry import register

Inputs = list["np.ndarray | None"]

# ONNX TensorProto element types the IR can hold (others are rejected at import).
ONNX_DTYPE = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool"}


def _arg(inputs: Inputs, i: int, attrs: dict[str, Any], name: str) -> Any:
    """Operand ``i`` if present, else attribute ``name`` (older-opset form), else None."""
    if len(inputs) > i and inputs[i] is not None:
        return inputs[i]
    return attrs.get(name)


def _spatial(attrs: dict[str, Any]) -> dict[str, Any]:
    keys = ("strides", "pads", "dilations", "auto_pad", "kernel_shape")
    out = {k: attrs[k] for k in keys if k in attrs}
    if isinstance(out.get("auto_pad"), bytes):
        out["auto_pad"] = out["auto_pad"].decode()
    return out


# -- dense and convolution -------------------------------------------------------------------
@register("Conv")
def _conv(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    return [F.conv(x, w, b, group=int(attrs.get("group", 1)), **_spatial(attrs))]


@register("Gemm")
def _gemm(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    c = inputs[2] if len(inputs) > 2 else None
    return [F.gemm(inputs[0], inputs[1], c, alpha=float(attrs.get("alpha", 1.0)),
                   beta=float(attrs.get("beta", 1.0)), transA=int(attrs.get("transA", 0)),
                   transB=int(attrs.get("transB", 0)))]


@register("MatMul")
def _matmul(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.matmul(inputs[0], inputs[1])]


# -- element-wise binary (NumPy broadcasting = ONNX multidirectional broadcasting) -----------
def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero (C semantics, as ONNX Runtime computes)."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) ^ (b < 0), -q, q).astype(np.result_type(a, b))


_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
    "Greater": np.greater, "Less": np.less, "Equal": np.equal,
    "GreaterOrEqual": np.greater_equal, "LessOrEqual": np.less_equal,
    "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
}


def _binary(op: str):
    fn = _BINARY[op]

    def impl(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
        return [np.asarray(fn(inputs[0], inputs[1]))]

    return impl


for _op in _BINARY:
    register(_op)(_binary(_op))


@register("Div")
def _div(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    if a.dtype.kind in "iu":
        return [_int_div(a, b)]
    return [np.asarray(a / b, dtype=a.dtype)]


@register("Pow")
def _pow(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    """``x ** y`` in x's dtype."""
    x, y = inputs[0], inputs[1]
    return [np.power(x, y.astype(x.dtype) if x.dtype.kind == "f" else y).astype(x.dtype)]


@register("Mod")
def _mod(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    if int(attrs.get("fmod", 0)):
        return [np.fmod(a, b)]
    return [np.mod(a, b)]


def _variadic(fn):
    def impl(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
        acc = inputs[0]
        for x in inputs[1:]:
            acc = fn(acc, x)
        return [np.asarray(acc)]

    return impl


register("Sum")(_variadic(np.add))
register("Max")(_variadic(np.maximum))
register("Min")(_variadic(np.minimum))


@register("Mean")
def _mean(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    s = _variadic(np.add)(inputs, attrs, fast)[0]
    return [(s / np.asarray(len(inputs), s.dtype)).astype(s.dtype)]


@register("Where")
def _where(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [np.where(inputs[0], inputs[1], inputs[2])]


# -- element-wise unary ----------------------------------------------------------------------
_UNARY = {
    "Relu": F.relu, "Sigmoid": F.sigmoid, "Tanh": np.tanh, "Erf": F.erf, "Sqrt": np.sqrt,
    "Exp": np.exp, "Log": np.log, "Neg": np.negative, "Abs": np.abs, "Floor": np.floor,
    "Ceil": np.ceil, "Round": np.round, "Sign": np.sign, "Not": np.logical_not,
    "Softplus": F.softplus, "HardSwish": F.hard_swish, "Identity": L.identity,
    "Sin": np.sin, "Cos": np.cos,
}


def _unary(op: str):
    fn = _UNARY[op]

    def impl(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
        return [np.asarray(fn(inputs[0]))]

    return impl


for _op in _UNARY:
    register(_op)(_unary(_op))


@register("IsNaN")
def _isnan(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [np.isnan(inputs[0])]


@register("IsInf")
def _isinf(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    x = inputs[0]
    neg, pos = int(attrs.get("detect_negative", 1)), int(attrs.get("detect_positive", 1))
    return [(np.isneginf(x) & bool(neg)) | (np.isposinf(x) & bool(pos))]


@register("Reciprocal")
def _reciprocal(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    x = inputs[0]
    return [(np.ones((), x.dtype) / x).astype(x.dtype)]


@register("LeakyRelu")
def _leaky(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.leaky_relu(inputs[0], alpha=float(attrs.get("alpha", 0.01)))]


@register("PRelu")
def _prelu(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.prelu(inputs[0], inputs[1])]


@register("Elu")
def _elu(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.elu(inputs[0], alpha=float(attrs.get("alpha", 1.0)))]


@register("HardSigmoid")
def _hsig(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.hard_sigmoid(inputs[0], alpha=float(attrs.get("alpha", 0.2)),
                           beta=float(attrs.get("beta", 0.5)))]


@register("Clip")
def _clip(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.clip(inputs[0], _arg(inputs, 1, attrs, "min"), _arg(inputs, 2, attrs, "max"))]


@register("Gelu")
def _gelu(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    approx = attrs.get("approximate", "none")
    return [F.gelu(inputs[0], approximate=approx.decode() if isinstance(approx, bytes) else approx)]


@register("Softmax")
def _softmax(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    """ONNX Softmax; the prepared float graph may add a key mask as inputs 1 (integer ids,
    reshaped to ``mask_shape``) and 2 (constant keep flags): see :func:`F.masked_softmax`."""
    axis = int(attrs.get("axis", -1))
    if len(inputs) > 1:
        return [F.masked_softmax(inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None,
                                 axis=axis, mask_shape=attrs.get("mask_shape"))]
    return [F.softmax(inputs[0], axis=axis)]


@register("LogSoftmax")
def _log_softmax(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.log_softmax(inputs[0], axis=int(attrs.get("axis", -1)))]


@register("Cast")
def _cast(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    to = attrs["to"]
    dtype = ONNX_DTYPE.get(to, to) if isinstance(to, int) else to
    if dtype not in ONNX_DTYPE.values():
        raise UnsupportedOpError([f"Cast(to={to})"], "the reference backend",
                                 "only float32, int8/16/32/64, uint8 and bool exist in the IR")
    return [inputs[0].astype(dtype)]


@register("Dropout")
def _dropout(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    """Inference Dropout: identity; the optional mask output is all true."""
    x = inputs[0]
    return [x, np.ones(x.shape, dtype=bool)]


# -- normalization and pooling ---------------------------------------------------------------
@register("BatchNormalization")
def _batchnorm(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    if int(attrs.get("training_mode", 0)):
        raise UnsupportedOpError(["BatchNormalization(training_mode=1)"], "the reference backend",
                                 "export the model in inference mode")
    return [F.batch_normalization(*inputs[:5], epsilon=float(attrs.get("epsilon", 1e-5)))]


@register("LayerNormalization")
def _layernorm(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    x = inputs[0]
    axis = int(attrs.get("axis", -1))
    eps = float(attrs.get("epsilon", 1e-5))
    y = F.layer_normalization(x, inputs[1], inputs[2] if len(inputs) > 2 else None,
                              axis=axis, epsilon=eps)
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.mean((x - mean) ** 2, axis=axes, keepdims=True) + np.float32(eps))
    return [y, mean.astype(x.dtype), inv_std.astype(x.dtype)]


@register("RMSNormalization")
def _rmsnorm(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    if int(attrs.get("stash_type", 1)) != 1:
        raise UnsupportedOpError([f"RMSNormalization(stash_type={attrs['stash_type']})"],
                                 "the reference backend", "only float32 statistics exist")
    return [F.rms_normalization(inputs[0], inputs[1], axis=int(attrs.get("axis", -1)),
                                epsilon=float(attrs.get("epsilon", 1e-5)))]


@register("MaskedMean")
def _masked_mean(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    """SDK-internal (prepared float graphs only, never imported): masked mean pooling."""
    return [F.masked_mean(inputs[0], inputs[1])]


@register("InstanceNormalization")
def _instnorm(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.instance_normalization(*inputs[:3], epsilon=float(attrs.get("epsilon", 1e-5)))]


@register("LRN")
def _lrn(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.lrn(inputs[0], size=int(attrs["size"]), alpha=float(attrs.get("alpha", 1e-4)),
                  beta=float(attrs.get("beta", 0.75)), bias=float(attrs.get("bias", 1.0)))]


@register("MaxPool")
def _maxpool(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.max_pool(inputs[0], ceil_mode=int(attrs.get("ceil_mode", 0)), **_spatial(attrs))]


@register("AveragePool")
def _avgpool(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.average_pool(inputs[0], ceil_mode=int(attrs.get("ceil_mode", 0)),
                           count_include_pad=int(attrs.get("count_include_pad", 0)),
                           **_spatial(attrs))]


@register("GlobalAveragePool")
def _gap(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.global_average_pool(inputs[0])]


@register("GlobalMaxPool")
def _gmp(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.global_max_pool(inputs[0])]


def _reduce(op: str):
    def impl(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
        return [F.reduce(op, inputs[0], _arg(inputs, 1, attrs, "axes"),
                         keepdims=int(attrs.get("keepdims", 1)),
                         noop_with_empty_axes=int(attrs.get("noop_with_empty_axes", 0)))]

    return impl


for _op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
            "ReduceSumSquare"):
    register(_op)(_reduce(_op))


def _arg_op(op: str):
    def impl(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
        return [F.arg_extreme(op, inputs[0], axis=int(attrs.get("axis", 0)),
                              keepdims=int(attrs.get("keepdims", 1)),
                              select_last_index=int(attrs.get("select_last_index", 0)))]

    return impl


register("ArgMax")(_arg_op("ArgMax"))
register("ArgMin")(_arg_op("ArgMin"))


@register("Resize")
def _resize(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    """Inputs ``X, roi, scales, sizes`` (opset ≥ 11); exactly one of scales / sizes given."""
    x = inputs[0]
    scales = _arg(inputs, 2, attrs, "scales")
    sizes = _arg(inputs, 3, attrs, "sizes")
    if attrs.get("axes") is not None or int(attrs.get("antialias", 0)):
        raise UnsupportedOpError(["Resize(axes/antialias)"], "the reference backend")
    if sizes is not None and np.asarray(sizes).size:
        out = [int(s) for s in np.asarray(sizes).ravel()]
        sc = [o / i for o, i in zip(out, x.shape)]
    elif scales is not None and np.asarray(scales).size:
        sc = [float(s) for s in np.asarray(scales, np.float32).ravel()]
        out = [int(np.floor(i * s)) for i, s in zip(x.shape, sc)]
    else:
        raise GraphError("Resize needs either scales or sizes")
    def _s(key: str, default: str) -> str:
        v = attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else v
    return [F.resize(x, out, sc, mode=_s("mode", "nearest"),
                     coordinate_transformation_mode=_s("coordinate_transformation_mode",
                                                       "half_pixel"),
                     nearest_mode=_s("nearest_mode", "round_prefer_floor"))]


# -- generators and shape ops ----------------------------------------------------------------
@register("Constant")
def _constant(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [np.asarray(attrs["value"])]


@register("ConstantOfShape")
def _cos(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.constant_of_shape(inputs[0], attrs.get("value"))]


@register("Shape")
def _shape(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.shape_of(inputs[0], start=int(attrs.get("start", 0)), end=attrs.get("end"))]


@register("Size")
def _size(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [np.asarray(inputs[0].size, dtype=np.int64)]


@register("Range")
def _range(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [F.range_(inputs[0], inputs[1], inputs[2])]


# -- layout (any dtype) ----------------------------------------------------------------------
@register("Reshape")
def _reshape(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.reshape(inputs[0], _arg(inputs, 1, attrs, "shape"),
                      allowzero=int(attrs.get("allowzero", 0)))]


@register("Flatten")
def _flatten(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.flatten(inputs[0], axis=int(attrs.get("axis", 1)))]


def _layout(fast: bool, *data: np.ndarray) -> Any:
    """The Numba layout twins when ``fast`` and every data operand is an integer array of
    rank ≥ 1 (the integer pipelines' tensors), else the NumPy references."""
    ok = fast and all(np.asarray(a).dtype.kind in "iu" and np.ndim(a) >= 1 for a in data)
    return FL if ok else L


@register("Transpose")
def _transpose(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [_layout(fast, inputs[0]).transpose(inputs[0], perm=attrs.get("perm"))]


@register("Concat")
def _concat(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    return [_layout(fast, *xs).concat(xs, axis=int(attrs["axis"]))]


@register("Slice")
def _slice(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [_layout(fast, inputs[0]).slice_(
        inputs[0], _arg(inputs, 1, attrs, "starts"), _arg(inputs, 2, attrs, "ends"),
        _arg(inputs, 3, attrs, "axes"), _arg(inputs, 4, attrs, "steps"))]


@register("Gather")
def _gather(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [_layout(fast, inputs[0]).gather(inputs[0], inputs[1], axis=int(attrs.get("axis", 0)))]


@register("Squeeze")
def _squeeze(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.squeeze(inputs[0], _arg(inputs, 1, attrs, "axes"))]


@register("Unsqueeze")
def _unsqueeze(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.unsqueeze(inputs[0], _arg(inputs, 1, attrs, "axes"))]


@register("Pad")
def _pad(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    value = _arg(inputs, 2, attrs, "value")
    mode = attrs.get("mode", "constant")
    return [L.pad(inputs[0], _arg(inputs, 1, attrs, "pads"), 0 if value is None else value,
                  _arg(inputs, 3, attrs, "axes"),
                  mode=mode.decode() if isinstance(mode, bytes) else mode)]


@register("Expand")
def _expand(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.expand(inputs[0], inputs[1])]


@register("Tile")
def _tile(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.tile(inputs[0], inputs[1])]


@register("Split")
def _split(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    sizes = _arg(inputs, 1, attrs, "split")
    n = attrs.get("num_outputs")
    return L.split(inputs[0], sizes, axis=int(attrs.get("axis", 0)),
                   num_outputs=None if n is None else int(n))


@register("DepthToSpace")
def _d2s(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    mode = attrs.get("mode", "DCR")
    return [L.depth_to_space(inputs[0], blocksize=int(attrs["blocksize"]),
                             mode=mode.decode() if isinstance(mode, bytes) else mode)]


@register("SpaceToDepth")
def _s2d(inputs: Inputs, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    return [L.space_to_depth(inputs[0], blocksize=int(attrs["blocksize"]))]


def _registered_here() -> frozenset[str]:
    from sdk.ops.registry import OPS

    return frozenset(name for name, impl in OPS.items() if impl.__module__ == __name__)


FLOAT_OPS: frozenset[str] = _registered_here()
"""The float operator names this module implements: ONNX names (what the ONNX importer
accepts) plus :data:`INTERNAL_OPS`."""

INTERNAL_OPS = frozenset({"MaskedMean"})
"""Float ops that only :func:`sdk.quant.fuse.prepare_float_graph` writes (not ONNX: the
importer refuses them)."""
