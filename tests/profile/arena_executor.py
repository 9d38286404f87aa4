"""Run an integer graph inside ONE arena laid out by a MemoryPlan, with the reference kernels.

Every activation is a view into the arena at its planned offset; constants stay outside (they
live in flash). The arena starts as random bytes, so reading a tensor that was never written
or was overwritten while still live changes the result. Nodes the plan runs in place with a
scratch buffer are executed the way a microcontroller kernel would: one depthwise channel
plane, one 1×1-conv pixel or one FC row at a time is copied to the scratch slot, the reference
kernel computes that slice from the scratch copy, and the result is written over the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.compile.memory_plan import MemoryPlan
from sdk.graph.ir import Graph
from sdk.ops.registry import OPS, load_all


def _per_channel(attrs: dict[str, Any], c: slice, n: int) -> dict[str, Any]:
    out = dict(attrs)
    for k in ("m0", "shift"):
        v = np.asarray(attrs[k])
        if v.ndim == 1 and v.shape[0] == n:
            out[k] = v[c]
    return out


def run_in_arena(graph: Graph, plan: MemoryPlan, feeds: Mapping[str, np.ndarray],
                 seed: int = 0) -> dict[str, np.ndarray]:
    load_all()
    arena = np.random.default_rng(seed).integers(0, 256, plan.arena_bytes, dtype=np.uint8)

    def view(name: str, dtype: str | None = None, shape: tuple | None = None) -> np.ndarray:
        s = plan.slots[name]
        t = graph.tensors.get(name)
        dt = dtype or t.dtype
        shp = shape if shape is not None else t.shape
        nbytes = int(np.prod(shp)) * np.dtype(dt).itemsize
        assert nbytes <= s.size
        return arena[s.offset:s.offset + nbytes].view(dt).reshape(shp)

    for name, value in feeds.items():
        view(name)[...] = value
    consts = {t.name: t.data for t in graph.initializers()}

    def arg(i: str) -> np.ndarray | None:
        if not i:
            return None
        return consts[i] if i in consts else view(i)

    for node in graph.topological_order():
        entry = plan.in_place.get(node.name)
        if entry and entry["scratch"]:
            _run_in_place(node, graph, view, arg, entry)
            continue
        results = OPS[node.op]([arg(i) for i in node.inputs], node.attrs, False)
        for name, value in zip(node.outputs, results):
            if name:
                view(name)[...] = value   # the kernel returned before anything is written
    return {o: view(o).copy() for o in graph.outputs}


def _run_in_place(node, graph: Graph, view, arg, entry: dict[str, str]) -> None:
    x = view(entry["input"])
    out = view(entry["output"])
    w, bias = arg(node.inputs[1]), arg(node.inputs[2]) if len(node.inputs) > 2 else None
    dt = graph.tensor(entry["input"]).dtype
    kernel = OPS[node.op]
    if node.op == "QDepthwiseConv2d":
        n, c_all, h, wd = x.shape
        scratch = view(entry["scratch"], dt, (1, 1, h, wd))
        for b in range(n):
            for c in range(c_all):
                scratch[...] = x[b:b + 1, c:c + 1]
                attrs = {**_per_channel(node.attrs, slice(c, c + 1), c_all), "group": 1}
                res = kernel([scratch, w[c:c + 1], None if bias is None else bias[c:c + 1]],
                             attrs, False)[0]
                out[b:b + 1, c:c + 1] = res
    elif node.op == "QConv2d":
        n, c_all, h, wd = x.shape
        scratch = view(entry["scratch"], dt, (1, c_all, 1, 1))
        for b in range(n):
            for i in range(h):
                for j in range(wd):
                    scratch[...] = x[b:b + 1, :, i:i + 1, j:j + 1]
                    out[b:b + 1, :, i:i + 1, j:j + 1] = kernel([scratch, w, bias], node.attrs,
                                                                False)[0]
    elif node.op == "QFullyConnected":
        k = x.shape[-1]
        xf, of = x.reshape(-1, k), out.reshape(-1, out.shape[-1])
        scratch = view(entry["scratch"], dt, (1, k))
        for r in range(xf.shape[0]):
            scratch[...] = xf[r:r + 1]
            of[r:r + 1] = kernel([scratch, w, bias], node.attrs, False)[0]
    else:
        raise AssertionError(f"no in-place runner for {node.op}")
