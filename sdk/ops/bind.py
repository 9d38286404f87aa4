"""Prepared Numba kernels: one integer node bound once to its static operands for a Program.

A binder takes a node whose shapes are fixed by the graph and returns ``kernel(args) -> array``
with everything the registry kernel would recompute per call done ahead. An integer node's
attributes first go through its op's :meth:`~sdk.ops.schema.OpDef.prepare` (the one place
that checks them, types them and fills defaults), then: attributes turned into
int64 scalars and per-channel vectors, constant operands pre-broadcast, convolution geometry
solved and weights packed. At run time only the Numba loops run. A binder returns None when the
node does not fit its fast form; the Program then binds the registry kernel instead (which
handles, or rejects with its own error, the unusual case).

The numerics are those of the registry's Numba twins, which tests hold bit-equal to the NumPy
specification: the loops are the very ones of :mod:`sdk.kernels.fast` and requantization is
the scalar rule of :mod:`sdk.kernels.fast.requant`. The fused fully-connected loop computes
``out[r, n] = requant(wrap32(Σ_k (x[r, k] − x_zp)·w[n, k] + bias[n]), m0[n], shift[n])``,
the formula of :func:`sdk.kernels.linear.fully_connected`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from numba import njit

from sdk.errors import GraphError
from sdk.graph.ir import Graph, Node
from sdk.kernels.checks import channel_vector, check_range, out_dtype
from sdk.kernels.conv import conv_geometry
from sdk.kernels.fast.conv import depthwise_loop, im2col, to_hwc
from sdk.kernels.fast.elementwise import add_loop, clamp_loop, mul_loop
from sdk.kernels.fast.gemm import fits_int16, gemm_nt_for, pack_cols, pack_rows, padded_depth
from sdk.kernels.fast.pooling import global_avg_pool_loop, max_pool_loop
from sdk.kernels.fast.quantize import requantize_loop
from sdk.kernels.fast.requant import requant, wrap32
from sdk.kernels.fast.requant_loops import requant_cols, requant_rows
from sdk.kernels.pooling import pool_geometry
from sdk.ops.registry import load_all
from sdk.ops.schema import opdef

Kernel = Callable[[list], np.ndarray]
_NARROW = ("int8", "uint8")  # x − zp of these always fits int16 (the packed GEMM is exact)
_GEMM_ROWS = 4               # from this many rows on, pack and use the 4×4 GEMM block ...
_GEMM_MACS = 4096            # ... when the product is big enough to repay the packing


@njit(cache=True)
def fully_connected_rows(x, w, bias, x_zp, m0, shift, zp, lo, hi, out):  # pragma: no cover
    """``out[r, n] = requant(wrap32(Σ_k (x[r, k] − x_zp)·w[n, k] + bias[n]), m0[n], shift[n])``."""
    rows, k = x.shape
    n = w.shape[0]
    for r in range(rows):
        for j in range(n):
            acc = np.int64(0)
            for i in range(k):
                acc += (np.int64(x[r, i]) - x_zp) * np.int64(w[j, i])
            out[r, j] = requant(wrap32(acc + bias[j]), m0[j], shift[j], zp, lo, hi)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _static(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and all(d > 0 for d in shape)


class Binder:
    """Binds nodes of ``graph`` whose constants are ``const`` to prepared kernels."""

    def __init__(self, graph: Graph, const: Mapping[str, np.ndarray], fast: bool = True
                 ) -> None:
        self.graph = graph
        self.const = const
        self.fast = fast
        self._table = {"QFullyConnected": self._fc, "QAdd": self._add, "QMul": self._mul,
                       "QClamp": self._clamp, "Reshape": self._reshape,
                       "Identity": self._identity, "Concat": self._concat, "Slice": self._slice,
                       "QConv2d": self._conv, "QDepthwiseConv2d": self._depthwise,
                       "QMaxPool2d": self._maxpool, "QGlobalAvgPool": self._gap,
                       "QMatMul": self._matmul, "Pad": self._pad, "Transpose": self._transpose,
                       "Requantize": self._requantize}

    def generic(self, node: Node) -> Callable[[list], Any]:
        """The registry kernel of ``node`` with its attributes bound: one array for a
        single-output node, the list of results otherwise."""
        impl = load_all()[node.op]
        attrs, fast = node.attrs, self.fast
        d, body = getattr(impl, "opdef", None), getattr(impl, "body", None)
        if d is not None and body is not None:
            try:  # prepare the attributes once, not per call
                prepared, kernel = d.prepare(attrs), d.kernel(fast)
            except GraphError:
                pass  # bad attributes: the registry kernel reports them when the node runs
            else:
                if len(node.outputs) == 1:
                    return lambda args: body(args, prepared, kernel)[0]
                return lambda args: body(args, prepared, kernel)
        if len(node.outputs) == 1:
            return lambda args: impl(args, attrs, fast)[0]
        return lambda args: impl(args, attrs, fast)

    def bind(self, node: Node) -> Kernel | None:
        """A prepared kernel for ``node``, or None when it needs the registry kernel (always
        None for ``fast=False``: the NumPy specification runs as registered)."""
        binder = self._table.get(node.op)
        if not self.fast or binder is None or len(node.outputs) != 1:
            return None
        try:
            d = opdef(node.op)
            if d is not None and d.strict:  # the schema's prepare step: checked, typed, defaults
                node = replace(node, attrs=d.prepare(node.attrs))
            return binder(node)
        except (KeyError, TypeError, ValueError, IndexError, ArithmeticError):
            return None  # unusual attributes: the registry kernel handles (or rejects) them
        except Exception as exc:  # an sdk.errors check failed: let the registry report it
            if type(exc).__module__ == "sdk.errors":
                return None
            raise

    # -- helpers ----------------------------------------------------------------------------
    def _shape(self, name: str) -> tuple[int, ...] | None:
        t = self.graph.tensors.get(name)
        return None if t is None or t.shape is None else tuple(t.shape)

    def _dtype(self, name: str) -> str | None:
        t = self.graph.tensors.get(name)
        return None if t is None else t.dtype

    def _requant(self, a: Mapping[str, Any], n: int) -> tuple[Any, ...]:
        """(dtype, m0[n], shift[n], out_zp, lo, hi) of a requantizing op's output side."""
        dt = out_dtype(_text(a.get("dtype", "int8")))
        lo, hi = check_range(a.get("act_min"), a.get("act_max"), dt)
        return (dt, channel_vector(a["m0"], n, "m0", np.int64),
                channel_vector(a["shift"], n, "shift", np.int64),
                np.int64(int(a.get("out_zp", 0))), np.int64(lo), np.int64(hi))

    def _narrow_input(self, name: str, zp: int) -> bool:
        """Whether every ``x − zp`` of this (dynamic) int8/uint8 input fits int16."""
        return (self._dtype(name) in _NARROW and name not in self.const
                and -32512 <= zp <= 32512)

    # -- linear -----------------------------------------------------------------------------
    def _fc(self, node: Node) -> Kernel | None:
        x, w_name = node.inputs[0], node.inputs[1]
        if w_name not in self.const or x in self.const:
            return None
        w = np.ascontiguousarray(self.const[w_name])
        if w.ndim != 2 or not np.issubdtype(w.dtype, np.integer):
            return None
        n, k = w.shape
        a = node.attrs
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        if bias_name and bias_name not in self.const:
            return None
        bias = (channel_vector(self.const[bias_name], n, "bias", np.int64) if bias_name
                else np.zeros(n, np.int64))
        dt, m0, shift, zp, lo, hi = self._requant(a, n)
        x_zp = np.int64(int(a.get("x_zp", 0)))
        xs = self._shape(x)
        rows = int(np.prod(xs[:-1])) if _static(xs) and xs[-1] == k else 0
        if (rows >= _GEMM_ROWS and rows * k * n >= _GEMM_MACS
                and self._narrow_input(x, int(x_zp)) and fits_int16(w, 0)):
            kp = padded_depth(k)
            wp = pack_rows(w, np.int64(0), kp)
            out_shape = xs[:-1] + (n,)
            gemm_nt = gemm_nt_for(rows, n, k)  # threads from EDGE_GEMM_THREAD_MACS on
            slow = self.generic(node)

            x_dtype = np.dtype(self._dtype(x))

            def gemm(args: list) -> np.ndarray:
                xv = args[0]
                if xv.shape != xs or xv.dtype != x_dtype:
                    return slow(args)
                xa = pack_rows(np.ascontiguousarray(xv).reshape(rows, k), x_zp, kp)
                acc = np.empty((rows, n), np.int32)
                gemm_nt(xa, wp, acc)
                out = np.empty((rows, n), dt)
                requant_cols(acc, bias, m0, shift, zp, lo, hi, out)
                return out.reshape(out_shape)
            return gemm

        slow_rows = self.generic(node)

        def rows_loop(args: list) -> np.ndarray:
            xv = args[0]
            if xv.ndim == 0 or xv.shape[-1] != k:
                return slow_rows(args)
            x2 = np.ascontiguousarray(xv).reshape(-1, k)
            out = np.empty((x2.shape[0], n), dt)
            fully_connected_rows(x2, w, bias, x_zp, m0, shift, zp, lo, hi, out)
            return out.reshape(xv.shape[:-1] + (n,))
        return rows_loop

    def _matmul(self, node: Node) -> Kernel | None:
        a_name, b_name = node.inputs[0], node.inputs[1]
        a_s, b_s = self._shape(a_name), self._shape(b_name)
        a = node.attrs
        a_zp, b_zp = int(a.get("a_zp", 0)), int(a.get("b_zp", 0))
        if not (_static(a_s) and _static(b_s) and len(a_s) == 2 and len(b_s) == 2
                and a_s[1] == b_s[0] and a_s[0] >= _GEMM_ROWS
                and self._narrow_input(a_name, a_zp) and self._narrow_input(b_name, b_zp)):
            return None
        (m, k), n = a_s, b_s[1]
        dt, m0, shift, zp, lo, hi = self._requant(a, n)
        kp = padded_depth(k)
        gemm_nt = gemm_nt_for(m, n, k)  # threads from EDGE_GEMM_THREAD_MACS on
        za, zb = np.int64(a_zp), np.int64(b_zp)
        a_dt, b_dt = np.dtype(self._dtype(a_name)), np.dtype(self._dtype(b_name))
        slow = self.generic(node)

        def run(args: list) -> np.ndarray:
            av, bv = args[0], args[1]
            if av.shape != a_s or bv.shape != b_s or av.dtype != a_dt or bv.dtype != b_dt:
                return slow(args)
            pa = pack_rows(np.ascontiguousarray(av), za, kp)
            pb = pack_cols(np.ascontiguousarray(bv), zb, kp)
            acc = np.empty((m, n), np.int32)
            gemm_nt(pa, pb, acc)
            out = np.empty((m, n), dt)
            requant_cols(acc, np.zeros(n, np.int64), m0, shift, zp, lo, hi, out)
            return out
        return run

    # -- element-wise -----------------------------------------------------------------------
    def _operands(self, node: Node) -> tuple[tuple[int, ...], list[np.ndarray | None]] | None:
        """Output shape and, per operand, its pre-broadcast flat constant (None: dynamic,
        of the output's shape)."""
        out_shape = self._shape(node.outputs[0])
        if out_shape is None or any(d < 0 for d in out_shape):
            return None  # a dynamic size: the registry kernel broadcasts at run time
        flat: list[np.ndarray | None] = []
        for name in node.inputs[:2]:
            if name in self.const:
                flat.append(np.ascontiguousarray(
                    np.broadcast_to(self.const[name], out_shape)).reshape(-1))
            elif self._shape(name) == out_shape:
                flat.append(None)
            else:
                return None
        return out_shape, flat

    def _add(self, node: Node) -> Kernel | None:
        ops = self._operands(node)
        if ops is None:
            return None
        shape, (ca, cb) = ops
        a = node.attrs
        dt = out_dtype(_text(a.get("dtype", "int8")))
        lo, hi = check_range(a.get("act_min"), a.get("act_max"), dt)
        ls = int(a.get("left_shift", 20))
        if not 0 <= ls <= 30:
            return None
        i64 = np.int64
        consts = (i64(a.get("a_zp", 0)), i64(a.get("b_zp", 0)), i64(ls), i64(a["a_m0"]),
                  i64(a["a_shift"]), i64(a["b_m0"]), i64(a["b_shift"]), i64(a["out_m0"]),
                  i64(a["out_shift"]), i64(a.get("out_zp", 0)), i64(lo), i64(hi))
        return self._same_shape_binary(node, shape, ca, cb, dt, add_loop, consts)

    def _same_shape_binary(self, node: Node, shape: tuple[int, ...], ca: np.ndarray | None,
                           cb: np.ndarray | None, dt: np.dtype, loop: Any,
                           consts: tuple) -> Kernel:
        """An element-wise integer op on operands of the graph's own shape (constants
        pre-flattened in ``ca``/``cb``); other shapes (broadcasting) take the registry kernel."""
        size = int(np.prod(shape, dtype=np.int64))
        slow = self.generic(node)

        def run(args: list) -> np.ndarray:
            fa = ca if ca is not None else np.ascontiguousarray(args[0]).reshape(-1)
            fb = cb if cb is not None else np.ascontiguousarray(args[1]).reshape(-1)
            if fa.size != size or fb.size != size:
                return slow(args)
            out = np.empty(size, dt)
            loop(fa, fb, *consts, out)
            return out.reshape(shape)
        return run

    def _mul(self, node: Node) -> Kernel | None:
        ops = self._operands(node)
        if ops is None:
            return None
        shape, (ca, cb) = ops
        a = node.attrs
        if np.ndim(a["m0"]) or np.ndim(a["shift"]):
            return None
        dt = out_dtype(_text(a.get("dtype", "int8")))
        lo, hi = check_range(a.get("act_min"), a.get("act_max"), dt)
        i64 = np.int64
        consts = (i64(a.get("a_zp", 0)), i64(a.get("b_zp", 0)), i64(a["m0"]), i64(a["shift"]),
                  i64(a.get("out_zp", 0)), i64(lo), i64(hi))
        return self._same_shape_binary(node, shape, ca, cb, dt, mul_loop, consts)

    def _requantize(self, node: Node) -> Kernel | None:
        a = node.attrs
        x = node.inputs[0]
        if np.ndim(a["m0"]) or np.ndim(a["shift"]) or x in self.const or \
                self._dtype(x) not in ("int8", "uint8", "int16", "int32"):
            return None  # per-tensor integer input only, as the registry's Numba twin
        x_dtype = np.dtype(self._dtype(x))
        slow = self.generic(node)
        dt = out_dtype(_text(a.get("dtype", "int8")))
        lo, hi = check_range(a.get("act_min"), a.get("act_max"), dt)
        i64 = np.int64
        consts = (i64(a.get("in_zp", 0)), i64(a["m0"]), i64(a["shift"]), i64(a.get("out_zp", 0)),
                  i64(lo), i64(hi))

        def run(args: list) -> np.ndarray:
            xv = args[0]
            if xv.dtype != x_dtype:
                return slow(args)
            flat = np.ascontiguousarray(xv).reshape(-1)
            out = np.empty(flat.size, dt)
            requantize_loop(flat, *consts, out)
            return out.reshape(xv.shape)
        return run

    def _clamp(self, node: Node) -> Kernel | None:
        x = node.inputs[0]
        t = self.graph.tensors.get(x)
        if t is None or x in self.const or t.dtype not in ("int8", "uint8", "int16", "int32"):
            return None
        lo_attr, hi_attr = int(node.attrs["min"]), int(node.attrs["max"])
        if lo_attr > hi_attr:
            return None
        info = np.iinfo(t.dtype)
        typ = np.dtype(t.dtype).type
        lo, hi = typ(max(lo_attr, info.min)), typ(min(hi_attr, info.max))

        def run(args: list) -> np.ndarray:
            xv = args[0]
            flat = np.ascontiguousarray(xv).reshape(-1)
            out = np.empty(flat.size, xv.dtype)
            clamp_loop(flat, lo, hi, out)
            return out.reshape(xv.shape)
        return run

    # -- layout -----------------------------------------------------------------------------
    def _reshape(self, node: Node) -> Kernel | None:
        shape = self._shape(node.outputs[0])
        if shape is None or sum(d < 0 for d in shape) > 1:
            return None
        if not _static(shape):  # one free size: NumPy infers it as the shape operand says
            return lambda args: np.reshape(args[0], shape)
        size = int(np.prod(shape))
        slow = self.generic(node)
        # the declared output shape holds for the declared input size; any other size
        # (another batch) takes the registry kernel, which reads the shape operand
        return lambda args: (np.reshape(args[0], shape) if args[0].size == size
                             else slow(args))

    def _identity(self, node: Node) -> Kernel:
        return lambda args: args[0]

    def _transpose(self, node: Node) -> Kernel | None:
        xs = self._shape(node.inputs[0])
        if xs is None:
            return None
        perm = node.attrs.get("perm")
        perm = tuple(range(len(xs)))[::-1] if perm is None else tuple(int(p) for p in perm)
        if sorted(perm) != list(range(len(xs))):
            return None
        return lambda args: np.ascontiguousarray(np.transpose(args[0], perm))

    def _pad(self, node: Node) -> Kernel | None:
        ins, a = node.inputs, node.attrs
        mode = _text(a.get("mode", "constant"))
        x = ins[0]
        xs = self._shape(x)
        if mode != "constant" or not _static(xs) or x in self.const:
            return None
        if len(ins) < 2 or ins[1] not in self.const or any(i and i not in self.const
                                                            for i in ins[2:]):
            return None
        pads = [int(p) for p in np.asarray(self.const[ins[1]]).ravel()]
        value = self.const[ins[2]] if len(ins) > 2 and ins[2] else a.get("value")
        axes = (np.asarray(self.const[ins[3]]).ravel() if len(ins) > 3 and ins[3]
                else range(len(xs)))
        axes = [int(ax) % len(xs) for ax in axes]
        if min(pads, default=0) < 0 or len(pads) != 2 * len(axes):
            return None
        begin, end = [0] * len(xs), [0] * len(xs)
        for i, ax in enumerate(axes):
            begin[ax], end[ax] = pads[i], pads[i + len(axes)]
        dt = np.dtype(self._dtype(x))
        fill = np.asarray(0 if value is None else value, dt)
        out_shape = tuple(d + b + e for d, b, e in zip(xs, begin, end))
        inner = tuple(slice(b, b + d) for b, d in zip(begin, xs))
        slow = self.generic(node)

        def run(args: list) -> np.ndarray:
            xv = args[0]
            if xv.shape != xs or xv.dtype != dt:
                return slow(args)
            out = np.full(out_shape, fill, dt)
            out[inner] = xv
            return out
        return run

    def _concat(self, node: Node) -> Kernel:
        axis = int(node.attrs["axis"])
        if any(not i for i in node.inputs):  # omitted inputs are skipped, as the registry does
            return lambda args: np.concatenate([a for a in args if a is not None], axis=axis)
        return lambda args: np.concatenate(args, axis=axis)

    def _slice(self, node: Node) -> Kernel | None:
        ins = node.inputs
        if any(i and i not in self.const for i in ins[1:]):
            return None
        in_shape = self._shape(ins[0])
        if in_shape is None:
            return None
        starts = np.asarray(self.const[ins[1]], np.int64).ravel()
        ends = np.asarray(self.const[ins[2]], np.int64).ravel()
        axes = (np.asarray(self.const[ins[3]], np.int64).ravel() if len(ins) > 3 and ins[3]
                else np.arange(len(starts)))
        steps = (np.asarray(self.const[ins[4]], np.int64).ravel() if len(ins) > 4 and ins[4]
                 else np.ones(len(starts), np.int64))
        if np.any(steps <= 0):
            return None  # ONNX clamps negative-step ends unlike Python: leave it to the registry
        index = [slice(None)] * len(in_shape)
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[int(ax) % len(in_shape)] = slice(int(s), int(e), int(st))
        key = tuple(index)
        expected = self._shape(node.outputs[0])
        probe = np.empty(in_shape, np.int8)[key]  # ONNX clamping equals Python slicing here
        if expected is not None and tuple(probe.shape) != expected:
            return None
        return lambda args: args[0][key].copy()

    # -- convolution and pooling ------------------------------------------------------------
    def _conv_parts(self, node: Node, group: int) -> tuple[Any, ...] | None:
        x, w_name = node.inputs[0], node.inputs[1]
        xs = self._shape(x)
        if w_name not in self.const or not _static(xs) or len(xs) != 4:
            return None
        w = np.ascontiguousarray(self.const[w_name])
        if w.ndim != 4 or not np.issubdtype(w.dtype, np.integer) or w.size == 0:
            return None
        a = node.attrs
        g = conv_geometry(xs, w.shape, a.get("strides", (1, 1)), a.get("pads", (0, 0, 0, 0)),
                          a.get("dilations", (1, 1)), group)
        if g.oh <= 0 or g.ow <= 0:
            return None
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        if bias_name and bias_name not in self.const:
            return None
        bias = (channel_vector(self.const[bias_name], g.o, "bias", np.int64) if bias_name
                else np.zeros(g.o, np.int64))
        return xs, w, g, bias, self._requant(a, g.o), np.int64(int(a.get("x_zp", 0)))

    def _conv(self, node: Node) -> Kernel | None:
        parts = self._conv_parts(node, int(node.attrs.get("group", 1)))
        if parts is None:
            return None
        xs, w, g, bias, (dt, m0, shift, zp, lo, hi), x_zp = parts
        if not (self._narrow_input(node.inputs[0], int(x_zp)) and fits_int16(w, 0)):
            return None  # the direct loop is data-dependent: the registry kernel picks it
        cg, og, p = g.c // g.group, g.o // g.group, g.oh * g.ow
        depth = cg * g.kh * g.kw
        kp = padded_depth(depth)
        gemm_nt = gemm_nt_for(og, p, depth)  # threads from EDGE_GEMM_THREAD_MACS on
        packs = [pack_rows(np.ascontiguousarray(
            w[k * og:(k + 1) * og].transpose(0, 2, 3, 1)).reshape(og, depth), np.int64(0), kp)
            for k in range(g.group)]
        (sh, sw), (dh, dw), (pt, pl) = g.strides, g.dilations, g.pads[:2]
        geo = (g.kh, g.kw, sh, sw, pt, pl, dh, dw, g.oh, g.ow)
        slow = self.generic(node)
        x_dtype = np.dtype(self._dtype(node.inputs[0]))

        def run(args: list) -> np.ndarray:
            xv = args[0]
            if xv.shape != xs or xv.dtype != x_dtype:
                return slow(args)
            xv = np.ascontiguousarray(xv)
            cols = np.zeros((p, kp), np.int16)
            xh = np.empty((g.h, g.w, cg), np.int16)
            acc = np.empty((g.n, g.o, p), np.int32)
            out = np.empty((g.n, g.o, g.oh, g.ow), dt)
            for n in range(g.n):
                for k in range(g.group):
                    to_hwc(xv[n], x_zp, k * cg, cg, xh)
                    im2col(xh, *geo, cols)
                    gemm_nt(packs[k], cols, acc[n, k * og:(k + 1) * og])
                requant_rows(acc[n], bias, m0, shift, zp, lo, hi, out[n].reshape(g.o, p))
            return out
        return run

    def _depthwise(self, node: Node) -> Kernel | None:
        xs = self._shape(node.inputs[0])
        if not _static(xs) or len(xs) != 4:
            return None
        group = node.attrs.get("group")
        if group is not None and int(group) != xs[1]:
            return None
        parts = self._conv_parts(node, xs[1])
        if parts is None or parts[1].shape[1] != 1:
            return None
        xs, w, g, bias, (dt, m0, shift, zp, lo, hi), x_zp = parts
        (sh, sw), (dh, dw), (pt, pl) = g.strides, g.dilations, g.pads[:2]
        p = g.oh * g.ow
        slow = self.generic(node)

        def run(args: list) -> np.ndarray:
            xv = args[0]
            if xv.shape != xs:
                return slow(args)
            xv = np.ascontiguousarray(xv)
            acc = np.empty((g.n, g.o, g.oh, g.ow), np.int32)
            out = np.empty((g.n, g.o, g.oh, g.ow), dt)
            for n in range(g.n):
                depthwise_loop(xv[n], w, x_zp, sh, sw, pt, pl, dh, dw, acc[n])
                requant_rows(acc[n].reshape(g.o, p), bias, m0, shift, zp, lo, hi,
                             out[n].reshape(g.o, p))
            return out
        return run

    def _maxpool(self, node: Node) -> Kernel | None:
        x = node.inputs[0]
        xs, dtype = self._shape(x), self._dtype(x)
        if not _static(xs) or x in self.const or dtype not in ("int8", "uint8", "int16", "int32"):
            return None
        a = node.attrs
        k, st, pd, dl, o = pool_geometry(xs, a["kernel"], a.get("strides", (1, 1)),
                                         a.get("pads", (0, 0, 0, 0)), a.get("dilations", (1, 1)))
        dt = np.dtype(dtype)
        fill = dt.type(np.iinfo(dt).min)
        out_shape = xs[:2] + o
        slow = self.generic(node)

        def run(args: list) -> np.ndarray:
            xv = args[0]
            if xv.shape != xs or xv.dtype != dt:
                return slow(args)
            out = np.empty(out_shape, dt)
            max_pool_loop(np.ascontiguousarray(xv), k[0], k[1], st[0], st[1], pd[0], pd[1], dl[0],
                 dl[1], fill, out)
            return out
        return run

    def _gap(self, node: Node) -> Kernel | None:
        x = node.inputs[0]
        xs = self._shape(x)
        if not _static(xs) or len(xs) < 3 or x in self.const:
            return None
        n, c = xs[:2]
        p = int(np.prod(xs[2:]))
        dt, m0, shift, zp, lo, hi = self._requant(node.attrs, c)
        x_zp = np.int64(int(node.attrs.get("x_zp", 0)))
        out_shape = (n, c) + (1,) * (len(xs) - 2)
        slow = self.generic(node)

        def run(args: list) -> np.ndarray:
            xv = args[0]
            if xv.shape != xs:
                return slow(args)
            out = np.empty((n, c), dt)
            global_avg_pool_loop(np.ascontiguousarray(xv).reshape(n, c, p), x_zp, m0, shift, zp, lo, hi, out)
            return out.reshape(out_shape)
        return run
