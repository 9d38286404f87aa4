"""StepProgram: a small integer step graph prepared once for many cheap runs (streaming).

A streaming step is tiny (one 10 ms frame: [1, C] tensors), so the generic executor's
per-call work — looking up the plan, re-validating every input, broadcasting constants,
turning attributes into per-channel vectors — costs more than the arithmetic. A StepProgram
does all of that once: it fixes the node order for the fed tensors and the outputs read,
pre-broadcasts constant operands, converts every attribute to the int64 scalars and vectors the
Numba loops take, and binds each node to its kernel. A run is then one Python call per node.

Numerics are the project's one integer semantics: the element-wise ops call the very Numba
loops of :mod:`sdk.kernels.fast.elementwise`, requantization is the scalar rounding rule of
:mod:`sdk.kernels.fast.requant`, and the fully-connected loop computes
``out[r, n] = requant(wrap32(Σ_k (x[r, k] − x_zp)·w[n, k] + bias[n]), m0[n], shift[n])``,
the formula of :func:`sdk.kernels.linear.fully_connected`. Any other op (and any node whose
operands do not fit the fast forms) runs through the reference registry. Tests compare the
bits with the reference executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit

from sdk.backends.reference.registry import load_all
from sdk.errors import GraphError
from sdk.graph.ir import Graph, Node
from sdk.kernels.checks import channel_vector, check_range, out_dtype
from sdk.kernels.fast.elementwise import _add as add_loop
from sdk.kernels.fast.elementwise import _clamp as clamp_loop
from sdk.kernels.fast.elementwise import _mul as mul_loop
from sdk.kernels.fast.requant import requant, wrap32

Kernel = Callable[[list[np.ndarray]], np.ndarray]


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


class StepProgram:
    """``graph`` prepared to compute ``reads`` from ``fed`` tensors (plus its constants)."""

    def __init__(self, graph: Graph, fed: Sequence[str], reads: Sequence[str]) -> None:
        self.graph = graph
        self.fed = list(fed)
        self.reads = list(reads)
        self._const = {n: t.data for n, t in graph.tensors.items() if t.data is not None}
        producers = {k: v for k, v in graph.producers().items() if k not in set(fed)}
        needed: set[int] = set()
        stack = [producers[r] for r in reads if r in producers]
        while stack:
            node = stack.pop()
            if id(node) not in needed:
                needed.add(id(node))
                stack.extend(producers[i] for i in node.inputs if i in producers)
        self.nodes = [n for n in graph.topological_order() if id(n) in needed]
        self.fast_nodes = 0
        self._steps: list[tuple[Kernel, list[str], list[str]]] = []
        for node in self.nodes:
            kernel = self._bind_fast(node)
            if kernel is None:
                kernel = self._bind_generic(node)
            else:
                self.fast_nodes += 1
            self._steps.append((kernel, list(node.inputs), list(node.outputs)))
        for r in reads:
            if r not in self._const and r not in fed and r not in producers:
                raise GraphError(f"tensor {r!r} is neither fed, constant nor produced")

    # -- binding --------------------------------------------------------------------------
    def _shape(self, name: str) -> tuple[int, ...] | None:
        t = self.graph.tensors.get(name)
        return None if t is None or t.shape is None else tuple(t.shape)

    def _bind_generic(self, node: Node) -> Kernel:
        impl = load_all()[node.op]
        attrs = node.attrs
        n_out = len(node.outputs)

        def run(args: list[np.ndarray]) -> Any:
            res = impl(args, attrs, True)
            return res[0] if n_out == 1 else res
        return run

    def _bind_fast(self, node: Node) -> Kernel | None:
        binder = {"QFullyConnected": self._fc, "QAdd": self._add, "QMul": self._mul,
                  "QClamp": self._clamp, "Reshape": self._reshape, "Identity": self._identity,
                  "Concat": self._concat, "Slice": self._slice}.get(node.op)
        if binder is None or len(node.outputs) != 1:
            return None
        try:
            return binder(node)
        except (KeyError, TypeError, ValueError):
            return None  # unusual attributes: the registry kernel handles (or rejects) them

    def _fc(self, node: Node) -> Kernel | None:
        x, w_name = node.inputs[0], node.inputs[1]
        if w_name not in self._const or x in self._const:
            return None
        w = np.ascontiguousarray(self._const[w_name])
        if w.ndim != 2:
            return None
        n, k = w.shape
        a = node.attrs
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        if bias_name and bias_name not in self._const:
            return None
        bias = (channel_vector(self._const[bias_name], n, "bias", np.int64) if bias_name
                else np.zeros(n, np.int64))
        dt = out_dtype(_text(a.get("dtype", "int8")))
        lo, hi = check_range(a.get("act_min"), a.get("act_max"), dt)
        m0 = channel_vector(a["m0"], n, "m0", np.int64)
        shift = channel_vector(a["shift"], n, "shift", np.int64)
        x_zp, zp = np.int64(a.get("x_zp", 0)), np.int64(a.get("out_zp", 0))
        lo64, hi64 = np.int64(lo), np.int64(hi)

        def run(args: list[np.ndarray]) -> np.ndarray:
            xv = args[0]
            x2 = np.ascontiguousarray(xv).reshape(-1, k)
            out = np.empty((x2.shape[0], n), dt)
            fully_connected_rows(x2, w, bias, x_zp, m0, shift, zp, lo64, hi64, out)
            return out.reshape(xv.shape[:-1] + (n,))
        return run

    def _operands(self, node: Node) -> tuple[tuple[int, ...], list[np.ndarray | None]] | None:
        """Output shape and, per operand, its pre-broadcast flat constant (None: dynamic,
        of the output's shape)."""
        out_shape = self._shape(node.outputs[0])
        if out_shape is None or any(d < 0 for d in out_shape):
            return None  # a dynamic size: the registry kernel broadcasts at run time
        flat: list[np.ndarray | None] = []
        for name in node.inputs[:2]:
            if name in self._const:
                flat.append(np.ascontiguousarray(
                    np.broadcast_to(self._const[name], out_shape)).reshape(-1))
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
        size = int(np.prod(shape, dtype=np.int64))

        def run(args: list[np.ndarray]) -> np.ndarray:
            fa = ca if ca is not None else np.ascontiguousarray(args[0]).reshape(-1)
            fb = cb if cb is not None else np.ascontiguousarray(args[1]).reshape(-1)
            out = np.empty(size, dt)
            add_loop(fa, fb, *consts, out)
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
        size = int(np.prod(shape, dtype=np.int64))

        def run(args: list[np.ndarray]) -> np.ndarray:
            fa = ca if ca is not None else np.ascontiguousarray(args[0]).reshape(-1)
            fb = cb if cb is not None else np.ascontiguousarray(args[1]).reshape(-1)
            out = np.empty(size, dt)
            mul_loop(fa, fb, *consts, out)
            return out.reshape(shape)
        return run

    def _clamp(self, node: Node) -> Kernel | None:
        x = node.inputs[0]
        t = self.graph.tensors.get(x)
        if t is None or x in self._const or t.dtype not in ("int8", "uint8", "int16", "int32"):
            return None
        lo_attr, hi_attr = int(node.attrs["min"]), int(node.attrs["max"])
        if lo_attr > hi_attr:
            return None
        info = np.iinfo(t.dtype)
        typ = np.dtype(t.dtype).type
        lo, hi = typ(max(lo_attr, info.min)), typ(min(hi_attr, info.max))

        def run(args: list[np.ndarray]) -> np.ndarray:
            xv = args[0]
            flat = np.ascontiguousarray(xv).reshape(-1)
            out = np.empty(flat.size, xv.dtype)
            clamp_loop(flat, lo, hi, out)
            return out.reshape(xv.shape)
        return run

    def _reshape(self, node: Node) -> Kernel | None:
        shape = self._shape(node.outputs[0])
        if shape is None or sum(d < 0 for d in shape) > 1:
            return None
        return lambda args: np.reshape(args[0], shape)

    def _identity(self, node: Node) -> Kernel:
        return lambda args: args[0]

    def _concat(self, node: Node) -> Kernel:
        axis = int(node.attrs.get("axis", 0))
        return lambda args: np.concatenate(args, axis=axis)

    def _slice(self, node: Node) -> Kernel | None:
        ins = node.inputs
        if any(i and i not in self._const for i in ins[1:]):
            return None
        in_shape = self._shape(ins[0])
        if in_shape is None:
            return None
        starts = np.asarray(self._const[ins[1]], np.int64).ravel()
        ends = np.asarray(self._const[ins[2]], np.int64).ravel()
        axes = (np.asarray(self._const[ins[3]], np.int64).ravel() if len(ins) > 3 and ins[3]
                else np.arange(len(starts)))
        steps = (np.asarray(self._const[ins[4]], np.int64).ravel() if len(ins) > 4 and ins[4]
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

    # -- running --------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Values of ``reads`` for the fed tensors (fed as given: the caller checks them)."""
        env = dict(self._const)
        env.update(feeds)
        for kernel, ins, outs in self._steps:
            res = kernel([env[i] if i else None for i in ins])
            if len(outs) == 1:
                env[outs[0]] = res
            else:
                for name, value in zip(outs, res):
                    if name:
                        env[name] = value
        return [env[r] for r in self.reads]
