"""Compiled whole-graph programs: one Numba function generated per (graph, fed, reads).

The prepared :class:`~sdk.ops.program.Program` runs one Python call per node; on small models
(a keyword-spotting hop: 30 nodes, 67 k MACs) the calls, the argument unboxing and the
allocations cost several times the arithmetic. :class:`CompiledProgram` removes them: it
writes the source of ONE ``@njit`` function for the nodes a request needs and compiles it:

* every intermediate tensor is a view of one arena (a ``uint8`` buffer allocated once per
  program and thread); offsets come from the tensors' live ranges
  (:func:`sdk.ops.liveness.live_ranges`, first fit), so tensors whose lives do not overlap
  share bytes;
* constants are bound once: weights, biases, per-channel multipliers, packed GEMM operands
  and ``Σ_k w[n, k]`` (the zero-point correction) live in one ``uint8`` weight buffer, viewed
  with their dtype and shape at the top of the function; scalar attributes are literals in
  the source;
* views (Reshape, Flatten, Squeeze, Unsqueeze, Identity) cost nothing; requantization is fused
  into the producing loop (``fc_small``, ``requant_cols``/``requant_rows`` after a GEMM);
* fully-connected layers on int8 activations and weights use the u8×s8 dot-product
  instruction where the CPU has it (:mod:`sdk.kernels.fast.vnni`, chosen when the program is
  generated; the CPU is part of the cache key), the int16 GEMM or ``fc_small`` elsewhere;
* the float boundary (QuantizeLinear of inputs, DequantizeLinear of outputs) runs inside;
* the kernels are the very Numba loops of :mod:`sdk.kernels.fast` (same formulas, same bits),
  called from the generated function without leaving native code;
* weights and arena tensors are viewed with :func:`sdk.kernels.fast.fused.view_at` (an array
  struct built in place: the checked slice/view/reshape cost Numba and LLVM tens of ms of
  compile time per tensor), and a program over :data:`STAGE_LINES` lines is cut into stage
  functions at node boundaries, called in turn (Numba's and LLVM's per-function passes grow
  faster than linearly with a function's size: a 560-line segmentation program took 161 s
  of CPU to compile as one function, ~47 s as stages with view_at).

The generated module is written under the program cache (``$EDGE_CACHE_DIR``, default
``~/.cache/edge/programs``), in a directory named by the hash of its source (which fixes the
graph's structure, shapes and attributes) and the host CPU, and compiled with
``njit(cache=True)``: a new process with a warm cache loads machine code instead of compiling.

A node the generator does not take (a float op, a dynamic shape, an attribute outside the fast
forms) makes the whole request :class:`Unsupported` with the reason; callers then use the
prepared interpreter (:class:`CompiledExecutor` does so per request). A run whose inputs do not
match the shapes and dtypes compiled for, or whose kernels raise (a NaN input, a cache write
past its capacity), is re-run on the interpreter, which returns the same bits or raises the
specification's one-line error. Tests (tests/compiled) hold every program bit-equal to the
NumPy specification.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.graph.ir import Graph, Node
from sdk.ops.liveness import live_ranges, needed_nodes

_ALIGN = 64
# a program over this many lines is cut into stage functions of about this many lines each
STAGE_LINES = 60
_GEMM_ROWS = 4
_GEMM_MACS = 4096
_NARROW = ("int8", "uint8")
_INTS = ("int8", "uint8", "int16", "int32", "int64")
_VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
_POSITION_OPS = ("KVCacheWrite", "CausalMask")


class Unsupported(Exception):
    """The request cannot be compiled; ``str(exc)`` says which node and why."""


def cache_dir() -> Path:
    """Where generated programs and their machine code are kept."""
    env = os.environ.get("EDGE_CACHE_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "edge"
    return base / "programs"


def host_cpu() -> str:
    """The LLVM name of this CPU (part of the cache key, with Numba's own CPU check)."""
    from llvmlite import binding

    return binding.get_host_cpu_name()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _lit_f32(v: Any) -> str:
    return f"np.float32({float(np.float32(v))!r})"


def _i(v: Any) -> str:
    return f"np.int64({int(v)})"


def _tup(shape: Sequence[int]) -> str:
    return "(" + "".join(f"{int(d)}, " for d in shape) + ")"


def _pack_weights(w: np.ndarray, kp: int) -> np.ndarray:
    """``sdk.kernels.fast.gemm.pack_rows(w, 0, kp)`` in NumPy (the caller checked that ``w``
    fits int16): generating a program calls no Numba function, so a process whose program is
    cached loads one machine-code library (the program's) instead of also loading the packing
    loop's (~0.3 s of CPU for the first Numba call in a new process)."""
    out = np.zeros((w.shape[0], kp), np.int16)
    out[:, :w.shape[1]] = w
    return out


class _Generator:
    """Writes the source of one program (see the module docstring)."""

    def __init__(self, graph: Graph, fed: Sequence[str], reads: Sequence[str]) -> None:
        from sdk.ops.schema import load_schema

        load_schema()
        self.graph = graph
        self.fed = list(fed)
        self.reads = list(dict.fromkeys(reads))
        self.const = {n: t.data for n, t in graph.tensors.items() if t.data is not None}
        self.nodes, _ = needed_nodes(graph, self.fed, self.reads)
        self.names: dict[str, str] = {}
        self.prologue: list[str] = []
        self.body: list[str] = []
        self.imports: dict[str, None] = {}  # GEMM kernels only some programs call (threads, sdot)
        self.wparts: list[np.ndarray] = []
        self.woff = 0
        self.arena: dict[str, tuple[str, tuple[int, ...]]] = {}  # tensor -> (dtype, shape)
        self.view_of: dict[str, str] = {}   # a view's output -> the tensor it views
        self.results: set[str] = set()
        self.scalars: set[str] = set()
        self._k = 0
        # outputs of a Transpose of the last two axes / a Concat of one tensor with itself, not
        # written yet: a QMatMul reads their source in place (transposed rows, a batch index
        # map); any other consumer writes them out first (``arg``). tensor -> (kind, source, ...)
        self.lazy: dict[str, tuple] = {}
        self._lazy_emit: dict[str, Any] = {}
        for r in self.reads:
            if r not in graph.tensors:
                raise Unsupported(f"no tensor {r!r}")
        for i, f in enumerate(self.fed):
            self.names[f] = f"in{i}"
        self.marks: list[int] = []  # where each node's lines start in self.body
        for node in self.nodes:
            self.marks.append(len(self.body))
            try:
                self._emit(node)
            except Unsupported as exc:
                raise Unsupported(f"node {node.name!r} ({node.op}): {exc}") from None
            except (KeyError, TypeError, ValueError, IndexError, ArithmeticError,
                    GraphError) as exc:
                raise Unsupported(f"node {node.name!r} ({node.op}): {exc}") from None
        self._plan_arena()

    # -- names, constants, outputs --------------------------------------------------------
    def _fresh(self, stem: str) -> str:
        self._k += 1
        return f"{stem}{self._k}"

    def weight(self, arr: np.ndarray) -> str:
        """A constant placed in the weight buffer; its name in the generated code."""
        a = np.ascontiguousarray(arr)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        name = self._fresh("w")
        start = self.woff
        raw = a.reshape(-1).view(np.uint8)
        self.wparts.append((start, raw))
        self.woff = (start + raw.size + _ALIGN - 1) // _ALIGN * _ALIGN
        self.prologue.append(f"{name} = view_at(W, {start}, {_tup(a.shape)}, np.{a.dtype.name})")
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        t = self.graph.tensors.get(name)
        if t is None or t.shape is None or any(int(d) <= 0 for d in t.shape):
            raise Unsupported(f"tensor {name!r} has no static shape")
        return tuple(int(d) for d in t.shape)

    def dtype(self, name: str) -> str:
        if name in self.const:
            return np.asarray(self.const[name]).dtype.name
        return self.graph.tensor(name).dtype

    def arg(self, name: str) -> str:
        """The expression of an operand (fed, constant or produced)."""
        if not name:
            raise Unsupported("an omitted operand where one is needed")
        if name in self._lazy_emit:  # a deferred Transpose/Concat: written out here
            self._lazy_emit.pop(name)()
        if name in self.names:
            return self.names[name]
        if name in self.const:
            arr = np.asarray(self.const[name])
            if arr.ndim == 0:
                arr = arr.reshape(1)
            expr = self.weight(arr)
            self.names[name] = expr
            return expr
        raise Unsupported(f"operand {name!r} is neither fed, constant nor produced")

    def is_dynamic(self, name: str) -> bool:
        return name not in self.const

    def out(self, node: Node, dtype: Any, shape: tuple[int, ...] | None = None) -> str:
        """The output tensor of ``node`` (checked against the graph's declaration)."""
        if len([o for o in node.outputs if o]) != 1 or not node.outputs[0]:
            raise Unsupported("only single-output nodes are compiled")
        name = node.outputs[0]
        dt = np.dtype(dtype).name
        want = self.shape(name)
        if shape is not None and tuple(shape) != want:
            raise Unsupported(f"output shape {shape} differs from the declared {want}")
        if self.graph.tensor(name).dtype != dt:
            raise Unsupported(f"the kernel writes {dt}, the graph declares "
                              f"{self.graph.tensor(name).dtype}")
        var = self._fresh("t")
        self.names[name] = var
        if name in self.reads:
            self.results.add(name)
            self.prologue.append(f"{var} = np.empty({_tup(want)}, np.{dt})")
        else:
            self.arena[name] = (dt, want)
        return var

    def flat(self, expr: str) -> str:
        return f"{expr}.reshape(-1)"

    def line(self, text: str) -> None:
        self.body.append(text)

    # -- the node table --------------------------------------------------------------------
    def _emit(self, node: Node) -> None:
        from sdk.ops.schema import opdef

        d = opdef(node.op)
        emitter = getattr(self, "_op_" + node.op, None)
        if emitter is None or d is None:
            raise Unsupported("no compiled form (the interpreter runs it)")
        p = d.prepare(node.attrs) if d.strict else dict(node.attrs)
        for o in node.outputs[1:]:
            if o:
                raise Unsupported("only single-output nodes are compiled")
        emitter(node, p)

    def _int_input(self, name: str) -> str:
        dt = self.dtype(name)
        if dt not in _INTS:
            raise Unsupported(f"input {name!r} is {dt}, not an integer")
        return self.arg(name)

    def _requant(self, p: Mapping[str, Any], n: int) -> tuple[str, str, str, str, str, str]:
        """(dtype, m0[n], shift[n], out_zp, lo, hi) of a requantizing op (m0/shift constants)."""
        from sdk.kernels.checks import channel_vector, check_range, out_dtype

        dt = out_dtype(_text(p.get("dtype", "int8")))
        lo, hi = check_range(p.get("act_min"), p.get("act_max"), dt)
        m0 = self.weight(channel_vector(p["m0"], n, "m0", np.int64))
        sh = self.weight(channel_vector(p["shift"], n, "shift", np.int64))
        return dt.name, m0, sh, _i(p.get("out_zp", 0)), _i(lo), _i(hi)

    def _scalar_requant(self, p: Mapping[str, Any]) -> tuple[str, str, str, str, str, str]:
        from sdk.kernels.checks import check_range, out_dtype

        if np.ndim(p["m0"]) or np.ndim(p["shift"]):
            raise Unsupported("per-channel multipliers on a per-tensor op")
        dt = out_dtype(_text(p.get("dtype", "int8")))
        lo, hi = check_range(p.get("act_min"), p.get("act_max"), dt)
        return dt.name, _i(p["m0"]), _i(p["shift"]), _i(p.get("out_zp", 0)), _i(lo), _i(hi)

    # -- float boundary --------------------------------------------------------------------
    def _boundary_params(self, node: Node, p: Mapping[str, Any]) -> tuple[Any, Any]:
        ins = node.inputs
        scale = self.const[ins[1]] if len(ins) > 1 and ins[1] else p.get("scale")
        zp = self.const[ins[2]] if len(ins) > 2 and ins[2] else p.get("zero_point")
        if scale is None:
            raise Unsupported("no scale")
        return scale, (0 if zp is None else zp)

    def _op_QuantizeLinear(self, node: Node, p: dict) -> None:
        from sdk.kernels.checks import out_dtype
        from sdk.kernels.quantize import scale_zero_point

        x = node.inputs[0]
        if self.dtype(x) != "float32" or not self.is_dynamic(x):
            raise Unsupported("a quantized float32 input is compiled, not a constant")
        scale, zp = self._boundary_params(node, p)
        dtype = p.get("dtype")
        if dtype is None:
            zdt = np.asarray(zp).dtype
            dtype = zdt.name if zdt in (np.int8, np.uint8, np.int16) else "int8"
        dt = out_dtype(dtype)
        info = np.iinfo(dt)
        xs = self.shape(x)
        xe = self.arg(x)
        out = self.out(node, dt, xs)
        lo, hi = f"{float(info.min)!r}", f"{float(info.max)!r}"
        if np.size(scale) == 1 and np.size(zp) == 1 and p.get("axis") is None:
            self.line(f"quantize_tensor({xe}.reshape(-1), "
                      f"{_lit_f32(np.asarray(scale).reshape(-1)[0])}, "
                      f"{_i(np.asarray(zp).reshape(-1)[0])}, {lo}, {hi}, {out}.reshape(-1))")
            return
        s, z = scale_zero_point(scale, zp, len(xs), p.get("axis"))
        fs = self.weight(np.broadcast_to(np.asarray(s, np.float32), xs).reshape(-1))
        fz = self.weight(np.broadcast_to(np.asarray(z, np.int64), xs).reshape(-1))
        self.line(f"quantize_elements({xe}.reshape(-1), {fs}, {fz}, {lo}, {hi}, "
                  f"{out}.reshape(-1))")

    def _op_DequantizeLinear(self, node: Node, p: dict) -> None:
        from sdk.kernels.quantize import scale_zero_point

        x = node.inputs[0]
        xe = self._int_input(x)
        xs = self.shape(x)
        scale, zp = self._boundary_params(node, p)
        out = self.out(node, np.float32, xs)
        if np.size(scale) == 1 and np.size(zp) == 1 and p.get("axis") is None:
            self.line(f"dequantize_tensor({xe}.reshape(-1), "
                      f"{_lit_f32(np.asarray(scale).reshape(-1)[0])}, "
                      f"{_i(np.asarray(zp).reshape(-1)[0])}, {out}.reshape(-1))")
            return
        s, z = scale_zero_point(scale, zp, len(xs), p.get("axis"))
        fs = self.weight(np.broadcast_to(np.asarray(s, np.float32), xs).reshape(-1))
        fz = self.weight(np.broadcast_to(np.asarray(z, np.int64), xs).reshape(-1))
        self.line(f"dequantize_elements({xe}.reshape(-1), {fs}, {fz}, {out}.reshape(-1))")

    # -- linear ----------------------------------------------------------------------------
    def _op_Requantize(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        if not self.is_dynamic(x):
            raise Unsupported("constant input")
        xe = self._int_input(x)
        dt, m0, sh, zp, lo, hi = self._scalar_requant(p)
        out = self.out(node, dt, self.shape(x))
        self.line(f"requantize_loop({xe}.reshape(-1), {_i(p.get('in_zp', 0))}, {m0}, {sh}, "
                  f"{zp}, {lo}, {hi}, {out}.reshape(-1))")

    def _op_QFullyConnected(self, node: Node, p: dict) -> None:
        from sdk.kernels.checks import channel_vector
        from sdk.kernels.fast.gemm import fits_int16, padded_depth

        x, w_name = node.inputs[0], node.inputs[1]
        if w_name in self.names or w_name not in self.const or not self.is_dynamic(x):
            raise Unsupported("dynamic weights")
        w = np.ascontiguousarray(self.const[w_name])
        if w.ndim != 2 or w.dtype.name not in _INTS:
            raise Unsupported("weights are not a 2-D integer matrix")
        n, k = w.shape
        xs = self.shape(x)
        if xs[-1] != k:
            raise Unsupported(f"input depth {xs[-1]} is not the weights' {k}")
        xe = self._int_input(x)
        rows = int(np.prod(xs[:-1], dtype=np.int64))
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        bias = (channel_vector(self.const[bias_name], n, "bias", np.int64) if bias_name
                else np.zeros(n, np.int64))
        if bias_name and bias_name not in self.const:
            raise Unsupported("dynamic bias")
        dt, m0, sh, zp, lo, hi = self._requant(p, n)
        x_zp = int(p.get("x_zp", 0))
        out = self.out(node, dt, xs[:-1] + (n,))
        b = self.weight(bias)
        x2 = f"{xe}.reshape(({rows}, {k}))"
        o2 = f"{out}.reshape(({rows}, {n}))"
        from sdk.kernels.fast import armdot, vnni

        mt = self._gemm_mt(rows, n, k)
        if (vnni.HAS_VNNI and rows * n * k >= _GEMM_MACS and self.dtype(x) == "int8"
                and w.dtype == np.int8 and -(2**20) <= x_zp <= 2**20):
            # u8×s8 dot products (vpdpbusd): x + 128 as uint8, corrected by (128 + x_zp)·Σw
            kp = vnni.padded_depth(k)
            wq = self.weight(vnni.pack_s8(w, kp))
            wsum = self.weight(w.astype(np.int64).sum(axis=1))
            acc = self._fresh("acc")
            self.line(f"{acc} = np.empty(({rows}, {n}), np.int32)")
            self.line(f"gemm_u8s8{mt}(pack_u8({x2}, {kp}), {wq}, {acc})")
            self.line(f"requant_u8s8({acc}, {wsum}, {_i(128 + x_zp)}, {b}, {m0}, {sh}, {zp}, "
                      f"{lo}, {hi}, {o2})")
            return
        if (armdot.HAS_SDOT and rows * n * k >= _GEMM_MACS and self.dtype(x) == "int8"
                and w.dtype == np.int8 and -(2**20) <= x_zp <= 2**20):
            # s8×s8 dot products (ARMv8.2 sdot): x as is, corrected by x_zp·Σw
            kp = armdot.padded_depth(k)
            wq = self.weight(armdot.pack_weights(w, kp))
            wsum = self.weight(w.astype(np.int64).sum(axis=1))
            acc = self._fresh("acc")
            self.imports[f"from sdk.kernels.fast.armdot import gemm_s8s8{mt}, pack_s8"] = None
            self.line(f"{acc} = np.empty(({rows}, {n}), np.int32)")
            self.line(f"gemm_s8s8{mt}(pack_s8({x2}, 0, {kp}), {wq}, {acc})")
            self.line(f"requant_u8s8({acc}, {wsum}, {_i(x_zp)}, {b}, {m0}, {sh}, {zp}, "
                      f"{lo}, {hi}, {o2})")
            return
        if (rows >= _GEMM_ROWS and rows * n * k >= _GEMM_MACS and self.dtype(x) in _NARROW
                and -32512 <= x_zp <= 32512 and fits_int16(w, 0)):
            kp = padded_depth(k)
            wp = self.weight(_pack_weights(w, kp))
            acc = self._fresh("acc")
            self.line(f"{acc} = np.empty(({rows}, {n}), np.int32)")
            self.line(f"gemm_nt{mt}(pack_rows({x2}, {_i(x_zp)}, {kp}), {wp}, {acc})")
            self.line(f"requant_cols({acc}, {b}, {m0}, {sh}, {zp}, {lo}, {hi}, {o2})")
            return
        we = self.weight(w)
        wsum = self.weight(w.astype(np.int64).sum(axis=1))
        self.line(f"fc_small({x2}, {we}, {wsum}, {b}, {_i(x_zp)}, {m0}, {sh}, {zp}, {lo}, "
                  f"{hi}, {o2})")

    def _gemm_mt(self, m: int, n: int, k: int) -> str:
        """``"_parallel"`` (the GEMM kernel on ``numba.get_num_threads()`` threads) for a GEMM
        of at least ``thread_macs()`` M·N·K, else ``""`` (one thread)."""
        from sdk.kernels.fast.gemm import threads_pay

        if not threads_pay(m, n, k):
            return ""
        self.imports["from sdk.kernels.fast.gemm import gemm_nt_parallel"] = None
        self.imports["from sdk.kernels.fast.vnni import gemm_u8s8_parallel"] = None
        # a cached caller of a parallel kernel needs Numba's thread pool up before it loads
        self.imports["import numba"] = None
        self.imports["numba.get_num_threads()  # starts the thread pool"] = None
        return "_parallel"

    def _op_QMatMul(self, node: Node, p: dict) -> None:
        from sdk.kernels.fast.gemm import padded_depth

        a, b = node.inputs[0], node.inputs[1]
        a_s, b_s = self.shape(a), self.shape(b)
        if len(a_s) < 2 or len(b_s) < 2 or a_s[-1] != b_s[-2]:
            raise Unsupported("operand shapes")
        m, k = a_s[-2:]
        n = b_s[-1]
        batch_a, batch_b = a_s[:-2], b_s[:-2]
        nb_a = int(np.prod(batch_a, dtype=np.int64))
        nb_b = int(np.prod(batch_b, dtype=np.int64))
        if not (batch_a == batch_b or nb_b == 1):
            raise Unsupported("broadcast batch dimensions")
        bsrc, b_t, bmap = self._matmul_operand(b)
        if bmap is not None and nb_b != nb_a:
            bsrc, b_t, bmap = b, False, None  # written out (arg) and read as it is
        ae, be = self._int_input(a), self._int_input(bsrc)
        dt, m0, sh, zp, lo, hi = self._requant(p, n)
        za, zb = int(p.get("a_zp", 0)), int(p.get("b_zp", 0))
        out = self.out(node, dt, batch_a + (m, n))
        zeros = self.weight(np.zeros(n, np.int64))
        def fits16(name: str, z: int) -> bool:  # every (v − z) fits int16: the packed GEMM
            return ((self.dtype(name) in _NARROW and -32512 <= z <= 32512)  # is exact
                    or (self.dtype(name) == "int16" and z == 0))

        packed = m >= _GEMM_ROWS and fits16(a, za) and fits16(b, zb)
        kp = padded_depth(k)
        a3 = f"{ae}.reshape(({nb_a}, {m}, {k}))"
        nb_src = int(np.prod(self.shape(bsrc)[:-2], dtype=np.int64))
        b3 = f"{be}.reshape(({nb_src}, {n}, {k}))" if b_t else \
            f"{be}.reshape(({nb_src}, {k}, {n}))"
        o3 = f"{out}.reshape(({nb_a}, {m}, {n}))"
        acc = self._fresh("acc")
        bi = self._fresh("bi")
        self.line(f"{acc} = np.empty(({m}, {n}), np.int32)")
        if bmap is not None:
            bsel = f"{b3}[{self.weight(bmap)}[{bi}]]"
        else:
            bsel = f"{b3}[{bi}]" if nb_b > 1 else f"{b3}[0]"
        self.line(f"for {bi} in range({nb_a}):")
        if b_t:  # Bᵀ rows in place: the transposed copy is not made
            if packed:
                self.line(f"    gemm_nt{self._gemm_mt(m, n, k)}(pack_rows({a3}[{bi}], "
                          f"{_i(za)}, {kp}), pack_rows({bsel}, {_i(zb)}, {kp}), {acc})")
            else:
                self.line(f"    gemm_rows_nt({a3}[{bi}], {bsel}, {_i(za)}, {_i(zb)}, {acc})")
        elif packed:
            self.line(f"    gemm_nt{self._gemm_mt(m, n, k)}(pack_rows({a3}[{bi}], {_i(za)}, "
                      f"{kp}), pack_cols({bsel}, {_i(zb)}, {kp}), {acc})")
        else:
            self.line(f"    gemm_rows({a3}[{bi}], {bsel}, {_i(za)}, {_i(zb)}, {acc})")
        self.line(f"    requant_cols({acc}, {zeros}, {m0}, {sh}, {zp}, {lo}, {hi}, {o3}[{bi}])")

    # -- convolution -----------------------------------------------------------------------
    def _conv_core(self, node: Node, p: dict, xs: tuple[int, ...], xe: str, w: np.ndarray,
                   group: int, strides: Any, pads: Any, dilations: Any, depthwise: bool,
                   out_shape: tuple[int, ...] | None = None) -> None:
        from sdk.kernels.checks import channel_vector
        from sdk.kernels.conv import conv_geometry
        from sdk.kernels.fast.gemm import fits_int16, padded_depth

        g = conv_geometry(xs, w.shape, strides, pads, dilations, group)
        if g.oh <= 0 or g.ow <= 0:
            raise Unsupported("empty output")
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        if bias_name and bias_name not in self.const:
            raise Unsupported("dynamic bias")
        bias = (channel_vector(self.const[bias_name], g.o, "bias", np.int64) if bias_name
                else np.zeros(g.o, np.int64))
        dt, m0, sh, zp, lo, hi = self._requant(p, g.o)
        x_zp = int(p.get("x_zp", 0))
        shape4 = (g.n, g.o, g.oh, g.ow)
        out = self.out(node, dt, out_shape or shape4)
        o4 = f"{out}.reshape({_tup(shape4)})"
        (sh_, sw), (dh, dw), (pt, pl) = g.strides, g.dilations, g.pads[:2]
        b = self.weight(bias)
        pix = g.oh * g.ow
        acc = self._fresh("acc")
        nb = self._fresh("nb")
        if depthwise:
            we = self.weight(w)
            self.line(f"{acc} = np.empty(({g.o}, {g.oh}, {g.ow}), np.int32)")
            self.line(f"for {nb} in range({g.n}):")
            self.line(f"    depthwise_loop({xe}[{nb}], {we}, {_i(x_zp)}, {sh_}, {sw}, {pt}, "
                      f"{pl}, {dh}, {dw}, {acc})")
            self.line(f"    requant_rows({acc}.reshape(({g.o}, {pix})), {b}, {m0}, {sh}, {zp}, "
                      f"{lo}, {hi}, {o4}[{nb}].reshape(({g.o}, {pix})))")
            return
        if self.dtype(node.inputs[0]) not in _NARROW or not -32512 <= x_zp <= 32512 \
                or not fits_int16(w, 0):
            raise Unsupported("wide operands (the direct loop is data-dependent)")
        cg, og = g.c // g.group, g.o // g.group
        depth = cg * g.kh * g.kw
        kp = padded_depth(depth)
        packs = [self.weight(_pack_weights(np.ascontiguousarray(
            w[k * og:(k + 1) * og].transpose(0, 2, 3, 1)).reshape(og, depth), kp))
            for k in range(g.group)]
        xh, cols = self._fresh("xh"), self._fresh("cols")
        pointwise = (g.kh, g.kw, sh_, sw) == (1, 1, 1, 1) and not any(g.pads)
        # a 1×1 stride-1 unpadded conv: the channel-last image, padded to kp channels, is the
        # im2col matrix itself. Otherwise the image goes into a zero-bordered buffer large
        # enough for every tap, so im2col copies runs with no bounds checks
        pb = max(0, (g.oh - 1) * sh_ + (g.kh - 1) * dh - pt + 1 - g.h)
        pr = max(0, (g.ow - 1) * sw + (g.kw - 1) * dw - pl + 1 - g.w)
        if pointwise:
            self.line(f"{cols} = np.zeros(({g.h}, {g.w}, {kp}), np.int16)")
        else:
            self.line(f"{xh} = np.zeros(({g.h + pt + pb}, {g.w + pl + pr}, {cg}), np.int16)")
            self.line(f"{cols} = np.zeros(({pix}, {kp}), np.int16)")
        self.line(f"{acc} = np.empty(({g.o}, {pix}), np.int32)")
        self.line(f"for {nb} in range({g.n}):")
        for k in range(g.group):
            if pointwise:
                self.line(f"    to_hwc_at({xe}[{nb}], {_i(x_zp)}, {k * cg}, {cg}, 0, 0, {cols})")
            else:
                self.line(f"    to_hwc_at({xe}[{nb}], {_i(x_zp)}, {k * cg}, {cg}, {pt}, {pl}, "
                          f"{xh})")
                self.line(f"    im2col_padded({xh}, {g.kh}, {g.kw}, {sh_}, {sw}, {dh}, {dw}, "
                          f"{g.oh}, {g.ow}, {cols})")
            self.line(f"    gemm_nt{self._gemm_mt(og, pix, depth)}({packs[k]}, "
                      f"{cols}.reshape(({pix}, {kp})), {acc}[{k * og}:{(k + 1) * og}])")
        self.line(f"    requant_rows({acc}, {b}, {m0}, {sh}, {zp}, {lo}, {hi}, "
                  f"{o4}[{nb}].reshape(({g.o}, {pix})))")

    def _conv_weights(self, node: Node) -> np.ndarray:
        w_name = node.inputs[1]
        if w_name not in self.const or not self.is_dynamic(node.inputs[0]):
            raise Unsupported("dynamic weights")
        w = np.ascontiguousarray(self.const[w_name])
        if w.dtype.name not in _INTS or w.size == 0:
            raise Unsupported("weights are not integers")
        return w

    def _op_QConv2d(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xs = self.shape(x)
        w = self._conv_weights(node)
        if len(xs) != 4 or w.ndim != 4:
            raise Unsupported("not a 4-D convolution")
        self._conv_core(node, p, xs, self._int_input(x), w, int(p["group"]), p["strides"],
                        p["pads"], p["dilations"], False)

    def _op_QDepthwiseConv2d(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xs = self.shape(x)
        w = self._conv_weights(node)
        if len(xs) != 4 or w.ndim != 4 or w.shape[1] != 1:
            raise Unsupported("not a 4-D depthwise convolution")
        if p.get("group") is not None and int(p["group"]) != xs[1]:
            raise Unsupported("group is not the channel count")
        self._conv_core(node, p, xs, self._int_input(x), w, xs[1], p["strides"], p["pads"],
                        p["dilations"], True)

    def _op_QConv1d(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xs = self.shape(x)
        w = self._conv_weights(node)
        if len(xs) != 3 or w.ndim != 3:
            raise Unsupported("not a 3-D convolution")

        def one(v: Any, what: str) -> int:
            t = (v,) if np.ndim(v) == 0 else tuple(v)
            if len(t) != 1:
                raise Unsupported(f"{what} {v}")
            return int(t[0])

        pads = (p["pads"],) * 2 if np.ndim(p["pads"]) == 0 else tuple(p["pads"])
        if len(pads) != 2:
            raise Unsupported(f"pads {p['pads']}")
        xs4 = (xs[0], xs[1], 1, xs[2])
        xe = f"{self._int_input(x)}.reshape({_tup(xs4)})"
        out_name = node.outputs[0]
        self._conv_core(node, p, xs4, xe, w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]),
                        int(p["group"]), (1, one(p["stride"], "stride")),
                        (0, int(pads[0]), 0, int(pads[1])), (1, one(p["dilation"], "dilation")),
                        False, out_shape=self.shape(out_name))

    # -- element-wise ----------------------------------------------------------------------
    def _binary(self, node: Node, tiles: bool = False
                ) -> tuple[str, str, tuple[int, ...]] | tuple[str, str, tuple[int, ...], int]:
        """Both operands flat over the output's shape. ``tiles``: a fed/produced operand B
        that only repeats a trailing block of the output (e.g. [1, 1, 1, C] against
        [1, H, T, C]) stays as it is and the period (its size) comes fourth, 0 when B is
        not such a tile (or is full size)."""
        shape = self.shape(node.outputs[0])
        if tiles and node.inputs[1] not in self.const:
            b = node.inputs[1]
            bs = self.shape(b)
            pad = (1,) * (len(shape) - len(bs)) + bs
            j = next((i for i, d in enumerate(pad) if d != 1), len(pad))
            if len(bs) <= len(shape) and pad != shape and pad[j:] == shape[j:]:
                fa = self._binary_one(node.inputs[0], shape)
                return fa, f"{self._int_input(b)}.reshape(-1)", shape, \
                    int(np.prod(bs, dtype=np.int64))
        flats = [self._binary_one(name, shape) for name in node.inputs[:2]]
        return (flats[0], flats[1], shape, 0) if tiles else (flats[0], flats[1], shape)

    def _binary_one(self, name: str, shape: tuple[int, ...]) -> str:
        """One operand of an element-wise op, flat over the output's ``shape``."""
        if name in self.const:
            arr = np.asarray(self.const[name])
            if arr.dtype.name not in _INTS:
                raise Unsupported("a non-integer constant operand")
            return self.weight(np.broadcast_to(arr, shape).reshape(-1))
        e = self._int_input(name)
        s = self.shape(name)
        if s == shape:
            return f"{e}.reshape(-1)"
        np.broadcast_shapes(s, shape)
        return f"np.ascontiguousarray(np.broadcast_to({e}, {_tup(shape)})).reshape(-1)"

    def _op_QAdd(self, node: Node, p: dict) -> None:
        from sdk.kernels.checks import check_range, out_dtype

        fa, fb, shape, period = self._binary(node, tiles=True)
        dt = out_dtype(_text(p["dtype"]))
        lo, hi = check_range(p["act_min"], p["act_max"], dt)
        if not 0 <= int(p["left_shift"]) <= 30:
            raise Unsupported("left_shift outside [0, 30]")
        out = self.out(node, dt, shape)
        args = ", ".join(_i(p[k]) for k in ("a_zp", "b_zp", "left_shift", "a_m0", "a_shift",
                                            "b_m0", "b_shift", "out_m0", "out_shift", "out_zp"))
        o2 = f"{out}.reshape(-1)"
        if period:  # B repeats over the output: no broadcast copy
            self.line(f"add_tile_loop({fa}.reshape((-1, {period})), {fb}, {args}, {_i(lo)}, "
                      f"{_i(hi)}, {out}.reshape((-1, {period})))")
            return
        self.line(f"add_loop({fa}, {fb}, {args}, {_i(lo)}, {_i(hi)}, {o2})")

    def _op_QMul(self, node: Node, p: dict) -> None:
        fa, fb, shape, period = self._binary(node, tiles=True)
        dt, m0, sh, zp, lo, hi = self._scalar_requant(p)
        out = self.out(node, dt, shape)
        if period:  # B repeats over the output: no broadcast copy
            self.line(f"mul_tile_loop({fa}.reshape((-1, {period})), {fb}, {_i(p['a_zp'])}, "
                      f"{_i(p['b_zp'])}, {m0}, {sh}, {zp}, {lo}, {hi}, "
                      f"{out}.reshape((-1, {period})))")
            return
        self.line(f"mul_loop({fa}, {fb}, {_i(p['a_zp'])}, {_i(p['b_zp'])}, {m0}, {sh}, {zp}, "
                  f"{lo}, {hi}, {out}.reshape(-1))")

    def _op_QClamp(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xe = self._int_input(x)
        dt = self.dtype(x)
        lo_a, hi_a = int(p["min"]), int(p["max"])
        if lo_a > hi_a:
            raise Unsupported("min above max")
        info = np.iinfo(dt)
        lo, hi = max(lo_a, info.min), min(hi_a, info.max)
        out = self.out(node, dt, self.shape(x))
        self.line(f"clamp_loop({xe}.reshape(-1), np.{dt}({lo}), np.{dt}({hi}), "
                  f"{out}.reshape(-1))")

    def _op_QLut(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        tname = node.inputs[1] if len(node.inputs) > 1 else ""
        table = self.const.get(tname) if tname else p.get("table")
        if table is None:
            raise Unsupported("a dynamic table")
        table = np.asarray(table)
        if self.dtype(x) != "int8" or table.shape != (256,) or table.dtype != np.int8:
            raise Unsupported("QLut takes int8 through an int8 [256] table")
        xe = self.arg(x)
        out = self.out(node, np.int8, self.shape(x))
        self.line(f"lut_loop({xe}.reshape(-1), {self.weight(table)}, {out}.reshape(-1))")

    # -- pooling ---------------------------------------------------------------------------
    def _op_QMaxPool2d(self, node: Node, p: dict) -> None:
        from sdk.kernels.pooling import pool_geometry

        x = node.inputs[0]
        xs = self.shape(x)
        xe = self._int_input(x)
        k, st, pd, dl, o = pool_geometry(xs, p["kernel"], p["strides"], p["pads"],
                                         p["dilations"])
        dt = self.dtype(x)
        out = self.out(node, dt, xs[:2] + tuple(o))
        self.line(f"max_pool_loop({xe}, {k[0]}, {k[1]}, {st[0]}, {st[1]}, {pd[0]}, {pd[1]}, "
                  f"{dl[0]}, {dl[1]}, np.{dt}({np.iinfo(dt).min}), {out})")

    def _op_QAvgPool2d(self, node: Node, p: dict) -> None:
        from sdk.kernels.pooling import pool_geometry

        x = node.inputs[0]
        xs = self.shape(x)
        xe = self._int_input(x)
        k, st, pd, _, o = pool_geometry(xs, p["kernel"], p["strides"], p["pads"], (1, 1))
        dt = self.dtype(x)
        info = np.iinfo(dt)
        out = self.out(node, dt, xs[:2] + tuple(o))
        self.line(f"avg_pool_loop({xe}, {k[0]}, {k[1]}, {st[0]}, {st[1]}, {pd[0]}, {pd[1]}, "
                  f"{bool(p['count_include_pad'])}, {_i(p['x_zp'])}, {_i(info.min)}, "
                  f"{_i(info.max)}, {out})")

    def _op_QGlobalAvgPool(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xs = self.shape(x)
        if len(xs) < 3:
            raise Unsupported("needs [N, C, spatial...]")
        xe = self._int_input(x)
        n, c = xs[:2]
        pix = int(np.prod(xs[2:]))
        dt, m0, sh, zp, lo, hi = self._requant(p, c)
        out = self.out(node, dt, (n, c) + (1,) * (len(xs) - 2))
        self.line(f"global_avg_pool_loop({xe}.reshape(({n}, {c}, {pix})), {_i(p['x_zp'])}, "
                  f"{m0}, {sh}, {zp}, {lo}, {hi}, {out}.reshape(({n}, {c})))")

    # -- integer transformer ops (rows along the last axis) -----------------------------------
    def _rows(self, node: Node, axis: int) -> tuple[str, tuple[int, ...], int, int]:
        x = node.inputs[0]
        xs = self.shape(x)
        if axis % len(xs) != len(xs) - 1:
            raise Unsupported("only the last axis is compiled")
        xe = self._int_input(x)
        c = xs[-1]
        return xe, xs, int(np.prod(xs[:-1], dtype=np.int64)), c

    def _op_Shiftmax(self, node: Node, p: dict) -> None:
        from sdk.kernels.transformer import check_shift_exp, shiftmax_dtype

        check_shift_exp(p["x0"], p["n"])
        xe, xs, rows, c = self._rows(node, p["axis"])
        dt = shiftmax_dtype(int(p["out_bits"]))
        out = self.out(node, dt, xs)
        self.line(f"shiftmax_loop({xe}.reshape(({rows}, {c})), {_i(p['x0'])}, {_i(p['n'])}, "
                  f"{_i(32 - int(p['out_bits']))}, {out}.reshape(({rows}, {c})))")

    def _op_ShiftGELU(self, node: Node, p: dict) -> None:
        from sdk.kernels.transformer import check_shift_exp

        check_shift_exp(p["x0"], p["n"])
        if not 2 <= int(p["sig_bits"]) <= 16 or p["clip_min"] > p["clip_max"]:
            raise Unsupported("sig_bits or clip range")
        xe, xs, rows, c = self._rows(node, p["axis"])
        dt, m0, sh, zp, lo, hi = self._scalar_requant(p)
        out = self.out(node, dt, xs)
        args = ", ".join(_i(v) for v in (p["x0"], p["n"], 32 - int(p["sig_bits"]),
                                         p["clip_min"], p["clip_max"], p["x_zp"]))
        self.line(f"gelu_loop({xe}.reshape(({rows}, {c})), {args}, {m0}, {sh}, {zp}, {lo}, "
                  f"{hi}, {out}.reshape(({rows}, {c})))")

    def _norm(self, node: Node, p: dict, centre: bool) -> None:
        from sdk.kernels.checks import channel_vector

        if int(p["iters"]) < 1:
            raise Unsupported("iters < 1")
        xe, xs, rows, c = self._rows(node, p["axis"])
        bname = node.inputs[1] if len(node.inputs) > 1 else ""
        if bname and bname not in self.const:
            raise Unsupported("dynamic beta")
        beta = self.const[bname] if bname else p.get("beta_q")
        beta = (np.zeros(c, np.int64) if beta is None
                else channel_vector(beta, c, "beta_q", np.int64))
        dt, m0, sh, zp, lo, hi = self._requant(p, c)
        out = self.out(node, dt, xs)
        self.line(f"norm_loop({xe}.reshape(({rows}, {c})), {self.weight(beta)}, {centre}, "
                  f"{_i(p['iters'])}, {m0}, {sh}, {zp}, {lo}, {hi}, "
                  f"{out}.reshape(({rows}, {c})))")

    def _op_ILayerNorm(self, node: Node, p: dict) -> None:
        self._norm(node, p, True)

    def _op_IRMSNorm(self, node: Node, p: dict) -> None:
        self._norm(node, p, False)

    # -- layout ----------------------------------------------------------------------------
    def _view(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xe = self.arg(x)
        name = node.outputs[0]
        if len([o for o in node.outputs if o]) != 1:
            raise Unsupported("only single-output nodes are compiled")
        shape = self.shape(name)
        if int(np.prod(shape)) != int(np.prod(self.shape(x))):
            raise Unsupported("sizes differ")
        if self.graph.tensor(name).dtype != self.dtype(x):
            raise Unsupported("a view that changes the dtype")
        if name in self.reads:
            out = self.out(node, self.dtype(x), shape)
            self.line(f"copy_into({xe}.reshape({_tup(shape)}), {out})")
            return
        var = self._fresh("v")
        self.names[name] = var
        self.line(f"{var} = {xe}.reshape({_tup(shape)})")
        self.view_of[name] = x

    _op_Reshape = _op_Flatten = _op_Squeeze = _op_Unsqueeze = _op_Identity = _view

    def _op_Transpose(self, node: Node, p: dict) -> None:
        x = node.inputs[0]
        xs = self.shape(x)
        perm = p.get("perm")
        perm = tuple(range(len(xs)))[::-1] if perm is None else tuple(
            int(v) for v in np.ravel(perm))
        if sorted(perm) != list(range(len(xs))):
            raise Unsupported(f"perm {perm}")
        moved = [i for i in perm if xs[i] != 1]
        if moved == sorted(moved):  # only size-1 axes move: the same bytes, a free reshape
            self._view(node, p)
            return

        def emit() -> None:
            xe = self.arg(x)
            out = self.out(node, self.dtype(x), tuple(xs[i] for i in perm))
            self.line(f"copy_into({xe}.transpose({_tup(perm)}), {out})")

        r = len(xs)
        if r >= 2 and perm == tuple(range(r - 2)) + (r - 1, r - 2) and \
                node.outputs[0] not in self.reads:
            self._defer(node.outputs[0], ("transpose", x), emit)
        else:
            emit()

    def _defer(self, name: str, how: tuple, emit: Any) -> None:
        """Leave ``name`` unwritten (see ``self.lazy``); its source stays live as long as it
        is used (a view's rule in the arena plan)."""
        self.lazy[name] = how
        self._lazy_emit[name] = emit
        self.view_of[name] = how[1]

    def _matmul_operand(self, name: str) -> tuple[str, bool, np.ndarray | None]:
        """(tensor to read, read transposed, batch index map or None) for a QMatMul operand
        that is a deferred Transpose of the last two axes and/or Concat of one tensor along a
        batch axis (attention's Kᵀ and grouped-query heads); ``(name, False, None)`` else."""
        src, transposed, bmap = name, False, None
        while src in self._lazy_emit:
            how = self.lazy[src]
            if how[0] == "transpose" and not transposed:
                transposed, src = True, how[1]
            elif how[0] == "tile" and bmap is None:
                shape, inner = self.shape(src), self.shape(how[1])
                axis = how[2]
                if axis >= len(shape) - 2:
                    break
                batch = shape[:-2]
                idx = list(np.unravel_index(np.arange(int(np.prod(batch, dtype=np.int64))),
                                            batch))
                idx[axis] = idx[axis] % inner[axis]
                bmap = np.ravel_multi_index(tuple(idx), inner[:-2]).astype(np.int64)
                src = how[1]
            else:
                break
        return src, transposed, bmap

    def _op_Concat(self, node: Node, p: dict) -> None:
        ins = [i for i in node.inputs if i]
        shapes = [self.shape(i) for i in ins]
        dts = {self.dtype(i) for i in ins}
        if len(dts) != 1:
            raise Unsupported("inputs of different dtypes")
        rank = len(shapes[0])
        ax = int(p["axis"]) % rank
        total = sum(s[ax] for s in shapes)
        oshape = shapes[0][:ax] + (total,) + shapes[0][ax + 1:]
        for s_ in shapes:
            if s_[:ax] != oshape[:ax] or s_[ax + 1:] != oshape[ax + 1:]:
                raise Unsupported("shapes differ outside the axis")
        dt = dts.pop()

        def emit() -> None:
            exprs = [self.arg(i) for i in ins]
            out = self.out(node, dt, oshape)
            start = 0
            for e, s in zip(exprs, shapes):
                index = ", ".join([":"] * ax + [f"{start}:{start + s[ax]}"])
                self.line(f"copy_into({e}, {out}[{index}])")
                start += s[ax]

        if len(ins) > 1 and len(set(ins)) == 1 and node.outputs[0] not in self.reads:
            self._defer(node.outputs[0], ("tile", ins[0], ax), emit)  # e.g. GQA's K/V heads
        else:
            emit()

    def _op_Slice(self, node: Node, p: dict) -> None:
        ins = node.inputs
        if any(i and i not in self.const for i in ins[1:]):
            raise Unsupported("dynamic bounds")
        x = ins[0]
        xs = self.shape(x)
        starts = np.asarray(self.const[ins[1]], np.int64).ravel()
        ends = np.asarray(self.const[ins[2]], np.int64).ravel()
        axes = (np.asarray(self.const[ins[3]], np.int64).ravel() if len(ins) > 3 and ins[3]
                else np.arange(len(starts)))
        steps = (np.asarray(self.const[ins[4]], np.int64).ravel() if len(ins) > 4 and ins[4]
                 else np.ones(len(starts), np.int64))
        if np.any(steps <= 0):
            raise Unsupported("non-positive steps")
        index = [slice(None)] * len(xs)
        for s, e, ax, st in zip(starts, ends, axes, steps):
            lo, hi, _ = slice(int(s), int(e), int(st)).indices(xs[int(ax) % len(xs)])
            index[int(ax) % len(xs)] = slice(lo, max(hi, lo), int(st))
        probe = np.empty(xs, np.int8)[tuple(index)]
        xe = self.arg(x)
        out = self.out(node, self.dtype(x), tuple(probe.shape))
        text = ", ".join(f"{sl.start}:{sl.stop}:{sl.step}" for sl in index)
        self.line(f"copy_into({xe}[{text}], {out})")

    def _op_Gather(self, node: Node, p: dict) -> None:
        x, ind = node.inputs[0], node.inputs[1]
        xs = self.shape(x)
        ax = int(p.get("axis", 0)) % len(xs)
        n = xs[ax]
        outer = int(np.prod(xs[:ax], dtype=np.int64))
        inner = int(np.prod(xs[ax + 1:], dtype=np.int64))
        dt = self.dtype(x)
        if ind in self.const:
            idx = np.asarray(self.const[ind]).astype(np.int64)
            flat = np.where(idx < 0, idx + n, idx).reshape(-1)
            if flat.size and (flat.min() < 0 or flat.max() >= n):
                raise Unsupported("a constant index out of range (the interpreter reports it)")
            ishape = idx.shape
        else:
            if self.dtype(ind) not in _INTS:
                raise Unsupported(f"indices of dtype {self.dtype(ind)}")
            ishape = self.shape(ind)
            flat = None
        size = int(np.prod(ishape, dtype=np.int64))
        xe = self.arg(x)
        out = self.out(node, dt, xs[:ax] + tuple(ishape) + xs[ax + 1:])
        x3 = f"{xe}.reshape(({outer}, {n}, {inner}))"
        o3 = f"{out}.reshape(({outer}, {size}, {inner}))"
        if flat is not None and flat.size <= 4:  # a few fixed rows (q/k/v of a stacked tensor)
            for j, k in enumerate(flat):
                self.line(f"copy_into({x3}[:, {int(k)}], {o3}[:, {j}])")
            return
        ie = self.weight(flat) if flat is not None else f"{self.arg(ind)}.reshape(-1)"
        self.line(f"gather_rows({x3}, {ie}, {o3})")

    def _op_Pad(self, node: Node, p: dict) -> None:
        ins = node.inputs
        if _text(p.get("mode", "constant")) != "constant":
            raise Unsupported("only constant padding")
        x = ins[0]
        xs = self.shape(x)
        if len(ins) < 2 or ins[1] not in self.const or any(i and i not in self.const
                                                            for i in ins[2:]):
            raise Unsupported("dynamic pads")
        pads = [int(v) for v in np.asarray(self.const[ins[1]]).ravel()]
        value = self.const[ins[2]] if len(ins) > 2 and ins[2] else p.get("value")
        axes = (np.asarray(self.const[ins[3]]).ravel() if len(ins) > 3 and ins[3]
                else range(len(xs)))
        axes = [int(a) % len(xs) for a in axes]
        if min(pads, default=0) < 0 or len(pads) != 2 * len(axes):
            raise Unsupported("negative pads")
        begin, end = [0] * len(xs), [0] * len(xs)
        for i, a in enumerate(axes):
            begin[a], end[a] = pads[i], pads[i + len(axes)]
        dt = self.dtype(x)
        fill = np.asarray(0 if value is None else value).astype(dt).reshape(-1)[0]
        oshape = tuple(d + b + e for d, b, e in zip(xs, begin, end))
        xe = self.arg(x)
        out = self.out(node, dt, oshape)
        inner = ", ".join(f"{b}:{b + d}" for b, d in zip(begin, xs))
        self.line(f"{out}.fill(np.{dt}({fill!r}))")
        self.line(f"copy_into({xe}, {out}[{inner}])")

    def _op_ResizeNearest(self, node: Node, p: dict) -> None:
        from sdk.kernels.resize import nearest_indices

        x = node.inputs[0]
        xs = self.shape(x)
        sizes = p.get("sizes")
        if sizes is None:
            scales = p.get("scales")
            if scales is None:
                raise Unsupported("no sizes")
            sizes = [int(np.floor(d * float(s))) for d, s in zip(xs, np.ravel(scales))]
        sizes = tuple(int(s) for s in np.ravel(sizes))
        if len(sizes) != len(xs) or len(xs) > 4 or any(s <= 0 for s in sizes):
            raise Unsupported("sizes")
        pad = 4 - len(xs)
        xs4, s4 = (1,) * pad + xs, (1,) * pad + sizes
        idx = [self.weight(nearest_indices(a, b)) for a, b in zip(xs4, s4)]
        xe = self.arg(x)
        out = self.out(node, self.dtype(x), sizes)
        self.line(f"nearest_4d({xe}.reshape({_tup(xs4)}), {', '.join(idx)}, "
                  f"{out}.reshape({_tup(s4)}))")

    def _op_ResizeBilinear(self, node: Node, p: dict) -> None:
        from sdk.kernels.resize import bilinear_taps

        x = node.inputs[0]
        xs = self.shape(x)
        sz = tuple(int(s) for s in np.ravel(p["sizes"]))
        b = int(p["frac_bits"])
        dt = self.dtype(x)
        if (len(xs) < 2 or len(sz) != len(xs) or sz[:-2] != xs[:-2] or dt not in _INTS
                or min(sz[-2:]) <= 0 or not 1 <= b <= 15):
            raise Unsupported("sizes, dtype or frac_bits outside the compiled form")
        mode = _text(p["coord_mode"])
        taps = [self.weight(t) for t in bilinear_taps(xs[-2], sz[-2], mode, b)
                + bilinear_taps(xs[-1], sz[-1], mode, b)]
        outer = int(np.prod(xs[:-2], dtype=np.int64))
        xe = self.arg(x)
        info = np.iinfo(dt)
        out = self.out(node, dt, sz)
        self.line(f"bilinear_loop({xe}.reshape(({outer}, {xs[-2]}, {xs[-1]})), "
                  f"{', '.join(taps)}, {_i(b)}, {_i(p['zero_point'])}, {_i(info.min)}, "
                  f"{_i(info.max)}, {out}.reshape(({outer}, {sz[-2]}, {sz[-1]})))")

    # -- state ops -------------------------------------------------------------------------
    def _position(self, name: str) -> str:
        if name in self.const:
            return _i(np.asarray(self.const[name]).reshape(-1)[0])
        if name not in self.fed:
            raise Unsupported("a position that is not fed")
        self.scalars.add(name)
        return self.names[name]

    def _op_KVCacheWrite(self, node: Node, p: dict) -> None:
        cache, new, pos = node.inputs[0], node.inputs[1], node.inputs[2]
        cs, ns = self.shape(cache), self.shape(new)
        ax = int(p.get("axis", 2)) % len(cs)
        if len(ns) != len(cs) or cs[:ax] != ns[:ax] or cs[ax + 1:] != ns[ax + 1:] or \
                self.dtype(cache) != self.dtype(new):
            raise Unsupported("cache and new rows differ")
        outer = int(np.prod(cs[:ax], dtype=np.int64))
        inner = int(np.prod(cs[ax + 1:], dtype=np.int64))
        ce, ne = self.arg(cache), self.arg(new)
        pe = self._position(pos)
        out = self.out(node, self.dtype(cache), cs)
        self.line(f"kv_write({ce}.reshape(({outer}, {cs[ax]}, {inner})), "
                  f"{ne}.reshape(({outer}, {ns[ax]}, {inner})), {pe}, "
                  f"{out}.reshape(({outer}, {cs[ax]}, {inner})))")

    def _op_CausalMask(self, node: Node, p: dict) -> None:
        s, pos = node.inputs[0], node.inputs[1]
        ss = self.shape(s)
        if len(ss) < 2:
            raise Unsupported("scores need [..., T, C]")
        dt = self.dtype(s)
        se = self._int_input(s)
        fill = p.get("fill")
        info = np.iinfo(dt)
        fill = info.min if fill is None else int(fill)
        if not info.min <= fill <= info.max:
            raise Unsupported("fill outside the dtype")
        pe = self._position(pos)
        t, c = ss[-2:]
        out = self.out(node, dt, ss)
        self.line(f"causal_fill({se}.reshape((-1, {t}, {c})), {pe}, np.{dt}({fill}), "
                  f"{out}.reshape((-1, {t}, {c})))")

    # -- arena and source ------------------------------------------------------------------
    def _root(self, name: str) -> str:
        while name in self.view_of:
            name = self.view_of[name]
        return name

    def _plan_arena(self) -> None:
        lr = live_ranges(self.nodes)
        span: dict[str, list[int]] = {}
        for name in list(self.arena) + list(self.view_of):
            root = self._root(name)
            if root not in self.arena:
                continue
            first, last = lr.first.get(name, 0), lr.last.get(name, 0)
            s = span.setdefault(root, [first, last])
            s[0], s[1] = min(s[0], first), max(s[1], last)
        placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
        self.arena_bytes = 0
        order = sorted(self.arena, key=lambda n: -np.dtype(self.arena[n][0]).itemsize
                       * int(np.prod(self.arena[n][1])))
        offsets: dict[str, int] = {}
        for name in order:
            dt, shape = self.arena[name]
            size = np.dtype(dt).itemsize * int(np.prod(shape))
            first, last = span.get(name, [0, len(self.nodes)])
            clash = sorted((o, e) for o, e, f, la in placed if not (la < first or f > last))
            off = 0
            for o, e in clash:
                if off + size <= o:
                    break
                off = max(off, (e + _ALIGN - 1) // _ALIGN * _ALIGN)
            placed.append((off, off + size, first, last))
            offsets[name] = off
            self.arena_bytes = max(self.arena_bytes, off + size)
        for name, off in offsets.items():
            dt, shape = self.arena[name]
            self.prologue.append(f"{self.names[name]} = view_at(A, {off}, {_tup(shape)}, np.{dt})")

    def _stages(self) -> tuple[list[str], list[str]]:
        """(stage functions' source, the program's body) for a program over
        :data:`STAGE_LINES` lines: the nodes' lines cut at node boundaries into stages of about
        that many lines, each its own ``@njit`` function taking the fed inputs and results it
        touches plus ``W`` and ``A`` and re-deriving the weight, arena and view names it uses
        (views are free). Numba's and LLVM's per-function passes grow faster than linearly
        with a function's size; stages keep every function small, and the program calls them
        (``noinline``, see :func:`_keep_calls`)."""
        ident = re.compile(r"\b(?:w|t|v|in)\d+\b")
        results = {self.names[r] for r in self.results}
        order: dict[str, int] = {}
        defs: dict[str, str] = {}
        for k, text in enumerate(self.prologue + self.body):
            head = text.split(" = ", 1)[0]
            if " = " in text and ident.fullmatch(head) and head not in results:
                defs.setdefault(head, text)
                order.setdefault(head, k)
        params_all = {self.names[f] for f in self.fed} | results
        cuts = [0]
        for m in self.marks[1:] + [len(self.body)]:
            if m - cuts[-1] >= STAGE_LINES:
                cuts.append(m)
        if cuts[-1] != len(self.body):
            cuts.append(len(self.body))
        stages, calls = [], []
        for j, (a, b) in enumerate(itertools.pairwise(cuts)):
            body = self.body[a:b]
            own = {t.split(" = ", 1)[0] for t in body if " = " in t}
            need: set[str] = set()
            todo = [n for t in body for n in ident.findall(t)]
            while todo:
                n = todo.pop()
                if n in need or n in own:
                    continue
                need.add(n)
                if n in defs:
                    todo += ident.findall(defs[n].split(" = ", 1)[1])
            params = sorted((n for n in need if n in params_all), key=lambda n: (n[0], n))
            pro = [defs[n] for n in sorted((n for n in need if n in defs and n not in own),
                                           key=order.__getitem__)]
            name = f"stage_{j}"
            args = ", ".join(params + ["W", "A"])
            stages += ["", "", "@njit(cache=True)", f"def {name}({args}):  # pragma: no cover"]
            stages += ["    " + t for t in pro + body]
            calls.append(f"{name}({args})")
        return stages, [t for t in self.prologue if t.split(" = ", 1)[0] in results] + calls

    def source(self) -> str:
        params = ", ".join([self.names[f] for f in self.fed] + ["W", "A"])
        produced = [r for r in self.reads if r in self.results]
        ret = "(" + "".join(f"{self.names[r]}, " for r in produced) + ")"
        stages, body = [], self.prologue + self.body
        if len(self.prologue) + len(self.body) > STAGE_LINES:
            stages, body = self._stages()
        lines = [
            "# generated by sdk.ops.codegen: one compiled program (do not edit)",
            "import numpy as np",
            "from numba import njit",
            "from sdk.kernels.fast.conv import depthwise_loop, im2col_padded, to_hwc_at",
            "from sdk.kernels.fast.elementwise import add_loop, clamp_loop, mul_loop",
            "from sdk.kernels.fast.fused import (add_tile_loop, causal_fill, copy_into,",
            "    dequantize_elements, dequantize_tensor, fc_small, gather_rows, gemm_rows_nt,",
            "    kv_write, mul_tile_loop, nearest_4d,",
            "    quantize_elements, quantize_tensor, view_at)",
            "from sdk.kernels.fast.gemm import gemm_nt, gemm_rows, pack_cols, pack_rows",
            "from sdk.kernels.fast.lut import lut_loop",
            ("from sdk.kernels.fast.pooling import avg_pool_loop, global_avg_pool_loop, "
             "max_pool_loop"),
            "from sdk.kernels.fast.quantize import requantize_loop",
            "from sdk.kernels.fast.resize import bilinear_loop",
            "from sdk.kernels.fast.requant_loops import requant_cols, requant_rows",
            "from sdk.kernels.fast.transformer import gelu_loop, norm_loop, shiftmax_loop",
            "from sdk.kernels.fast.vnni import gemm_u8s8, pack_u8, requant_u8s8",
            *self.imports,
            *stages,
            "",
            "",
            "@njit(cache=True)",
            f"def program({params}):  # pragma: no cover",
        ]
        lines += ["    " + s for s in body]
        lines.append(f"    return {ret}")
        return "\n".join(lines) + "\n"

    def weights(self) -> np.ndarray:
        buf = np.zeros(max(self.woff, 1), np.uint8)
        for start, raw in self.wparts:
            buf[start:start + raw.size] = raw
        return buf


_KERNEL_PREFIX = "_ZN3sdk7kernels"  # Itanium-mangled names of the sdk.kernels Numba loops
_PATCHED = False


def _keep_calls() -> None:
    """Numba links every callee into a function's LLVM module and optimises the result with the
    callees inlined. A program cut into stages (:meth:`_Generator._stages`) would be one huge
    function again; so in a staged program's modules the stages and the ``sdk.kernels`` loops
    stay calls (``noinline`` on the linked definitions; each was optimised in its own module
    already, its machine code is the same, a call costs nanoseconds). Programs small enough
    for one function are left as Numba builds them."""
    global _PATCHED
    if _PATCHED:
        return
    from numba.core import codegen as nb_codegen

    original = nb_codegen.CPUCodeLibrary._optimize_final_module

    def optimize(self: Any) -> None:
        module = self._final_module
        if (self.name == "program" or self.name.startswith("stage_")) and any(
                "edge_program_" in f.name for f in module.functions if not f.is_declaration):
            staged = any("stage_" in f.name for f in module.functions)
            for f in module.functions:
                if f.is_declaration or "alwaysinline" in " ".join(map(str, f.attributes)):
                    continue
                if (("edge_program_" in f.name and "stage_" in f.name
                     and not self.name.startswith("stage_"))
                        or (staged and f.name.startswith(_KERNEL_PREFIX))):
                    f.add_function_attribute("noinline")
        original(self)

    nb_codegen.CPUCodeLibrary._optimize_final_module = optimize
    _PATCHED = True


_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def kernels_fingerprint() -> str:
    """A hash of the kernel sources a generated program calls (``sdk/kernels/fast/*.py``).
    Numba's cache does not notice when a callee changes, so machine code cached by another
    version of the SDK would run stale kernels (or fail on a renamed one): the fingerprint is
    part of every program key."""
    root = Path(__file__).resolve().parents[1] / "kernels" / "fast"
    h = hashlib.sha256()
    for f in sorted(root.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def program_key(source: str) -> str:
    """The cache key of a generated program: its source (the graph's structure, shapes and
    attributes), the kernels it calls, Numba's and Python's versions and the host CPU."""
    import numba

    text = (f"{source}\0{kernels_fingerprint()}\0{numba.__version__}\0{sys.version}"
            f"\0{host_cpu()}")
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def is_cached(key: str, directory: Path | None = None) -> bool:
    """Whether machine code for the program ``key`` is on disk (or loaded in this process)."""
    if key in _LOADED:
        return True
    root = (directory or cache_dir()) / key
    return (root / "program.py").is_file() and any((root / "__pycache__").glob("*.nbi"))


def _load(source: str, key: str, directory: Path | None) -> Any:
    """The ``program`` function of ``source``, written once under the cache directory
    ``key`` and compiled with ``njit(cache=True)`` (loaded, not compiled, when warm)."""
    with _LOCK:
        fn = _LOADED.get(key)
        if fn is not None:
            return fn
        _keep_calls()
        root = (directory or cache_dir()) / key
        path = root / "program.py"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text() != source:
                tmp = root / f"program.py.{os.getpid()}.tmp"
                tmp.write_text(source)
                os.replace(tmp, path)
        except OSError:  # a read-only home: compile in memory each process
            namespace: dict[str, Any] = {}
            code = compile(source.replace("@njit(cache=True)", "@njit"), f"<edge {key}>",
                           "exec")
            exec(code, namespace)  # noqa: S102 - the source we generated
            fn = _LOADED[key] = namespace["program"]
            return fn
        spec = importlib.util.spec_from_file_location(f"edge_program_{key}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # Numba's cache re-imports the module by name
        spec.loader.exec_module(module)
        fn = _LOADED[key] = module.program
        return fn


class CompiledProgram:
    """``graph`` compiled to compute ``reads`` from the ``fed`` tensors (see the module
    docstring); raises :class:`Unsupported` when a node has no compiled form.

    ``run(feeds)`` returns the values of ``reads`` in order, like
    :meth:`sdk.ops.program.Program.run`; it raises :class:`Mismatch` for feeds other than the
    shapes and dtypes compiled for, and any error of the compiled kernels as is (callers re-run
    the interpreter to report it)."""

    def __init__(self, graph: Graph, fed: Sequence[str], reads: Sequence[str],
                 directory: Path | None = None, load: bool = True) -> None:
        gen = _Generator(graph, fed, reads)
        self.graph = graph
        self.fed = list(fed)
        self.reads = list(reads)
        self.source = gen.source()
        self.weights = gen.weights()
        self.arena_bytes = int(gen.arena_bytes)
        self.nodes = len(gen.nodes)
        params = []
        for f in self.fed:
            if f in gen.scalars:
                params.append((f, None, None))
                continue
            t = graph.tensors.get(f)
            if t is None or t.shape is None or any(int(d) <= 0 for d in t.shape):
                raise Unsupported(f"fed tensor {f!r} has no static shape")
            params.append((f, np.dtype(t.dtype), tuple(int(d) for d in t.shape)))
        self._params = params
        produced = [r for r in dict.fromkeys(reads) if r in gen.results]
        self._pick: list[tuple[int, str]] = []
        for r in self.reads:
            if r in gen.results:
                self._pick.append((produced.index(r), r))
            elif r in self.fed:
                self._pick.append((-1, r))
            elif r in gen.const:
                self._pick.append((-2, r))
            else:
                raise Unsupported(f"{r!r} is neither fed, constant nor produced")
        self._const = gen.const
        self.key = program_key(self.source)
        self.directory = directory
        self._fn: Any = None
        self._local = threading.local()
        if load:
            self.load()

    @property
    def cached(self) -> bool:
        """Whether this program's machine code is on disk already (a run needs no JIT)."""
        return is_cached(self.key, self.directory)

    def load(self) -> CompiledProgram:
        """Load the machine code (compiling it into the cache on a cold one) and run the
        program once on zeros, so the first real run pays no JIT."""
        if self._fn is None:
            self._fn = _load(self.source, self.key, self.directory)
            zeros: dict[str, Any] = {}
            for name, dt, shape in self._params:
                zeros[name] = 0 if dt is None else np.zeros(shape, dt)
            try:
                self._fn(*[zeros[n] for n, _, _ in self._params], self.weights, self._arena())
            except Exception:  # noqa: BLE001, S110 - zeros may be refused (a position past
                pass           # the cache); the program is compiled all the same
        return self

    def _arena(self) -> np.ndarray:
        a = getattr(self._local, "arena", None)
        if a is None:
            a = self._local.arena = np.zeros(max(self.arena_bytes, 1), np.uint8)
        return a

    @property
    def param_names(self) -> list[str]:
        """The fed tensors in the order :meth:`call` takes them (a position as an int)."""
        return [name for name, _, _ in self._params]

    def produced_index(self, name: str) -> int:
        """Where read ``name`` is in the tuple :meth:`call` returns (-1: not produced by the
        program, i.e. fed or constant)."""
        return next((k for k, r in self._pick if r == name), -1)

    def call(self, *args: Any) -> tuple:
        """The program on arguments already in :attr:`param_names` order, each exactly the
        shape and dtype compiled for and C-contiguous (no checks: a caller's hot loop, e.g.
        :class:`sdk.runtime.generation.GenerationSession`'s token step, that checked its
        arrays once); returns the produced reads in order. :meth:`run` is the checked call."""
        return self._fn(*args, self.weights, self._arena())

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        args: list[Any] = []
        for name, dt, shape in self._params:
            v = feeds[name]
            if dt is None:
                a = np.asarray(v)
                if a.size != 1 or a.dtype.kind not in "iu":
                    raise Mismatch(name)
                args.append(int(a.reshape(-1)[0]))
                continue
            if v.__class__ is not np.ndarray or v.dtype != dt or v.shape != shape:
                raise Mismatch(name)
            if not v.flags.c_contiguous:
                v = np.ascontiguousarray(v)
            args.append(v)
        res = self._fn(*args, self.weights, self._arena())
        out = []
        for k, r in self._pick:
            out.append(res[k] if k >= 0 else (feeds[r] if k == -1 else self._const[r]))
        return out


class Mismatch(Exception):
    """A feed other than the shape and dtype a program was compiled for."""


COMPILE_AFTER = 64  # runs of one request before "auto" compiles it on a cold cache
# "auto" compiles on a cold cache only programs up to this many generated lines, since the
# compile runs synchronously inside the 64th run: as one function a 485-line language model
# decoder step took 543 s (wall, load ~7); cut into stages with view_at it is ~80 s of CPU
# and the 587-line segmentation model ~47 s (this 2-core machine, loaded), still too long a
# pause to take unasked. A bigger request stays on the interpreter unless compiled=True (or
# its machine code is already cached)
AUTO_MAX_LINES = 400


class CompiledExecutor:
    """Interpreter-compatible executor: each request (reads, fed names) runs as a
    :class:`CompiledProgram` where every node it needs compiles, else on the prepared
    interpreter ``fallback``, whose results are the reference the compiled ones equal.

    ``eager=True`` compiles a request on its first run. ``eager=False`` ("auto") runs it
    compiled from the first run when its machine code is cached on disk, and otherwise on the
    interpreter until it has run :data:`COMPILE_AFTER` times (a hot loop: a stream, a
    benchmark), so a model run once or twice never pays the JIT.
    ``run(feeds, outputs)`` is :meth:`sdk.ops.interpreter.Interpreter.run`; :attr:`status`
    says, per request seen, ``"compiled"``, ``"pending (n runs)"`` or
    ``"interpreter: <reason>"``."""

    def __init__(self, graph: Graph, fallback: Any, directory: Path | None = None,
                 eager: bool = True) -> None:
        self.graph = graph
        self.fallback = fallback
        self.directory = directory
        self.eager = eager
        self._programs: dict[tuple, Any] = {}
        self._runs: dict[tuple, int] = {}
        self.status: dict[tuple[str, ...], str] = {}

    def __getattr__(self, name: str) -> Any:
        """The interpreter's own attributes (``prepared``, ``fast``, ``profile`` ...), so
        code written against the Interpreter keeps working."""
        if name == "fallback" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.fallback, name)

    def program(self, reads: Sequence[str], fed: Sequence[str], load: bool = True
                ) -> CompiledProgram | None:
        """The compiled program of one request (None where a node does not compile)."""
        key = (tuple(reads), frozenset(fed))
        prog = self._programs.get(key, False)
        if prog is False:
            try:
                prog = CompiledProgram(self.graph, sorted(fed), reads, self.directory,
                                       load=False)
            except Unsupported as exc:
                prog = None
                self.status[tuple(reads)] = f"interpreter: {exc}"
            except Exception as exc:  # noqa: BLE001 - a generator bug must not break a run:
                prog = None           # the interpreter is always there
                self.status[tuple(reads)] = (f"interpreter: the generator failed "
                                             f"({type(exc).__name__}: {exc})")
            self._programs[key] = prog
        if prog is not None and load and prog._fn is None:
            prog.load()  # an explicit request: a compile error is the caller's to see
        if prog is not None:
            self.status[tuple(reads)] = ("compiled" if prog._fn is not None
                                         else f"pending ({self._runs.get(key, 0)} runs)")
        return prog

    def loaded(self, reads: Sequence[str], fed: Sequence[str]) -> CompiledProgram | None:
        """The program of request (``reads``, ``fed`` names) when it is compiled and loaded
        already (a run of the request made it so), else None. Compiles nothing."""
        prog = self._programs.get((tuple(reads), frozenset(fed)))
        return prog if prog is not None and prog._fn is not None else None

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        wanted = tuple(outputs) if outputs is not None else tuple(self.graph.outputs)
        key = (wanted, frozenset(feeds))
        prog = self._programs.get(key, False)
        if prog is False or (prog is not None and prog._fn is None):
            n = self._runs[key] = self._runs.get(key, 0) + 1
            prog = self.program(wanted, list(feeds), load=False)
            if (prog is not None and not self.eager and not prog.cached
                    and prog.source.count("\n") > AUTO_MAX_LINES):
                self.status[wanted] = (f"interpreter: {prog.source.count(chr(10))} generated "
                                       f"lines, over the automatic limit of {AUTO_MAX_LINES} "
                                       "(compiled=True compiles it; that can take minutes)")
                prog = self._programs[key] = None
            if prog is not None and (self.eager or n >= COMPILE_AFTER or prog.cached):
                try:
                    prog.load()
                    self.status[wanted] = "compiled"
                except Exception as exc:  # noqa: BLE001 - Numba refused the program: the
                    prog = self._programs[key] = None  # interpreter runs the request
                    self.status[wanted] = (f"interpreter: compiling failed "
                                           f"({type(exc).__name__}: {str(exc)[:200]})")
        if prog is not None and prog._fn is not None:
            try:
                return dict(zip(wanted, prog.run(feeds)))
            except Exception:  # noqa: BLE001, S110 - a mismatch or a kernel's refusal: the
                pass           # interpreter gives the same bits or the spec's one-line error
        return self.fallback.run(feeds, wanted)


def describe(graph: Graph, fed: Sequence[str] | None = None,
             reads: Sequence[str] | None = None, directory: Path | None = None) -> dict:
    """What a Session's default ("auto") executor does with a request (default: the graph's
    inputs to its outputs), without compiling anything: ``executor`` ("compiled" or
    "interpreter"), ``why`` (the reason it stays on the interpreter, or when it compiles),
    ``lines`` (the generated program's size), ``cached`` (machine code on disk already) and
    ``gemm_path`` (the int8 GEMM kernels picked from this CPU's features) and
    ``gemm_threads`` (the threads a large GEMM gets, from which M·N·K)."""
    from sdk.kernels.fast.gemm import thread_note
    from sdk.kernels.fast.vnni import gemm_path

    out: dict[str, Any] = {"executor": "interpreter", "why": None, "lines": None,
                           "cached": False, "gemm_path": gemm_path(),
                           "gemm_threads": thread_note()}
    try:
        prog = CompiledProgram(graph, sorted(graph.inputs if fed is None else fed),
                               list(graph.outputs if reads is None else reads), directory,
                               load=False)
    except Unsupported as exc:
        out["why"] = str(exc)
        return out
    except Exception as exc:  # noqa: BLE001 - see CompiledExecutor.program
        out["why"] = f"the generator failed ({type(exc).__name__}: {exc})"
        return out
    out["lines"] = lines = prog.source.count("\n")
    out["cached"] = prog.cached
    if prog.cached:
        out["executor"], out["why"] = "compiled", "machine code cached: compiled from the first run"
    elif lines > AUTO_MAX_LINES:
        out["why"] = (f"{lines} generated lines, over the automatic limit of {AUTO_MAX_LINES} "
                      "(compiled=True compiles it)")
    else:
        out["executor"] = "compiled"
        out["why"] = (f"cold cache: interpreter for {COMPILE_AFTER} runs, then compiled "
                      "(compiled=True: from the first run)")
    return out


def compile_check(graph: Graph, fed: Sequence[str] | None = None,
                  reads: Sequence[str] | None = None) -> str | None:
    """None when the request (default: the graph's inputs to its outputs) compiles, else the
    reason it does not. Generates the source only (no Numba compilation)."""
    try:
        _Generator(graph, list(graph.inputs if fed is None else fed),
                   list(graph.outputs if reads is None else reads))
    except Unsupported as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - see CompiledExecutor.program
        return f"the generator failed ({type(exc).__name__}: {exc})"
    return None
