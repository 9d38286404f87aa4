"""Single-op integer graphs with random parameters and their NumPy-reference outputs.

Each builder takes a NumPy Generator and returns ``(graph, feeds, expected)``; values span
the whole int8 range (edge values included) and multipliers span saturation and tiny scales.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdk.graph.ir import Graph, Tensor
from sdk.kernels import conv, elementwise, linear, lut, pooling, quantize, transformer
from sdk.kernels.requant import quantize_multiplier_array

Case = tuple[Graph, dict[str, np.ndarray], dict[str, np.ndarray]]


def _int8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.integers(-128, 128, shape).astype(np.int8)
    flat = x.reshape(-1)
    if flat.size >= 4:  # make sure the extremes occur
        flat[rng.integers(0, flat.size)] = -128
        flat[rng.integers(0, flat.size)] = 127
    return x


def _multipliers(rng: np.random.Generator, n: int, lo: float, hi: float):
    return quantize_multiplier_array(np.exp(rng.uniform(np.log(lo), np.log(hi), n)))


def _out(rng: np.random.Generator) -> tuple[str, int, int, int]:
    """Output dtype, zero point and a clamp that is sometimes tightened (fused ReLU)."""
    dtype = str(rng.choice(["int8", "int8", "int16"]))
    lo, hi = (-128, 127) if dtype == "int8" else (-32768, 32767)
    zp = int(rng.integers(-20, 20)) if dtype == "int8" else 0
    if rng.random() < 0.3:
        lo = zp
    return dtype, zp, lo, hi


def _graph(name: str, inputs: dict[str, np.ndarray], out: str, out_dtype: str,
           out_shape: tuple[int, ...]) -> Graph:
    g = Graph(name)
    for k, v in inputs.items():
        g.add_tensor(Tensor(k, str(v.dtype), v.shape))
    g.add_tensor(Tensor(out, out_dtype, out_shape))
    g.inputs = list(inputs)
    g.outputs = [out]
    return g


def requantize_case(rng: np.random.Generator) -> Case:
    x = rng.integers(-(2**31), 2**31 - 1, (3, 17), dtype=np.int64).astype(np.int32)
    x[0, :4] = [-(2**31), 2**31 - 1, 0, -1]
    (m0,), (sh,) = _multipliers(rng, 1, 1e-9, 1.5)
    dtype, zp, lo, hi = _out(rng)
    in_zp = int(rng.integers(-1000, 1000))
    g = _graph("requantize", {"x": x}, "y", dtype, x.shape)
    attrs = {"in_zp": in_zp, "m0": int(m0), "shift": int(sh), "out_zp": zp, "act_min": lo, "act_max": hi,
                 "dtype": dtype}
    g.add_node("Requantize", ["x"], ["y"], **attrs)
    return g, {"x": x}, {"y": quantize.requantize_linear(x, **attrs)}


def fully_connected_case(rng: np.random.Generator) -> Case:
    rows, k, n = int(rng.integers(1, 4)), int(rng.integers(1, 70)), int(rng.integers(1, 40))
    x = _int8(rng, (rows, k))
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    with_bias = rng.random() < 0.8
    bias = rng.integers(-20000, 20000, n).astype(np.int32)
    m0, sh = _multipliers(rng, n, 1e-5, 0.05)
    dtype, zp, lo, hi = _out(rng)
    x_zp = int(rng.integers(-128, 128))
    g = _graph("fc", {"x": x}, "y", dtype, (rows, n))
    g.add_constant("w", w)
    if with_bias:
        g.add_constant("b", bias)
    attrs = {"x_zp": x_zp, "m0": m0, "shift": sh, "out_zp": zp, "act_min": lo, "act_max": hi, "dtype": dtype}
    g.add_node("QFullyConnected", ["x", "w", "b" if with_bias else ""], ["y"], **attrs)
    ref = linear.fully_connected(x, w, bias if with_bias else None, **attrs)
    return g, {"x": x}, {"y": ref}


def conv2d_case(rng: np.random.Generator, depthwise: bool = False,
                channels_last: bool = False) -> Case:
    """``channels_last``: 8 or 16 input channels, unit W dilation — the shapes for which the
    SMLAD conv takes its channels-last layout (mode 1) instead of im2col (mode 0)."""
    n, h, w_ = 1, int(rng.integers(1, 9)), int(rng.integers(1, 9))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dil = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
    if channels_last:
        dil[1] = 1
    strides = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
    pads = [int(v) for v in rng.integers(0, 3, 4)]
    h = max(h, dil[0] * (kh - 1) + 1 - pads[0] - pads[2])
    w_ = max(w_, dil[1] * (kw - 1) + 1 - pads[1] - pads[3])
    if depthwise:
        c = int(rng.integers(1, 6))
        mult = int(rng.integers(1, 3))
        group, o = c, c * mult
    elif channels_last:
        group, c, o = 1, 8 * int(rng.integers(1, 3)), int(rng.integers(1, 9))
    else:
        group = int(rng.choice([1, 1, 2]))
        c = group * int(rng.integers(1, 4))
        o = group * int(rng.integers(1, 5))
    x = _int8(rng, (n, c, h, w_))
    wt = rng.integers(-127, 128, (o, c // group, kh, kw)).astype(np.int8)
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    m0, sh = _multipliers(rng, o, 1e-4, 0.1)
    dtype, zp, lo, hi = _out(rng)
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": group,
                 "x_zp": int(rng.integers(-128, 128)), "m0": m0, "shift": sh, "out_zp": zp, "act_min": lo,
                 "act_max": hi, "dtype": dtype}
    ref = conv.conv2d(x, wt, bias, **attrs)
    g = _graph("conv", {"x": x}, "y", dtype, ref.shape)
    g.add_constant("w", wt)
    g.add_constant("b", bias)
    g.add_node("QDepthwiseConv2d" if depthwise else "QConv2d", ["x", "w", "b"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def depthwise_case(rng: np.random.Generator) -> Case:
    return conv2d_case(rng, depthwise=True)


def conv1d_case(rng: np.random.Generator) -> Case:
    c, o, k = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 5))
    length = int(rng.integers(2 * k, 20))  # dilation <= 2: the output is never empty
    x = _int8(rng, (1, c, length))
    wt = rng.integers(-127, 128, (o, c, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    m0, sh = _multipliers(rng, o, 1e-4, 0.1)
    dtype, zp, lo, hi = _out(rng)
    attrs = {"stride": int(rng.integers(1, 3)), "pads": [int(v) for v in rng.integers(0, 3, 2)],
                 "dilation": int(rng.integers(1, 3)), "group": 1, "x_zp": int(rng.integers(-128, 128)),
                 "m0": m0, "shift": sh, "out_zp": zp, "act_min": lo, "act_max": hi, "dtype": dtype}
    ref = conv.conv1d(x, wt, bias, **attrs)
    g = _graph("conv1d", {"x": x}, "y", dtype, ref.shape)
    g.add_constant("w", wt)
    g.add_constant("b", bias)
    g.add_node("QConv1d", ["x", "w", "b"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def _broadcast_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(1, 5))))
    b_shape = tuple(1 if rng.random() < 0.4 else d for d in shape)
    b_shape = b_shape[int(rng.integers(0, len(b_shape))):] or (1,)
    return _int8(rng, shape), _int8(rng, b_shape)


def add_case(rng: np.random.Generator) -> Case:
    a, b = _broadcast_pair(rng)
    sa, sb, so = np.exp(rng.uniform(-5, 0, 3))
    twice = 2 * max(sa, sb)
    ls = 20
    (am,), (ash,) = quantize_multiplier_array(np.array([sa / twice]))
    (bm,), (bsh,) = quantize_multiplier_array(np.array([sb / twice]))
    (om,), (osh,) = quantize_multiplier_array(np.array([twice / (2**ls * so)]))
    dtype, zp, lo, hi = _out(rng)
    attrs = {"a_zp": int(rng.integers(-128, 128)), "b_zp": int(rng.integers(-128, 128)),
                 "left_shift": ls, "a_m0": int(am), "a_shift": int(ash), "b_m0": int(bm), "b_shift": int(bsh),
                 "out_m0": int(om), "out_shift": int(osh), "out_zp": zp, "act_min": lo, "act_max": hi,
                 "dtype": dtype}
    ref = elementwise.add(a, b, **attrs)
    g = _graph("add", {"a": a, "b": b}, "y", dtype, ref.shape)
    g.add_node("QAdd", ["a", "b"], ["y"], **attrs)
    return g, {"a": a, "b": b}, {"y": ref}


def mul_case(rng: np.random.Generator) -> Case:
    a, b = _broadcast_pair(rng)
    (m0,), (sh,) = _multipliers(rng, 1, 1e-4, 0.5)
    dtype, zp, lo, hi = _out(rng)
    attrs = {"a_zp": int(rng.integers(-128, 128)), "b_zp": int(rng.integers(-128, 128)),
                 "m0": int(m0), "shift": int(sh), "out_zp": zp, "act_min": lo, "act_max": hi, "dtype": dtype}
    ref = elementwise.mul(a, b, **attrs)
    g = _graph("mul", {"a": a, "b": b}, "y", dtype, ref.shape)
    g.add_node("QMul", ["a", "b"], ["y"], **attrs)
    return g, {"a": a, "b": b}, {"y": ref}


def clamp_case(rng: np.random.Generator) -> Case:
    x = _int8(rng, (2, 3, 5))
    lo = int(rng.integers(-128, 0))
    hi = int(rng.integers(lo, 128))
    ref = elementwise.clamp(x, min=lo, max=hi)
    g = _graph("clamp", {"x": x}, "y", "int8", x.shape)
    g.add_node("QClamp", ["x"], ["y"], min=lo, max=hi)
    return g, {"x": x}, {"y": ref}


def _pool_attrs(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    k = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    pads = [int(rng.integers(0, kk)) for kk in (k[0], k[1], k[0], k[1])]
    x = _int8(rng, (1, int(rng.integers(1, 4)), int(rng.integers(k[0], 9)),
                    int(rng.integers(k[1], 9))))
    return x, {"kernel": k, "strides": [int(rng.integers(1, 3)), int(rng.integers(1, 3))],
                   "pads": pads}


def maxpool_case(rng: np.random.Generator) -> Case:
    x, attrs = _pool_attrs(rng)
    attrs["dilations"] = [1, 1]
    ref = pooling.max_pool2d(x, **attrs)
    g = _graph("maxpool", {"x": x}, "y", "int8", ref.shape)
    g.add_node("QMaxPool2d", ["x"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def avgpool_case(rng: np.random.Generator) -> Case:
    x, attrs = _pool_attrs(rng)
    attrs.update(count_include_pad=int(rng.integers(0, 2)), x_zp=int(rng.integers(-128, 128)))
    ref = pooling.avg_pool2d(x, **attrs)
    g = _graph("avgpool", {"x": x}, "y", "int8", ref.shape)
    g.add_node("QAvgPool2d", ["x"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def global_avgpool_case(rng: np.random.Generator) -> Case:
    x = _int8(rng, (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6))))
    (m0,), (sh,) = _multipliers(rng, 1, 1e-3, 0.5)
    dtype, zp, lo, hi = _out(rng)
    attrs = {"x_zp": int(rng.integers(-128, 128)), "m0": int(m0), "shift": int(sh), "out_zp": zp,
                 "act_min": lo, "act_max": hi, "dtype": dtype}
    ref = pooling.global_avg_pool(x, **attrs)
    g = _graph("gap", {"x": x}, "y", dtype, ref.shape)
    g.add_node("QGlobalAvgPool", ["x"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def lut_case(rng: np.random.Generator) -> Case:
    x = _int8(rng, (4, 33))
    table = lut.sigmoid_lut(float(np.exp(rng.uniform(-5, 0))), int(rng.integers(-20, 20)))
    g = _graph("lut", {"x": x}, "y", "int8", x.shape)
    g.add_constant("table", table)
    g.add_node("QLut", ["x", "table"], ["y"])
    return g, {"x": x}, {"y": lut.lut_apply(x, table)}


def reshape_fc_case(rng: np.random.Generator) -> Case:
    """Flatten then FC: a view op feeding a kernel (two ops, arena reuse)."""
    x = _int8(rng, (1, 2, 3, 4))
    w = rng.integers(-127, 128, (5, 24)).astype(np.int8)
    m0, sh = _multipliers(rng, 5, 1e-4, 0.02)
    g = _graph("flatten_fc", {"x": x}, "y", "int8", (1, 5))
    g.add_tensor(Tensor("flat", "int8", (1, 24)))
    g.add_constant("w", w)
    g.add_node("Flatten", ["x"], ["flat"], axis=1)
    attrs = {"x_zp": 0, "m0": m0, "shift": sh, "out_zp": 0, "act_min": -128, "act_max": 127, "dtype": "int8"}
    g.add_node("QFullyConnected", ["flat", "w", ""], ["y"], **attrs)
    return g, {"x": x}, {"y": linear.fully_connected(x.reshape(1, 24), w, None, **attrs)}


CASES: dict[str, Callable[[np.random.Generator], Case]] = {
    "Requantize": requantize_case,
    "QFullyConnected": fully_connected_case,
    "QConv2d": conv2d_case,
    "QConv2d channels-last": lambda rng: conv2d_case(rng, channels_last=True),
    "QDepthwiseConv2d": depthwise_case,
    "QConv1d": conv1d_case,
    "QAdd": add_case,
    "QMul": mul_case,
    "QClamp": clamp_case,
    "QMaxPool2d": maxpool_case,
    "QAvgPool2d": avgpool_case,
    "QGlobalAvgPool": global_avgpool_case,
    "QLut": lut_case,
    "Flatten+QFullyConnected": reshape_fc_case,
}


def shiftmax_case(rng: np.random.Generator) -> Case:
    dtype = str(rng.choice(["int8", "int16"]))
    hi = 128 if dtype == "int8" else 4000
    x = rng.integers(-hi, hi, (2, 3, int(rng.integers(1, 12)))).astype(dtype)
    axis = int(rng.choice([-1, 1]))
    s = float(np.exp(rng.uniform(np.log(0.002), np.log(0.5))))
    attrs = {"axis": axis, "x0": int(np.floor(-1 / s)), "n": 15, "out_bits": int(rng.choice([8, 16]))}
    ref = transformer.shiftmax(x, **attrs)
    g = _graph("shiftmax", {"x": x}, "y", str(ref.dtype), ref.shape)
    g.add_node("Shiftmax", ["x"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def shift_gelu_case(rng: np.random.Generator) -> Case:
    x = _int8(rng, (3, int(rng.integers(1, 20))))
    s = float(np.exp(rng.uniform(np.log(0.01), np.log(0.2))))
    x0 = int(np.floor(-1 / (1.702 * s)))
    lam = round(4 / s) if rng.random() < 0.5 else 2**31 - 1
    (m0,), (sh,) = quantize_multiplier_array(np.array([s * 2.0**-7 / (s * 1.1)]))
    dtype, zp, lo, hi = _out(rng)
    attrs = {"axis": -1, "x0": x0, "n": transformer.shift_gelu_n(x0), "sig_bits": 8,
                 "clip_min": -lam if lam < 2**31 - 1 else -(2**31), "clip_max": lam,
                 "x_zp": int(rng.integers(-20, 20)), "m0": int(m0), "shift": int(sh), "out_zp": zp,
                 "act_min": lo, "act_max": hi, "dtype": dtype}
    ref = transformer.shift_gelu(x, **attrs)
    g = _graph("shiftgelu", {"x": x}, "y", dtype, ref.shape)
    g.add_node("ShiftGELU", ["x"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def _norm_case(rng: np.random.Generator, op: str) -> Case:
    dtype_in = str(rng.choice(["int8", "int16"]))
    c = int(rng.integers(1, 24))
    x = (rng.integers(-128, 128, (2, 3, c)) * (1 if dtype_in == "int8" else 100)).astype(dtype_in)
    gamma = rng.uniform(0.5, 2.0, c)
    m0, sh = quantize_multiplier_array(gamma * np.sqrt(c) / (2**30 * 0.02))
    beta = rng.integers(-2**20, 2**20, c).astype(np.int32)
    dtype, zp, lo, hi = _out(rng)
    attrs = {"axis": -1, "iters": 10, "m0": m0, "shift": sh, "out_zp": zp, "act_min": lo, "act_max": hi,
                 "dtype": dtype}
    fn = transformer.i_layernorm if op == "ILayerNorm" else transformer.i_rmsnorm
    ref = fn(x, beta, **attrs)
    g = _graph(op, {"x": x}, "y", dtype, ref.shape)
    g.add_constant("beta", beta)
    g.add_node(op, ["x", "beta"], ["y"], **attrs)
    return g, {"x": x}, {"y": ref}


def matmul_case(rng: np.random.Generator) -> Case:
    m, k, n = (int(v) for v in rng.integers(1, 9, 3))
    a_batch, b_batch = [((2, 3), (3,)), ((2, 1), (1, 4)), ((), ()), ((2,), ())][int(rng.integers(0, 4))]
    a = _int8(rng, a_batch + (m, k))
    b = _int8(rng, b_batch + (k, n))
    m0, sh = _multipliers(rng, n if rng.random() < 0.5 else 1, 1e-4, 0.05)
    dtype, zp, lo, hi = _out(rng)
    attrs = {"a_zp": int(rng.integers(-128, 128)), "b_zp": int(rng.integers(-10, 10)), "m0": m0,
                 "shift": sh, "out_zp": zp, "act_min": lo, "act_max": hi, "dtype": dtype}
    ref = linear.qmatmul(a, b, **attrs)
    g = _graph("matmul", {"a": a, "b": b}, "y", dtype, ref.shape)
    g.add_node("QMatMul", ["a", "b"], ["y"], **attrs)
    return g, {"a": a, "b": b}, {"y": ref}


def transpose_case(rng: np.random.Generator) -> Case:
    shape = tuple(int(v) for v in rng.integers(1, 5, int(rng.integers(2, 6))))
    x = rng.integers(-30000, 30000, shape).astype(str(rng.choice(["int8", "int16", "int32"])))
    perm = [int(p) for p in rng.permutation(len(shape))]
    ref = np.transpose(x, perm)
    g = _graph("transpose", {"x": x}, "y", str(x.dtype), ref.shape)
    g.add_node("Transpose", ["x"], ["y"], perm=perm)
    return g, {"x": x}, {"y": ref}


def concat_case(rng: np.random.Generator) -> Case:
    base = [int(v) for v in rng.integers(1, 5, 3)]
    axis = int(rng.integers(0, 3))
    parts = {}
    for j in range(int(rng.integers(2, 4))):
        shape = list(base)
        shape[axis] = int(rng.integers(1, 4))
        parts[f"x{j}"] = _int8(rng, tuple(shape))
    ref = np.concatenate(list(parts.values()), axis=axis)
    g = _graph("concat", parts, "y", "int8", ref.shape)
    g.add_node("Concat", list(parts), ["y"], axis=axis)
    return g, parts, {"y": ref}


CASES.update({
    "Shiftmax": shiftmax_case,
    "ShiftGELU": shift_gelu_case,
    "ILayerNorm": lambda rng: _norm_case(rng, "ILayerNorm"),
    "IRMSNorm": lambda rng: _norm_case(rng, "IRMSNorm"),
    "QMatMul": matmul_case,
    "Transpose": transpose_case,
    "Concat": concat_case,
})


def slice_case(rng: np.random.Generator) -> Case:
    shape = tuple(int(v) for v in rng.integers(2, 7, 3))
    x = _int8(rng, shape)
    axis = int(rng.integers(0, 3))
    step = int(rng.choice([1, 2, -1]))
    n = shape[axis]
    start, end = (int(rng.integers(0, n - 1)), n) if step > 0 else (n - 1, -n - 1)
    index = [slice(None)] * 3
    index[axis] = slice(start, end, step)
    ref = x[tuple(index)]
    g = _graph("slice", {"x": x}, "y", "int8", ref.shape)
    for name, v in (("starts", start), ("ends", end), ("axes", axis), ("steps", step)):
        g.add_constant(name, np.array([v], np.int64))
    g.add_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    return g, {"x": x}, {"y": ref}


CASES["Slice"] = slice_case
