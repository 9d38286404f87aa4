"""Registers the state ops of :mod:`sdk.kernels.cache`: ``KVCacheWrite`` and ``CausalMask``.

Each op's attributes are parsed by one small function (``*_attrs``) so an op schema can take
them over as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sdk.errors import GraphError
from sdk.kernels import cache
from sdk.kernels.fast import cache as fcache
from sdk.ops.registry import register


def kv_cache_write_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``KVCacheWrite`` attributes: ``axis`` (the rows axis, default 2 of [B, H, C, D])."""
    return {"axis": int(attrs.get("axis", 2))}


def causal_mask_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``CausalMask`` attributes: ``fill`` (default: the dtype's minimum)."""
    fill = attrs.get("fill")
    return {"fill": None if fill is None else int(fill)}


def _operands(inputs: list, op: str, n: int) -> list[np.ndarray]:
    if len(inputs) < n or any(x is None for x in inputs[:n]):
        raise GraphError(f"{op} needs {n} inputs (docs/ops.md)")
    return inputs[:n]


@register("KVCacheWrite")
def _kv_cache_write(inputs: list, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    c, new, pos = _operands(inputs, "KVCacheWrite", 3)
    f = fcache.kv_cache_write if fast else cache.kv_cache_write
    return [f(c, new, pos, **kv_cache_write_attrs(attrs))]


@register("CausalMask")
def _causal_mask(inputs: list, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
    s, pos = _operands(inputs, "CausalMask", 2)
    f = fcache.causal_mask if fast else cache.causal_mask
    return [f(s, pos, **causal_mask_attrs(attrs))]
