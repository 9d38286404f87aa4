"""Integer IR node -> firmware op record: opcode, tensor operands and int32 parameters.

One registry maps an op name (docs/ops.md) to an encoder; the parameter order of each opcode
is documented next to its C kernel in firmware/src/kernels.c. Per-channel vectors (``m0``,
``shift``) become int32 constant tensors in the image, so every parameter word is a scalar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from sdk.errors import GraphError
from sdk.graph.ir import Node
from sdk.ops.schema import opdef

OPCODES = {"REQUANTIZE": 1, "FULLY_CONNECTED": 2, "CONV2D": 3, "ADD": 4, "MUL": 5, "CLAMP": 6,
           "MAXPOOL2D": 7, "AVGPOOL2D": 8, "GLOBAL_AVGPOOL": 9, "LUT": 10, "COPY": 11,
           "SHIFTMAX": 12, "SHIFT_GELU": 13, "INT_NORM": 14, "MATMUL": 15, "TRANSPOSE": 16,
           "CONCAT": 17, "FC_PACKED": 18, "CONV2D_PACKED": 19}
SCRATCH_HALFWORDS = 8192   # firmware/src/kernels_packed.c: longest packed row
PADDED_HALFWORDS = 32768   # ... and the channels-last padded conv input

DTYPE_CODES = {"int8": 0, "uint8": 1, "int16": 2, "int32": 3}


@dataclass
class OpRecord:
    opcode: int
    inputs: list[str]          # '' = omitted optional operand
    outputs: list[str]
    params: list[int] = field(default_factory=list)


class EncodeContext(Protocol):
    def shape(self, name: str) -> tuple[int, ...]: ...
    def dtype(self, name: str) -> str: ...
    def vector(self, hint: str, values: Any, n: int) -> str: ...
    def data(self, name: str) -> np.ndarray | None: ...
    def constant(self, hint: str, values: np.ndarray) -> str: ...
    packed_kernels: bool


Encoder = Callable[[Node, EncodeContext], OpRecord]
ENCODERS: dict[str, Encoder] = {}


def encoder(*ops: str) -> Callable[[Encoder], Encoder]:
    """Register an encoder for ``ops``. An integer op's attributes reach it through the op
    schema's prepare step (checked, typed, defaults filled), as they reach the kernels."""
    def deco(fn: Encoder) -> Encoder:
        def encode(node: Node, ctx: EncodeContext) -> OpRecord:
            d = opdef(node.op)
            if d is not None and d.strict:
                node = replace(node, attrs=d.prepare(node.attrs))
            return fn(node, ctx)
        for op in ops:
            ENCODERS[op] = encode
        return fn
    return deco


def _ints(v: Any, n: int, default: int) -> list[int]:
    if v is None:
        return [default] * n
    t = [int(e) for e in np.atleast_1d(np.asarray(v)).ravel()]
    if len(t) == 1 and n > 1:
        t = t * n
    if len(t) != n:
        raise GraphError(f"attribute needs {n} values, got {t}")
    return t


def _clamp(a: dict[str, Any], dtype: str) -> list[int]:
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
              "int32": (-(2**31), 2**31 - 1)}[dtype]
    amin, amax = a.get("act_min"), a.get("act_max")
    return [lo if amin is None else int(amin), hi if amax is None else int(amax)]


def _elems(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@encoder("Requantize")
def _requantize(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x, y = node.inputs[0], node.outputs[0]
    m0 = ctx.vector(f"{node.name}.m0", a["m0"], 1)
    sh = ctx.vector(f"{node.name}.shift", a["shift"], 1)
    return OpRecord(OPCODES["REQUANTIZE"], [x, m0, sh], [y],
                    [_elems(ctx.shape(x)), int(a.get("in_zp", 0)), int(a.get("out_zp", 0)),
                     *_clamp(a, ctx.dtype(y)), 1, 1])


def pack_weights(w: np.ndarray, kp: int | None = None,
                 order4: bool = False) -> tuple[np.ndarray, int]:
    """int8 ``[N, K]`` -> int16 rows padded to ``Kp`` (default: K rounded up to 8) and to an
    even row count, stored in pairs of rows: for each pair, for each k-pair, row 0's two values
    then row 1's ([N/2][Kp/2][2][2], the order firmware/src/kernels_packed.c reads them).
    ``order4``: within each full group of 4 k the order is k0 k2 k1 k3 (the FC kernel widens
    its int8 input with SXTB16, which yields that order)."""
    n, k = w.shape
    if kp is None:
        kp = -(-max(k, 1) // 8) * 8
    n2 = n + (n & 1)
    padded = np.zeros((n2, kp), np.int16)
    padded[:n, :k] = w
    if order4:
        g = kp // 4 * 4
        padded[:, :g] = padded[:, :g].reshape(n2, -1, 4)[:, :, [0, 2, 1, 3]].reshape(n2, g)
    return padded.reshape(n2 // 2, 2, kp // 2, 2).transpose(0, 2, 1, 3).ravel(), kp


def _fast_requant(a: dict[str, Any], n: int, act_max: int) -> int:
    """1 when the firmware's 32-bit requantization (kernels_packed.c requant_fast) gives the
    reference's bits for every channel: shift <= -1, m0 != INT32_MIN and
    2^(31+shift) - 1 + out_zp >= act_max."""
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(a["m0"], np.int64)).ravel(), (n,))
    sh = np.broadcast_to(np.atleast_1d(np.asarray(a["shift"], np.int64)).ravel(), (n,))
    if np.any(sh > -1) or np.any(sh < -31) or np.any(m0 == -(2**31)):
        return 0
    zp = int(a.get("out_zp", 0))
    return int(bool(np.all((np.int64(1) << (31 + sh)) - 1 + zp >= act_max)))


def _folded_bias(w: np.ndarray, bias: np.ndarray | None, x_zp: int) -> np.ndarray:
    """bias − x_zp·Σ_k w, wrapped to int32 (the reference's accumulator wraps the same way)."""
    b = np.zeros(w.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    eff = b - np.int64(x_zp) * w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
    return (((eff + 2**31) & 0xFFFFFFFF) - 2**31).astype(np.int32)


@encoder("QFullyConnected")
def _fully_connected(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    y = node.outputs[0]
    n, k = ctx.shape(w)
    xs = ctx.shape(x)
    if xs[-1] != k:
        raise GraphError(f"{node.name}: input {xs} does not match weights {(n, k)}")
    m0 = ctx.vector(f"{node.name}.m0", a["m0"], n)
    sh = ctx.vector(f"{node.name}.shift", a["shift"], n)
    wd = ctx.data(w)
    x_zp = int(a.get("x_zp", 0))
    if ctx.packed_kernels and wd is not None and ctx.dtype(x) == "int8" and \
            (not bias or ctx.data(bias) is not None):
        # Kp a multiple of 6: the single-row kernel takes 3 k-pairs per step
        packed, kp = pack_weights(wd, -(-max(k, 1) // 6) * 6, order4=True)
        if kp <= SCRATCH_HALFWORDS:
            beff = _folded_bias(wd, ctx.data(bias) if bias else None, x_zp)
            clamp = _clamp(a, ctx.dtype(y))
            return OpRecord(OPCODES["FC_PACKED"],
                            [x, ctx.constant(f"{node.name}.w16", packed),
                             ctx.constant(f"{node.name}.bias_eff", beff), m0, sh], [y],
                            [_elems(xs[:-1]), k, kp, n, int(a.get("out_zp", 0)), *clamp,
                             _fast_requant(a, n, clamp[1])])
    return OpRecord(OPCODES["FULLY_CONNECTED"], [x, w, bias, m0, sh], [y],
                    [_elems(xs[:-1]), k, n, x_zp, int(a.get("out_zp", 0)),
                     *_clamp(a, ctx.dtype(y))])


def _conv_record(node: Node, ctx: EncodeContext, x_shape: tuple[int, ...],
                 w_shape: tuple[int, ...], strides: list[int], pads: list[int],
                 dil: list[int], group: int) -> OpRecord:
    a = node.attrs
    b, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    if c % group or o % group or c // group != cg or oh < 0 or ow < 0:
        raise GraphError(f"{node.name}: conv shapes x {x_shape}, w {w_shape}, group {group} "
                         "do not fit")
    x, wt = node.inputs[0], node.inputs[1]
    if ctx.dtype(x) != "int8":  # firmware/src/kernels.c k_conv2d reads x as int8
        raise GraphError(f"{node.name}: convolution on the MCU needs an int8 input, got "
                         f"{ctx.dtype(x)}; quantize the conv input to int8 or run it on the host")
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    y = node.outputs[0]
    if _elems(ctx.shape(y)) != b * o * oh * ow:
        raise GraphError(f"{node.name}: output shape {ctx.shape(y)} is not {(b, o, oh, ow)}")
    m0 = ctx.vector(f"{node.name}.m0", a["m0"], o)
    sh = ctx.vector(f"{node.name}.shift", a["shift"], o)
    wd = ctx.data(wt)
    x_zp = int(a.get("x_zp", 0))
    if ctx.packed_kernels and group == 1 and wd is not None and ctx.dtype(x) == "int8" and \
            (not bias or ctx.data(bias) is not None) and oh > 0 and ow > 0:
        # channels-last (mode 1) when the padded int16 input fits the firmware's buffer and
        # the kernel is contiguous along W; otherwise im2col (mode 0)
        cp = -(-c // 8) * 8
        hp = (oh - 1) * strides[0] + (kh - 1) * dil[0] + 1
        wp = (ow - 1) * strides[1] + kw
        p_im2col = -(-(c * kh * kw) // 8) * 8
        if (dil[1] == 1 and hp * wp * cp <= PADDED_HALFWORDS
                and kh * kw * cp <= 1.25 * p_im2col):  # few channels: padding C wastes MACs
            hwc = np.zeros((o, kh, kw, cp), np.int8)
            hwc[..., :c] = wd.reshape(o, c, kh, kw).transpose(0, 2, 3, 1)
            packed, pp = pack_weights(hwc.reshape(o, -1))
            mode = 1
        else:
            packed, pp = pack_weights(wd.reshape(o, -1))
            mode, cp = 0, 0
        if pp <= SCRATCH_HALFWORDS:
            beff = _folded_bias(wd, ctx.data(bias) if bias else None, x_zp)
            clamp = _clamp(a, ctx.dtype(y))
            return OpRecord(OPCODES["CONV2D_PACKED"],
                            [x, ctx.constant(f"{node.name}.w16", packed),
                             ctx.constant(f"{node.name}.bias_eff", beff), m0, sh], [y],
                            [b, c, h, w, o, oh, ow, kh, kw, strides[0], strides[1], pads[0],
                             pads[1], dil[0], dil[1], x_zp, pp, int(a.get("out_zp", 0)),
                             *clamp, mode, cp, _fast_requant(a, o, clamp[1])])
    return OpRecord(OPCODES["CONV2D"], [x, wt, bias, m0, sh], [y],
                    [b, c, h, w, o, oh, ow, kh, kw, strides[0], strides[1], pads[0], pads[1],
                     dil[0], dil[1], group, int(a.get("x_zp", 0)), int(a.get("out_zp", 0)),
                     *_clamp(a, ctx.dtype(y))])


@encoder("QConv2d", "QDepthwiseConv2d")
def _conv2d(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    xs, ws = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1])
    group = int(a.get("group") or (xs[1] if node.op == "QDepthwiseConv2d" else 1))
    return _conv_record(node, ctx, xs, ws, _ints(a.get("strides"), 2, 1),
                        _ints(a.get("pads"), 4, 0), _ints(a.get("dilations"), 2, 1), group)


@encoder("QConv1d")
def _conv1d(node: Node, ctx: EncodeContext) -> OpRecord:
    """A 1-D conv is the 2-D kernel with H = 1."""
    a = node.attrs
    b, c, length = ctx.shape(node.inputs[0])
    o, cg, k = ctx.shape(node.inputs[1])
    pl, pr = _ints(a.get("pads"), 2, 0)
    return _conv_record(node, ctx, (b, c, 1, length), (o, cg, 1, k),
                        [1, _ints(a.get("stride"), 1, 1)[0]], [0, pl, 0, pr],
                        [1, _ints(a.get("dilation"), 1, 1)[0]], int(a.get("group", 1)))


def _broadcast5(ctx: EncodeContext, a: str, b: str, y: str) -> list[int]:
    """Output dims padded to 5 and element strides of a and b (0 on broadcast axes)."""
    out = list(ctx.shape(y))
    if len(out) > 5:
        raise GraphError(f"element-wise op on rank {len(out)} > 5 is not supported on the MCU")
    dims = [1] * (5 - len(out)) + out

    def strides(name: str) -> list[int]:
        s = list(ctx.shape(name))
        s = [1] * (5 - len(s)) + s
        st, acc = [0] * 5, 1
        for k in range(4, -1, -1):
            st[k] = 0 if s[k] == 1 and dims[k] != 1 else acc
            acc *= s[k]
        return st
    return dims + strides(a) + strides(b)


@encoder("QAdd")
def _add(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x1, x2 = node.inputs[:2]
    y = node.outputs[0]
    return OpRecord(OPCODES["ADD"], [x1, x2], [y],
                    [int(a.get("a_zp", 0)), int(a.get("b_zp", 0)), int(a.get("left_shift", 20)),
                     int(a["a_m0"]), int(a["a_shift"]), int(a["b_m0"]), int(a["b_shift"]),
                     int(a["out_m0"]), int(a["out_shift"]), int(a.get("out_zp", 0)),
                     *_clamp(a, ctx.dtype(y)), _elems(ctx.shape(y)),
                     *_broadcast5(ctx, x1, x2, y)])


@encoder("QMul")
def _mul(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x1, x2 = node.inputs[:2]
    y = node.outputs[0]
    return OpRecord(OPCODES["MUL"], [x1, x2], [y],
                    [int(a.get("a_zp", 0)), int(a.get("b_zp", 0)), int(a["m0"]), int(a["shift"]),
                     int(a.get("out_zp", 0)), *_clamp(a, ctx.dtype(y)), _elems(ctx.shape(y)),
                     *_broadcast5(ctx, x1, x2, y)])


@encoder("QClamp")
def _clamp_op(node: Node, ctx: EncodeContext) -> OpRecord:
    x, y = node.inputs[0], node.outputs[0]
    return OpRecord(OPCODES["CLAMP"], [x], [y],
                    [_elems(ctx.shape(x)), int(node.attrs["min"]), int(node.attrs["max"])])


def _pool_geometry(node: Node, ctx: EncodeContext, dilated: bool) -> list[int]:
    a = node.attrs
    b, c, h, w = ctx.shape(node.inputs[0])
    k = _ints(a["kernel"], 2, 1)
    st = _ints(a.get("strides"), 2, 1)
    pd = _ints(a.get("pads"), 4, 0)
    dl = _ints(a.get("dilations"), 2, 1) if dilated else [1, 1]
    oh = (h + pd[0] + pd[2] - dl[0] * (k[0] - 1) - 1) // st[0] + 1
    ow = (w + pd[1] + pd[3] - dl[1] * (k[1] - 1) - 1) // st[1] + 1
    return [b, c, h, w, oh, ow, k[0], k[1], st[0], st[1], pd[0], pd[1], dl[0], dl[1]]


@encoder("QMaxPool2d")
def _maxpool(node: Node, ctx: EncodeContext) -> OpRecord:
    return OpRecord(OPCODES["MAXPOOL2D"], [node.inputs[0]], [node.outputs[0]],
                    _pool_geometry(node, ctx, True))


@encoder("QAvgPool2d")
def _avgpool(node: Node, ctx: EncodeContext) -> OpRecord:
    g = _pool_geometry(node, ctx, False)[:12]
    return OpRecord(OPCODES["AVGPOOL2D"], [node.inputs[0]], [node.outputs[0]],
                    g + [int(node.attrs.get("count_include_pad", 0)),
                         int(node.attrs.get("x_zp", 0))])


@encoder("QGlobalAvgPool")
def _gap(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    xs = ctx.shape(node.inputs[0])
    y = node.outputs[0]
    return OpRecord(OPCODES["GLOBAL_AVGPOOL"],
                    [node.inputs[0], ctx.vector(f"{node.name}.m0", a["m0"], xs[1]),
                     ctx.vector(f"{node.name}.shift", a["shift"], xs[1])], [y],
                    [xs[0], xs[1], _elems(xs[2:]), int(a.get("x_zp", 0)), int(a.get("out_zp", 0)),
                     *_clamp(a, ctx.dtype(y))])


@encoder("QLut")
def _lut(node: Node, ctx: EncodeContext) -> OpRecord:
    x = node.inputs[0]
    if ctx.dtype(x) != "int8":
        raise GraphError(f"{node.name}: QLut on the MCU needs an int8 input, got {ctx.dtype(x)}")
    return OpRecord(OPCODES["LUT"], [x, node.inputs[1]], [node.outputs[0]],
                    [_elems(ctx.shape(x))])


@encoder("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
def _view(node: Node, ctx: EncodeContext) -> OpRecord:
    x, y = node.inputs[0], node.outputs[0]
    nbytes = _elems(ctx.shape(x)) * np.dtype(ctx.dtype(x)).itemsize
    return OpRecord(OPCODES["COPY"], [x], [y], [nbytes])


def _rows(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, C, inner) of a row-wise op along ``axis``."""
    ax = axis % len(shape)
    return _elems(shape[:ax]), int(shape[ax]), _elems(shape[ax + 1:])


@encoder("Shiftmax")
def _shiftmax(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x = node.inputs[0]
    return OpRecord(OPCODES["SHIFTMAX"], [x], [node.outputs[0]],
                    [*_rows(ctx.shape(x), int(a.get("axis", -1))), int(a["x0"]),
                     int(a.get("n", 15)), int(a.get("out_bits", 16))])


@encoder("ShiftGELU")
def _shift_gelu(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x, y = node.inputs[0], node.outputs[0]
    return OpRecord(OPCODES["SHIFT_GELU"], [x], [y],
                    [*_rows(ctx.shape(x), int(a.get("axis", -1))), int(a["x0"]),
                     int(a.get("n", 23)), int(a.get("sig_bits", 8)),
                     int(max(a.get("clip_min", -(2**31)), -(2**31))),
                     int(min(a.get("clip_max", 2**31 - 1), 2**31 - 1)), int(a.get("x_zp", 0)),
                     int(np.asarray(a["m0"]).ravel()[0]), int(np.asarray(a["shift"]).ravel()[0]),
                     int(a.get("out_zp", 0)), *_clamp(a, ctx.dtype(y))])


@encoder("ILayerNorm", "IRMSNorm")
def _int_norm(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x, y = node.inputs[0], node.outputs[0]
    beta = node.inputs[1] if len(node.inputs) > 1 else ""
    outer, c, inner = _rows(ctx.shape(x), int(a.get("axis", -1)))
    if beta and ctx.dtype(beta) != "int32":
        raise GraphError(f"{node.name}: beta_q must be int32, got {ctx.dtype(beta)}")
    return OpRecord(OPCODES["INT_NORM"],
                    [x, beta, ctx.vector(f"{node.name}.m0", a["m0"], c),
                     ctx.vector(f"{node.name}.shift", a["shift"], c)], [y],
                    [outer, c, inner, int(a.get("iters", 10)), int(node.op == "ILayerNorm"),
                     int(a.get("out_zp", 0)), *_clamp(a, ctx.dtype(y))])


@encoder("QMatMul")
def _matmul(node: Node, ctx: EncodeContext) -> OpRecord:
    a = node.attrs
    x1, x2, y = node.inputs[0], node.inputs[1], node.outputs[0]
    sa, sb = ctx.shape(x1), ctx.shape(x2)
    if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
        raise GraphError(f"{node.name}: MatMul shapes {sa} and {sb} do not chain")
    m, k, n = sa[-2], sa[-1], sb[-1]
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    ia = np.broadcast_to(np.arange(_elems(sa[:-2])).reshape(sa[:-2]), batch).ravel() * (m * k)
    ib = np.broadcast_to(np.arange(_elems(sb[:-2])).reshape(sb[:-2]), batch).ravel() * (k * n)
    offsets = np.stack([ia, ib], axis=1).ravel()
    return OpRecord(OPCODES["MATMUL"],
                    [x1, x2, ctx.vector(f"{node.name}.m0", a["m0"], n),
                     ctx.vector(f"{node.name}.shift", a["shift"], n),
                     ctx.vector(f"{node.name}.offsets", offsets, offsets.size)], [y],
                    [_elems(batch), m, k, n, int(a.get("a_zp", 0)), int(a.get("b_zp", 0)),
                     int(a.get("out_zp", 0)), *_clamp(a, ctx.dtype(y))])


@encoder("Transpose")
def _transpose(node: Node, ctx: EncodeContext) -> OpRecord:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    nd = len(shape)
    if nd > 6:
        raise GraphError(f"{node.name}: Transpose of rank {nd} > 6 is not supported on the MCU")
    perm = [int(p) % nd for p in node.attrs.get("perm", list(range(nd))[::-1])]
    strides = [_elems(shape[d + 1:]) for d in range(nd)]
    out_dims = [shape[p] for p in perm]
    src = [strides[p] for p in perm]
    pad = 6 - nd
    return OpRecord(OPCODES["TRANSPOSE"], [x], [y],
                    [np.dtype(ctx.dtype(x)).itemsize, _elems(shape), *([1] * pad + out_dims),
                     *([0] * pad + src)])


@encoder("Concat")
def _concat(node: Node, ctx: EncodeContext) -> OpRecord:
    ins = [i for i in node.inputs if i]
    y = node.outputs[0]
    if len(ins) > 7:
        raise GraphError(f"{node.name}: Concat of {len(ins)} inputs > 7 is not supported on the MCU")
    out_shape = ctx.shape(y)
    ax = int(node.attrs.get("axis", 0)) % len(out_shape)
    esize = np.dtype(ctx.dtype(y)).itemsize
    if any(ctx.dtype(i) != ctx.dtype(y) for i in ins):
        raise GraphError(f"{node.name}: Concat inputs must share the output dtype")
    blocks = [_elems(ctx.shape(i)[ax:]) * esize for i in ins]
    return OpRecord(OPCODES["CONCAT"], ins, [y], [_elems(out_shape[:ax]), *blocks])


@encoder("Slice")
def _slice(node: Node, ctx: EncodeContext) -> OpRecord:
    """ONNX Slice with constant starts/ends/axes/steps, as a strided gather (the Transpose
    kernel with a base offset)."""
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.shape(x)
    nd = len(shape)
    if nd > 6:
        raise GraphError(f"{node.name}: Slice of rank {nd} > 6 is not supported on the MCU")
    operands = [ctx.data(i) if i else None for i in (node.inputs + ["", "", "", ""])[1:5]]
    if operands[0] is None or operands[1] is None or \
            any(i and ctx.data(i) is None for i in node.inputs[1:5]):
        raise GraphError(f"{node.name}: Slice on the MCU needs constant starts/ends/axes/steps")
    starts, ends = (np.asarray(v, np.int64).ravel() for v in operands[:2])
    axes = (np.asarray(operands[2], np.int64).ravel() if operands[2] is not None
            else np.arange(len(starts)))
    steps = (np.asarray(operands[3], np.int64).ravel() if operands[3] is not None
             else np.ones(len(starts), np.int64))
    index = [slice(None)] * nd
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        index[int(ax) % nd] = slice(int(st), int(en), int(sp))
    # let NumPy resolve clamping and negative indices on an index grid
    grid = np.arange(_elems(shape), dtype=np.int64).reshape(shape)[tuple(index)]
    if grid.size == 0:
        raise GraphError(f"{node.name}: Slice gives an empty tensor")
    out_dims = list(grid.shape)
    strides = []
    for d in range(nd):
        sel = [0] * nd
        if out_dims[d] > 1:
            sel[d] = 1
            strides.append(int(grid[tuple(sel)] - grid[(0,) * nd]))
        else:
            strides.append(0)
    pad = 6 - nd
    return OpRecord(OPCODES["TRANSPOSE"], [x], [y],
                    [np.dtype(ctx.dtype(x)).itemsize, int(grid.size), *([1] * pad + out_dims),
                     *([0] * pad + strides), int(grid[(0,) * nd])])


# -- segmentation: nearest resize and gather (firmware/src/kernels_seg.c, opcodes 20-23) ------
OPCODES.update({"RESIZE_NEAREST": 20, "GATHER": 22})
_INDEX_DTYPES = ("int8", "uint8", "int16", "int32")


@encoder("ResizeNearest")
def _resize_nearest(node: Node, ctx: EncodeContext) -> OpRecord:
    """Up to 4 axes (leading axes that keep their size are merged first)."""
    x, y = node.inputs[0], node.outputs[0]
    ins, outs = list(ctx.shape(x)), list(ctx.shape(y))
    if len(ins) != len(outs):
        raise GraphError(f"{node.name}: ResizeNearest output rank {len(outs)} differs from the "
                         f"input's {len(ins)}")
    while len(ins) > 4 and ins[0] == outs[0] and ins[1] == outs[1]:
        ins[:2], outs[:2] = [ins[0] * ins[1]], [outs[0] * outs[1]]
    if len(ins) > 4:
        raise GraphError(f"{node.name}: ResizeNearest of {ctx.shape(x)} -> {ctx.shape(y)} "
                         "resizes more than 4 axes; the MCU kernel takes 4")
    pad = 4 - len(ins)
    return OpRecord(OPCODES["RESIZE_NEAREST"], [x], [y],
                    [np.dtype(ctx.dtype(x)).itemsize, *([1] * pad + ins), *([1] * pad + outs)])


@encoder("Gather")
def _gather(node: Node, ctx: EncodeContext) -> OpRecord:
    """ONNX Gather on any axis: constant indices become an int32 table in flash (range
    checked here); computed indices (e.g. token ids) must be an int8/int16/int32 tensor and
    are range checked by the kernel at run time."""
    x, idx, y = node.inputs[0], node.inputs[1], node.outputs[0]
    shape = ctx.shape(x)
    ax = int(node.attrs.get("axis", 0))
    if not -len(shape) <= ax < len(shape):
        raise GraphError(f"{node.name}: Gather axis {ax} is outside the rank-{len(shape)} input")
    ax %= len(shape)
    n = shape[ax]
    values = ctx.data(idx)
    if values is not None:
        v = np.asarray(values, np.int64).ravel()
        if v.size and (v.min() < -n or v.max() >= n):
            raise GraphError(f"{node.name}: Gather index {int(v[(v < -n) | (v >= n)][0])} is "
                             f"outside [-{n}, {n}) of axis {ax}")
        idx = ctx.constant(f"{node.name}.indices", v.astype(np.int32))
        k = int(v.size)
    else:
        if ctx.dtype(idx) not in _INDEX_DTYPES:
            raise GraphError(f"{node.name}: Gather indices of dtype {ctx.dtype(idx)} cannot be "
                             "read on the MCU; give them as int32 (or int8/int16)")
        k = _elems(ctx.shape(idx))
    return OpRecord(OPCODES["GATHER"], [x, idx], [y],
                    [np.dtype(ctx.dtype(x)).itemsize, _elems(shape[:ax]), n,
                     _elems(shape[ax + 1:]), k])


# -- language models: the fixed-capacity KV cache (firmware/src/kernels_lm.c, opcodes 24-29) --
OPCODES.update({"KV_CACHE_WRITE": 24, "CAUSAL_MASK": 25})


def _position(node: Node, ctx: EncodeContext, name: str) -> None:
    if ctx.dtype(name) != "int32" or _elems(ctx.shape(name)) != 1:
        raise GraphError(f"{node.name}: the position {name!r} must be one int32 on the MCU, got "
                         f"{ctx.dtype(name)} {list(ctx.shape(name))}")


@encoder("KVCacheWrite")
def _kv_cache_write(node: Node, ctx: EncodeContext) -> OpRecord:
    cache, new, pos = node.inputs[:3]
    y = node.outputs[0]
    _position(node, ctx, pos)
    cs, ns = ctx.shape(cache), ctx.shape(new)
    ax = int(node.attrs.get("axis", 2)) % len(cs)
    if len(cs) != len(ns) or ctx.dtype(cache) != ctx.dtype(new) or \
            [d for k, d in enumerate(cs) if k != ax] != [d for k, d in enumerate(ns) if k != ax]:
        raise GraphError(f"{node.name}: new rows {ctx.dtype(new)} {list(ns)} do not fit the cache "
                         f"{ctx.dtype(cache)} {list(cs)}")
    row = _elems(cs[ax + 1:]) * np.dtype(ctx.dtype(cache)).itemsize
    return OpRecord(OPCODES["KV_CACHE_WRITE"], [cache, new, pos], [y],
                    [_elems(cs[:ax]), int(cs[ax]), int(ns[ax]), row])


@encoder("CausalMask")
def _causal_mask(node: Node, ctx: EncodeContext) -> OpRecord:
    s, pos = node.inputs[:2]
    y = node.outputs[0]
    _position(node, ctx, pos)
    shape = ctx.shape(s)
    if len(shape) < 2:
        raise GraphError(f"{node.name}: CausalMask scores need rank >= 2, got {list(shape)}")
    fill = node.attrs.get("fill")
    fill = int(np.iinfo(np.dtype(ctx.dtype(s))).min) if fill is None else int(fill)
    return OpRecord(OPCODES["CAUSAL_MASK"], [s, pos], [y],
                    [_elems(shape[:-2]), int(shape[-2]), int(shape[-1]), fill])
