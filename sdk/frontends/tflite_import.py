"""Read an int8 .tflite model into the integer IR.

Accepts models as TFLite's converter writes them (per-channel int8 conv / FC weights, int32
bias, int8 activations, optional float QUANTIZE/DEQUANTIZE at the boundary) and the SDK's own
writer output, so IR → .tflite → IR gives the same graph.

What changes on the way in:

* NHWC → NCHW: 4-D activations around spatial ops (see
  :func:`sdk.frontends.tflite_format.nhwc_tensors`) become NCHW, conv weights OHWI → OIHW,
  depthwise ``[1, kh, kw, C·m]`` → ``[C·m, 1, kh, kw]``; a TRANSPOSE that only converts
  between the two orders disappears (its output is the same IR tensor).
* SAME / VALID padding → explicit pads; a PAD (with the zero point) feeding a VALID conv
  folds into the conv's pads.
* Multipliers: each op's ``m0``/``shift`` is derived from the tensor scales by the rule the
  TFLite kernel uses (:mod:`sdk.frontends.tflite_format`), so the IR computes TFLite Micro's bits.
* Fused activations become the integer op's ``act_min``/``act_max``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tflite

from sdk.errors import EdgeError, ModelFormatError, UnsupportedOpError
from sdk.frontends import tflite_format as tf
from sdk.graph.ir import Graph, QuantParams, Tensor, qrange
from sdk.kernels.requant import quantize_multiplier

_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

# tflite builtin name -> IR op name used for the layout analysis
_LAYOUT_OP = {"CONV_2D": "QConv2d", "DEPTHWISE_CONV_2D": "QDepthwiseConv2d",
              "MAX_POOL_2D": "QMaxPool2d", "AVERAGE_POOL_2D": "QAvgPool2d",
              "RESIZE_NEAREST_NEIGHBOR": "ResizeNearest", "ADD": "QAdd", "MUL": "QMul",
              "RELU": "QClamp", "RELU6": "QClamp", "RELU_N1_TO_1": "QClamp",
              "QUANTIZE": "Requantize", "DEQUANTIZE": "DequantizeLinear",
              "LOGISTIC": "QLut", "TANH": "QLut", "PAD": "Pad", "MEAN": "QGlobalAvgPool"}
_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
            "FULLY_CONNECTED": "FullyConnectedOptions", "ADD": "AddOptions",
            "MUL": "MulOptions", "MAX_POOL_2D": "Pool2DOptions",
            "AVERAGE_POOL_2D": "Pool2DOptions", "CONCATENATION": "ConcatenationOptions",
            "BATCH_MATMUL": "BatchMatMulOptions", "SOFTMAX": "SoftmaxOptions",
            "MEAN": "ReducerOptions",
            "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions"}


@dataclass
class _TT:
    """One tflite tensor as read."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray | None
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    qdim: int


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: Any


def _load(source: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "model"
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFormatError(f"cannot read {path}: {exc.strerror}") from None
    return data, path.stem


def parse_tflite(buf: bytes) -> tuple[Any, list[_TT], list[_Op], list[int], list[int]]:
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelFormatError("not a .tflite flatbuffer (no 'TFL3' identifier); give a model "
                               "written by TFLite's converter or `edge compile`")
    try:
        model = tflite.Model.GetRootAs(buf, 0)
        if model.SubgraphsLength() < 1:
            raise ModelFormatError("the .tflite model has no subgraph")
        sg = model.Subgraphs(0)
        tensors = []
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            dtype = tf.IR_DTYPE.get(t.Type())
            name = (t.Name() or b"").decode() or f"t{i}"
            if dtype is None:
                raise ModelFormatError(f"tensor {name!r} has TFLite type {t.Type()}, which the "
                                       "SDK does not read (int8/int16/int32/uint8/float32 only)")
            shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            data = None
            b = model.Buffers(t.Buffer())
            if b is not None and b.DataLength() > 0:
                raw = b.DataAsNumpy().tobytes()
                data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
            scale = zp = None
            qdim = 0
            q = t.Quantization()
            if q is not None and q.ScaleLength() > 0:
                scale = q.ScaleAsNumpy().astype(np.float32)
                zp = (q.ZeroPointAsNumpy().astype(np.int32) if q.ZeroPointLength()
                      else np.zeros(scale.size, np.int32))
                qdim = int(q.QuantizedDimension())
                _check_quant(name, shape, scale, zp, qdim)
            tensors.append(_TT(i, name, dtype, shape, data, scale, zp, qdim))
        ops = []
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            kind = _NAMES.get(builtin, f"builtin {builtin}")
            if builtin == tflite.BuiltinOperator.CUSTOM:
                kind = f"CUSTOM '{(code.CustomCode() or b'').decode()}'"
            options = None
            if kind in _OPTIONS and op.BuiltinOptions() is not None:
                cls = getattr(tflite, _OPTIONS[kind])
                options = cls()
                table = op.BuiltinOptions()
                options.Init(table.Bytes, table.Pos)
                _read_all_options(options)  # a corrupt options table fails here, not later
            if options is None and kind in _NEEDS_OPTIONS:
                raise ModelFormatError(f"operator {k} ({kind}) has no {_OPTIONS[kind]} (padding, "
                                       "strides ...); the file is corrupted: re-export the model")
            ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            _check_indices(f"operator {k} ({kind})", ins, outs, len(tensors))
            ops.append(_Op(kind, ins, outs, options))
        inputs = [int(i) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
        outputs = [int(i) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
        _check_indices("the subgraph", inputs, outputs, len(tensors), optional=False)
    except ModelFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises IndexError, struct.error ...
        detail = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise ModelFormatError(f"the .tflite file is truncated or corrupted ({type(exc).__name__}: "
                               f"{detail}); re-export the model") from None
    return model, tensors, ops, inputs, outputs


def _check_quant(name: str, shape: tuple[int, ...], scale: np.ndarray, zp: np.ndarray,
                 qdim: int) -> None:
    """A tensor's quantization as the integer kernels need it: finite positive scales, one
    zero point per scale, a per-channel axis that exists with one scale per channel."""
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise ModelFormatError(f"tensor {name!r} has quantization scale(s) "
                               f"{scale[:4].tolist()} (must be finite and > 0); the file is "
                               "corrupted: re-export the model")
    if zp.size != scale.size:
        raise ModelFormatError(f"tensor {name!r} has {scale.size} scale(s) but {zp.size} zero "
                               "point(s); the file is corrupted: re-export the model")
    if scale.size > 1 and not (0 <= qdim < len(shape) and shape[qdim] == scale.size):
        raise ModelFormatError(f"tensor {name!r} of shape {list(shape)} has {scale.size} "
                               f"per-channel scales on axis {qdim}; the file is corrupted: "
                               "re-export the model")


def _read_all_options(options: Any) -> None:
    """Read every field of an op's options table once (flatbuffers reads lazily)."""
    for attr in dir(options):
        if attr[:1].isupper() and attr not in ("Init",) and not attr.startswith("GetRootAs") \
                and not attr.endswith(("BufferHasIdentifier", "IsNone", "Length", "AsNumpy")):
            fn = getattr(options, attr)
            if callable(fn):
                try:
                    fn()
                except TypeError as exc:  # a getter that takes an index: not a plain field
                    if "argument" not in str(exc):
                        raise


def _check_indices(where: str, ins: list[int], outs: list[int], n: int,
                   optional: bool = True) -> None:
    lo = -1 if optional else 0
    bad = [i for i in ins if not lo <= i < n] + [i for i in outs if not 0 <= i < n]
    if bad:
        raise ModelFormatError(f"{where} names tensor index {bad[0]} (the model has {n} "
                               "tensors); the file is corrupted: re-export the model")
    if optional and not outs:
        raise ModelFormatError(f"{where} has no outputs; the file is corrupted: re-export "
                               "the model")


# ops whose reader cannot do without the options table
_NEEDS_OPTIONS = {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                  "CONCATENATION"}
# minimum operand count each reader needs (inputs)
_MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MUL": 2,
               "BATCH_MATMUL": 2, "TRANSPOSE": 2, "PAD": 2, "MEAN": 1, "RESHAPE": 1}


class _Reader:
    def __init__(self, tensors: list[_TT], ops: list[_Op], inputs: list[int],
                 outputs: list[int], name: str) -> None:
        self.tt = tensors
        self.ops = ops
        self.g = Graph(name)
        self.alias: dict[int, int] = {}
        self.pads: dict[int, tuple[int, int, int, int]] = {}  # conv op id -> folded pads
        consts = {str(t.index) for t in tensors if t.data is not None}
        rank = {str(t.index): len(t.shape) for t in tensors}
        layout = [(_LAYOUT_OP.get(o.kind, o.kind), [str(i) for i in o.inputs if i >= 0],
                   [str(i) for i in o.outputs]) for o in ops]
        self.nhwc = {int(s) for s in tf.nhwc_tensors(layout, rank, consts)}
        self.graph_inputs, self.graph_outputs = inputs, outputs
        self.pending: list[tuple[str, list[int | str], list[int | str], dict[str, Any]]] = []

    # naming ------------------------------------------------------------------------------------
    def rep(self, i: int) -> int:
        while i in self.alias:
            i = self.alias[i]
        return i

    def name(self, i: int) -> str:
        return self.tt[self.rep(i)].name

    def quant(self, i: int) -> tuple[float, int]:
        t = self.tt[i]
        if t.scale is None:
            raise ModelFormatError(f"tensor {t.name!r} has no quantization; the SDK reads "
                                   "integer (quantized) models")
        return float(t.scale[0]), int(t.zero_point[0])

    def node(self, op: str, inputs: list[int | str], outputs: list[int | str], **attrs: Any) -> None:
        self.pending.append((op, inputs, outputs, attrs))

    def const(self, name: str, data: np.ndarray, quant: QuantParams | None = None) -> str:
        name = self.g.unique_name(name)
        self.g.add_constant(name, data, quant)
        return name

    # passes ------------------------------------------------------------------------------------
    def fold_layout_transposes(self) -> None:
        for o in self.ops:
            if o.kind != "TRANSPOSE" or self.tt[o.inputs[1]].data is None:
                continue
            perm = tuple(int(p) for p in self.tt[o.inputs[1]].data)
            src, dst = o.inputs[0], o.outputs[0]
            if ((src in self.nhwc and dst not in self.nhwc and perm == tf.NHWC_TO_NCHW)
                    or (src not in self.nhwc and dst in self.nhwc and perm == tf.NCHW_TO_NHWC)):
                self.alias_pair(dst, src)
                o.kind = "folded"

    def alias_pair(self, dst: int, src: int) -> None:
        """``dst`` is the same IR tensor as ``src``; the surviving name is the one the SDK's
        writer did not mark as a layout temporary (``name@nhwc`` / ``name@nchw``)."""
        if "@" in self.tt[src].name and "@" not in self.tt[dst].name:
            self.tt[src].name = self.tt[dst].name
        self.alias[dst] = src

    def fold_pads(self) -> None:
        users: dict[int, list[_Op]] = {}
        for o in self.ops:
            for i in o.inputs:
                users.setdefault(i, []).append(o)
        for o in self.ops:
            # only the PAD the SDK's writer inserts for explicit conv pads folds back
            if (o.kind != "PAD" or o.inputs[0] not in self.nhwc
                    or not self.tt[o.outputs[0]].name.endswith("@padded")):
                continue
            nxt = users.get(o.outputs[0], [])
            if (len(nxt) != 1 or nxt[0].kind not in ("CONV_2D", "DEPTHWISE_CONV_2D")
                    or nxt[0].options.Padding() != tf.PAD_VALID
                    or o.outputs[0] in self.graph_outputs):
                continue
            p = self.tt[o.inputs[1]].data
            if p is None or np.any(p[0] != 0) or np.any(p[3] != 0):
                continue
            self.pads[id(nxt[0])] = (int(p[1][0]), int(p[2][0]), int(p[1][1]), int(p[2][1]))
            self.alias_pair(o.outputs[0], o.inputs[0])
            o.kind = "folded"

    # tensors -----------------------------------------------------------------------------------
    def ir_tensor(self, i: int) -> None:
        r = self.rep(i)
        t = self.tt[r]
        if t.name in self.g.tensors:
            return
        shape = t.shape
        if r in self.nhwc and len(shape) == 4:
            shape = tuple(shape[k] for k in tf.NHWC_TO_NCHW)
        q = None
        if t.scale is not None:
            q = (QuantParams(t.scale[0], t.zero_point[0]) if t.scale.size == 1
                 else QuantParams(t.scale, t.zero_point, t.qdim))
        data = t.data
        if data is not None and r in self.nhwc and data.ndim == 4:
            data = data.transpose(tf.NHWC_TO_NCHW)
        self.g.add_tensor(Tensor(t.name, t.dtype, shape, q, data))

    def build(self) -> Graph:
        for k, o in enumerate(self.ops):
            need = _MIN_INPUTS.get(o.kind, 1)
            if o.kind in _READERS and (len(o.inputs) < need or min(o.inputs[:need]) < 0):
                raise ModelFormatError(f"operator {k} ({o.kind}) has {len(o.inputs)} input(s), "
                                       f"needs {need}; the file is corrupted: re-export the "
                                       "model")
        self.fold_layout_transposes()
        self.fold_pads()
        unsupported = [o.kind for o in self.ops if o.kind != "folded" and o.kind not in _READERS]
        if unsupported:
            raise UnsupportedOpError(unsupported, "the .tflite reader",
                                     "the SDK reads int8 models of conv / depthwise / FC / add / "
                                     "mul / pooling / reshape / transpose / concat / batch-matmul")
        for k, o in enumerate(self.ops):
            if o.kind != "folded":
                try:
                    _READERS[o.kind](self, o)
                except (IndexError, KeyError, TypeError, AttributeError, ValueError,
                        ZeroDivisionError, OverflowError) as exc:
                    if isinstance(exc, EdgeError):  # (RequantizationError is a ValueError)
                        raise
                    raise ModelFormatError(
                        f"operator {k} ({o.kind}) is malformed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'bad field'}); the file is "
                        "corrupted: re-export the model") from None
        g = self.g
        for op, ins, outs, attrs in self.pending:
            names = []
            for i in ins:
                if isinstance(i, str):
                    names.append(i)
                else:
                    self.ir_tensor(i)
                    names.append(self.name(i))
            for i in outs:
                if not isinstance(i, str):
                    self.ir_tensor(i)
            out_names = [i if isinstance(i, str) else self.name(i) for i in outs]
            g.add_node(op, names, out_names, name=out_names[0], **attrs)
        for i in self.graph_inputs + self.graph_outputs:
            self.ir_tensor(i)
        g.inputs = [self.name(i) for i in self.graph_inputs]
        g.outputs = [self.name(i) for i in self.graph_outputs]
        g.validate()
        return g


# ---------------------------------------------------------------------------------------------
# per-op readers


def _act(r: _Reader, act: int, out: int) -> dict[str, int]:
    s, z = r.quant(out)
    lo, hi = tf.activation_range(act, s, z, r.tt[out].dtype)
    return {"act_min": lo, "act_max": hi}


def _weights_and_bias(r: _Reader, o: _Op, w_ir: np.ndarray, axis: int) -> tuple[str, str, np.ndarray]:
    wt = r.tt[o.inputs[1]]
    if wt.data is None or wt.scale is None:
        raise ModelFormatError(f"weights {wt.name!r} are not constant int8 data; the SDK reads "
                               "models with constant quantized weights")
    n = w_ir.shape[0]
    scale = wt.scale if wt.scale.size > 1 else np.full(1, wt.scale[0], np.float32)
    q = (QuantParams(scale, np.zeros(scale.size, np.int32), 0) if scale.size > 1
         else QuantParams(scale[0], 0))
    w = r.const(wt.name, w_ir, q)
    bias = ""
    if len(o.inputs) > 2 and o.inputs[2] >= 0:
        bt = r.tt[o.inputs[2]]
        if bt.data is None or bt.data.size != n:
            raise ModelFormatError(f"bias {bt.name!r} must be {n} constant int32 values; the file "
                                   "is corrupted: re-export the model")
        bias = r.const(bt.name, np.asarray(bt.data, np.int32).reshape(n))
    return w, bias, scale


def _read_fc(r: _Reader, o: _Op) -> None:
    x, out = o.inputs[0], o.outputs[0]
    wt = r.tt[o.inputs[1]]
    w, bias, s_w = _weights_and_bias(r, o, wt.data, 0)
    s_x, z_x = r.quant(x)
    s_o, z_o = r.quant(out)
    m0, sh = tf.fc_multipliers(s_x, s_w, s_o)
    opts = o.options
    act = opts.FusedActivationFunction() if opts else tf.ACT_NONE
    src: int | str = x
    k = wt.shape[1]
    if len(r.tt[x].shape) > 2 and not (opts and opts.KeepNumDims()):
        flat = r.tt[x].name + "@2d"
        rows = int(np.prod(r.tt[x].shape)) // k
        r.g.add_tensor(Tensor(flat, r.tt[x].dtype, (rows, k), QuantParams(s_x, z_x)))
        shape = r.const(f"{flat}_shape", np.array([rows, k], np.int64))
        r.node("Reshape", [x, shape], [flat])
        src = flat
    r.node("QFullyConnected", [src, w, bias], [out], x_zp=z_x, m0=m0, shift=sh, out_zp=z_o,
           dtype=r.tt[out].dtype, **_act(r, act, out))


def _explicit_pads(r: _Reader, o: _Op, kernel: tuple[int, int], strides: tuple[int, int],
                   dil: tuple[int, int], padding: int) -> list[int]:
    if id(o) in r.pads:
        return list(r.pads[id(o)])
    if padding == tf.PAD_VALID:
        return [0, 0, 0, 0]
    _, h, w, _ = r.tt[o.inputs[0]].shape
    (t, b), (l, rr) = (tf.same_pads(h, kernel[0], strides[0], dil[0]),
                       tf.same_pads(w, kernel[1], strides[1], dil[1]))
    return [t, l, b, rr]


def _read_conv(r: _Reader, o: _Op) -> None:
    x, out = r.rep(o.inputs[0]), o.outputs[0]
    wt = r.tt[o.inputs[1]]
    opts = o.options
    depthwise = o.kind == "DEPTHWISE_CONV_2D"
    w_ir = wt.data.transpose(3, 0, 1, 2) if depthwise else wt.data.transpose(0, 3, 1, 2)
    w, bias, s_w = _weights_and_bias(r, o, w_ir, 0)
    s_x, z_x = r.quant(x)
    s_o, z_o = r.quant(out)
    m0, sh = tf.conv_multipliers(s_x, s_w, s_o)
    strides = (opts.StrideH(), opts.StrideW())
    dil = (opts.DilationHFactor(), opts.DilationWFactor())
    kernel = (w_ir.shape[2], w_ir.shape[3])
    pads = _explicit_pads(r, o, kernel, strides, dil, opts.Padding())
    c = r.tt[x].shape[3]
    r.node("QDepthwiseConv2d" if depthwise else "QConv2d", [o.inputs[0], w, bias], [out],
           strides=list(strides), pads=pads, dilations=list(dil), group=c if depthwise else 1,
           x_zp=z_x, m0=m0, shift=sh, out_zp=z_o, dtype=r.tt[out].dtype,
           **_act(r, opts.FusedActivationFunction(), out))


def _binary_operand(r: _Reader, i: int, out: int) -> int | str:
    t = r.tt[i]
    if t.data is not None and out in r.nhwc and t.data.ndim == 4:
        return r.const(t.name, t.data.transpose(tf.NHWC_TO_NCHW), QuantParams(*r.quant(i)))
    return i


def _read_add(r: _Reader, o: _Op) -> None:
    a, b, out = o.inputs[0], o.inputs[1], o.outputs[0]
    (s_a, z_a), (s_b, z_b), (s_o, z_o) = r.quant(a), r.quant(b), r.quant(out)
    act = o.options.FusedActivationFunction() if o.options else tf.ACT_NONE
    ins = [_binary_operand(r, a, out), _binary_operand(r, b, out)]
    if o.kind == "ADD":
        r.node("QAdd", ins, [out], a_zp=z_a, b_zp=z_b, out_zp=z_o, dtype=r.tt[out].dtype,
               **tf.add_params(s_a, s_b, s_o, r.tt[out].dtype), **_act(r, act, out))
    else:
        m0, sh = tf.mul_multiplier(s_a, s_b, s_o)
        r.node("QMul", ins, [out], a_zp=z_a, b_zp=z_b, m0=m0, shift=sh, out_zp=z_o,
               dtype=r.tt[out].dtype, **_act(r, act, out))


def _read_relu(r: _Reader, o: _Op) -> None:
    x, out = o.inputs[0], o.outputs[0]
    if r.quant(x) != r.quant(out):
        raise UnsupportedOpError([o.kind], "the .tflite reader",
                                 f"{o.kind} that changes the quantization of {r.tt[x].name!r}")
    act = {"RELU": tf.ACT_RELU, "RELU6": tf.ACT_RELU6, "RELU_N1_TO_1": tf.ACT_RELU_N1_TO_1}[o.kind]
    lo, hi = _act(r, act, out).values()
    r.node("QClamp", [x], [out], min=lo, max=hi)


def _read_pool(r: _Reader, o: _Op) -> None:
    opts = o.options
    kernel = (opts.FilterHeight(), opts.FilterWidth())
    strides = (opts.StrideH(), opts.StrideW())
    if opts.FusedActivationFunction() != tf.ACT_NONE:
        raise UnsupportedOpError([o.kind], "the .tflite reader", "pooling with a fused activation")
    pads = _explicit_pads(r, o, kernel, strides, (1, 1), opts.Padding())
    if o.kind == "MAX_POOL_2D":
        r.node("QMaxPool2d", [o.inputs[0]], [o.outputs[0]], kernel=list(kernel),
               strides=list(strides), pads=pads, dilations=[1, 1])
    else:
        r.node("QAvgPool2d", [o.inputs[0]], [o.outputs[0]], kernel=list(kernel),
               strides=list(strides), pads=pads, count_include_pad=0)


def _read_reshape(r: _Reader, o: _Op) -> None:
    x, out = o.inputs[0], o.outputs[0]
    src: int | str = x
    if x in r.nhwc and len(r.tt[x].shape) == 4:  # flatten in TFLite's (NHWC) order
        t = r.tt[r.rep(x)]
        nm = r.g.unique_name(t.name + "@nhwc")
        r.g.add_tensor(Tensor(nm, t.dtype, t.shape, QuantParams(*r.quant(x))))
        r.node("Transpose", [x], [nm], perm=list(tf.NCHW_TO_NHWC))
        src = nm
    shape = list(r.tt[out].shape)
    if out in r.nhwc:
        raise UnsupportedOpError(["RESHAPE"], "the .tflite reader", "reshape into an NHWC image")
    sname = o.inputs[1] if len(o.inputs) > 1 and o.inputs[1] >= 0 else None
    cname = r.tt[sname].name if sname is not None else f"{r.tt[out].name}_shape"
    r.node("Reshape", [src, r.const(cname, np.array(shape, np.int64))], [out])


def _read_transpose(r: _Reader, o: _Op) -> None:
    x, out = o.inputs[0], o.outputs[0]
    if x in r.nhwc or out in r.nhwc:
        raise UnsupportedOpError(["TRANSPOSE"], "the .tflite reader", "transpose of an NHWC image")
    r.node("Transpose", [x], [out], perm=[int(p) for p in r.tt[o.inputs[1]].data])


def _read_quantize(r: _Reader, o: _Op) -> None:
    x, out = o.inputs[0], o.outputs[0]
    s_o, z_o = r.quant(out)
    dt = r.tt[out].dtype
    if r.tt[x].dtype == "float32":
        r.node("QuantizeLinear", [x], [out], scale=s_o, zero_point=z_o, dtype=dt)
        return
    s_i, z_i = r.quant(x)
    m0, sh = quantize_multiplier(float(np.float32(s_i)) / float(np.float32(s_o)))
    lo, hi = qrange(dt)
    r.node("Requantize", [x], [out], in_zp=z_i, m0=m0, shift=sh, out_zp=z_o, act_min=lo,
           act_max=hi, dtype=dt)


def _read_dequantize(r: _Reader, o: _Op) -> None:
    s, z = r.quant(o.inputs[0])
    r.node("DequantizeLinear", [o.inputs[0]], [o.outputs[0]], scale=s, zero_point=z)


def _read_matmul(r: _Reader, o: _Op) -> None:
    a, b, out = o.inputs[0], o.inputs[1], o.outputs[0]
    if o.options and (o.options.AdjX() or o.options.AdjY()):
        raise UnsupportedOpError(["BATCH_MATMUL"], "the .tflite reader", "adj_x / adj_y")
    (s_a, z_a), (s_b, z_b), (s_o, z_o) = r.quant(a), r.quant(b), r.quant(out)
    m0, sh = tf.matmul_multiplier(s_a, s_b, s_o)
    lo, hi = qrange(r.tt[out].dtype)
    r.node("QMatMul", [a, b], [out], a_zp=z_a, b_zp=z_b, m0=m0, shift=sh, out_zp=z_o,
           act_min=lo, act_max=hi, dtype=r.tt[out].dtype)


def _read_concat(r: _Reader, o: _Op) -> None:
    out = o.outputs[0]
    axis = o.options.Axis() % len(r.tt[out].shape)
    if out in r.nhwc:
        axis = tf.NCHW_TO_NHWC[axis]
    r.node("Concat", list(o.inputs), [out], axis=axis)


def _read_pad(r: _Reader, o: _Op) -> None:
    x, out = o.inputs[0], o.outputs[0]
    p = np.asarray(r.tt[o.inputs[1]].data, np.int64)
    if x in r.nhwc:
        p = p[list(tf.NHWC_TO_NCHW)]
    pads = r.const(f"{r.tt[out].name}_pads", np.concatenate([p[:, 0], p[:, 1]]))
    _, z = r.quant(x)
    r.node("Pad", [x, pads], [out], mode="constant", value=z)


def _read_resize(r: _Reader, o: _Op) -> None:
    """RESIZE_NEAREST_NEIGHBOR (no align_corners, no half-pixel centres) → ResizeNearest."""
    out = o.outputs[0]
    if o.options is not None and (o.options.AlignCorners() or o.options.HalfPixelCenters()):
        raise UnsupportedOpError([o.kind], "the .tflite reader",
                                 "align_corners / half_pixel_centers resizes")
    n, h, w, c = r.tt[out].shape
    r.node("ResizeNearest", [o.inputs[0]], [out], sizes=[n, c, h, w])


def _read_lut(r: _Reader, o: _Op) -> None:
    """LOGISTIC / TANH (int8): a 256-entry table built as LiteRT builds its own, from the
    float function with round-half-away: ``t[q] = clamp(round(f(s_in·(q−z_in))/s_out) + z_out)``."""
    x, out = o.inputs[0], o.outputs[0]
    if r.tt[x].dtype != "int8":
        raise UnsupportedOpError([o.kind], "the .tflite reader", f"{o.kind} on {r.tt[x].dtype}")
    (s_i, z_i), (s_o, z_o) = r.quant(x), r.quant(out)
    q = np.arange(-128, 128, dtype=np.float32)
    v = np.float32(s_i) * (q - np.float32(z_i))
    f = np.tanh(v) if o.kind == "TANH" else 1.0 / (1.0 + np.exp(-v))
    y = f.astype(np.float32) / np.float32(s_o)
    table = np.clip(np.sign(y) * np.floor(np.abs(y) + 0.5) + z_o, -128, 127).astype(np.int8)
    r.node("QLut", [x, r.const(f"{r.tt[out].name}_table", table)], [out])


def _read_softmax(r: _Reader, o: _Op) -> None:
    """int8 SOFTMAX imports as a float island: dequantize, Softmax, quantize (LiteRT's own
    int8 softmax uses an exp table; the two agree within an LSB)."""
    x, out = o.inputs[0], o.outputs[0]
    if o.options is not None and abs(o.options.Beta() - 1.0) > 1e-6:
        raise UnsupportedOpError(["SOFTMAX"], "the .tflite reader", "softmax with beta != 1")
    (s_i, z_i), (s_o, z_o) = r.quant(x), r.quant(out)
    base = r.tt[out].name
    shape = r.tt[out].shape
    xf, yf = r.g.unique_name(base + "@in_float"), r.g.unique_name(base + "@float")
    r.g.add_tensor(Tensor(xf, "float32", shape))
    r.g.add_tensor(Tensor(yf, "float32", shape))
    r.node("DequantizeLinear", [x], [xf], scale=s_i, zero_point=z_i)
    r.node("Softmax", [xf], [yf], axis=-1)
    r.node("QuantizeLinear", [yf], [out], scale=s_o, zero_point=z_o, dtype=r.tt[out].dtype)


def _read_mean(r: _Reader, o: _Op) -> None:
    """MEAN over H and W of an NHWC image → QGlobalAvgPool, ``M = s_in / (s_out · H·W)``."""
    x, out = o.inputs[0], o.outputs[0]
    axes = sorted(int(a) % 4 for a in np.ravel(r.tt[o.inputs[1]].data))
    if x not in r.nhwc or axes != [1, 2]:
        raise UnsupportedOpError(["MEAN"], "the .tflite reader", "MEAN other than over H, W")
    n, h, w, c = r.tt[x].shape
    (s_i, z_i), (s_o, z_o) = r.quant(x), r.quant(out)
    m0, sh = quantize_multiplier(float(np.float32(s_i)) / (float(np.float32(s_o)) * h * w))
    lo, hi = qrange(r.tt[out].dtype)
    attrs = {"x_zp": z_i, "m0": m0, "shift": sh, "out_zp": z_o, "act_min": lo, "act_max": hi,
             "dtype": r.tt[out].dtype}
    if len(r.tt[out].shape) == 4:
        r.node("QGlobalAvgPool", [x], [out], **attrs)
        return
    pooled = r.g.unique_name(r.tt[out].name + "@nc11")
    r.g.add_tensor(Tensor(pooled, r.tt[out].dtype, (n, c, 1, 1), QuantParams(s_o, z_o)))
    r.node("QGlobalAvgPool", [x], [pooled], **attrs)
    shape = r.const(f"{r.tt[out].name}_shape", np.array(r.tt[out].shape, np.int64))
    r.node("Reshape", [pooled, shape], [out])


_READERS: dict[str, Callable[[_Reader, _Op], None]] = {
    "RESIZE_NEAREST_NEIGHBOR": _read_resize, "LOGISTIC": _read_lut, "TANH": _read_lut, "SOFTMAX": _read_softmax, "MEAN": _read_mean,
    "FULLY_CONNECTED": _read_fc, "CONV_2D": _read_conv, "DEPTHWISE_CONV_2D": _read_conv,
    "ADD": _read_add, "MUL": _read_add, "RELU": _read_relu, "RELU6": _read_relu,
    "RELU_N1_TO_1": _read_relu, "MAX_POOL_2D": _read_pool, "AVERAGE_POOL_2D": _read_pool,
    "RESHAPE": _read_reshape, "TRANSPOSE": _read_transpose, "QUANTIZE": _read_quantize,
    "DEQUANTIZE": _read_dequantize, "BATCH_MATMUL": _read_matmul,
    "CONCATENATION": _read_concat, "PAD": _read_pad,
}


def read_tflite(source: str | Path | bytes, name: str | None = None) -> Graph:
    """An int8 .tflite model (path or bytes) as an integer IR Graph (NCHW).

    Raises ModelFormatError for a file that is not a readable .tflite, and
    UnsupportedOpError listing every operator the reader does not map.
    """
    buf, stem = _load(source)
    _, tensors, ops, inputs, outputs = parse_tflite(buf)
    return _Reader(tensors, ops, inputs, outputs, name or stem).build()
