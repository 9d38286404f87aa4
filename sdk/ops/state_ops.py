"""The state ops of :mod:`sdk.kernels.cache`, declared once each: ``KVCacheWrite`` (write new
rows into a fixed-capacity integer KV cache at a position) and ``CausalMask`` (hide the cache
columns a query may not see yet). Both keep their first input's shape, dtype and grid, so the
capacity (and the arena plan) is fixed at compile time."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.ops.registry import defop
from sdk.ops.schema import INPLACE, KEEPS_GRID, STATEFUL, Attr, Cost, OpDef
from sdk.ops.shape_rules import same_rule

_NOT_WRITTEN = "the exporter has no mapping for it yet"
_EXPORTERS = {"onnxruntime": _NOT_WRITTEN, "tflite": _NOT_WRITTEN}


def _operands(inputs: list, op: str, n: int) -> list[np.ndarray]:
    if len(inputs) < n or any(x is None for x in inputs[:n]):
        raise GraphError(f"{op} needs {n} inputs (docs/ops.md)")
    return inputs[:n]


@defop(OpDef("KVCacheWrite", "integer", ("cache", "new", "pos"),
             attrs=(Attr("axis", "int", 2, "the rows axis of [B, H, C, D]"),),
             traits=frozenset({STATEFUL, KEEPS_GRID, INPLACE}),
             spec="sdk.kernels.cache:kv_cache_write",
             twin="sdk.kernels.fast.cache:kv_cache_write",
             cost=lambda c: Cost(other=c.size(1)),  # one store per new element
             shape=same_rule, firmware="KV_CACHE_WRITE", exporters_skip=_EXPORTERS,
             formula="cache'[..., pos:pos+T, :] = new; capacity C fixed"))
def _kv_cache_write(inputs: list, p: dict[str, Any], f: Any) -> list[np.ndarray]:
    c, new, pos = _operands(inputs, "KVCacheWrite", 3)
    return [f(c, new, pos, axis=p["axis"])]


@defop(OpDef("CausalMask", "integer", ("scores", "pos"),
             attrs=(Attr("fill", "optional_int", None, "masked value (dtype minimum)"),),
             traits=frozenset({KEEPS_GRID, INPLACE}), spec="sdk.kernels.cache:causal_mask",
             twin="sdk.kernels.fast.cache:causal_mask",
             cost=lambda c: Cost(other=c.out_elems),  # one compare per score
             shape=same_rule, firmware="CAUSAL_MASK", exporters_skip=_EXPORTERS,
             formula="out[..., i, j] = scores if j <= pos + i else fill"))
def _causal_mask(inputs: list, p: dict[str, Any], f: Any) -> list[np.ndarray]:
    s, pos = _operands(inputs, "CausalMask", 2)
    return [f(s, pos, fill=p["fill"])]
