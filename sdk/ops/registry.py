"""The operator registry: one place maps an op name to its kernel.

An implementation has the signature ``impl(inputs, attrs, fast) -> list[np.ndarray]`` where
``inputs`` are NumPy arrays in node-input order (``None`` for an omitted optional input),
``attrs`` is the node's attribute dict and ``fast`` selects the Numba twin (``False`` runs the
NumPy reference). Float ops (ONNX names) and integer ops (docs/ops.md) share this registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sdk.ops.schema import OpDef, declare

OpImpl = Callable[[list["np.ndarray | None"], dict[str, Any], bool], list[np.ndarray]]

OPS: dict[str, OpImpl] = {}


def register(*names: str) -> Callable[[OpImpl], OpImpl]:
    """Decorator: register ``impl`` under one or more op names."""

    def deco(impl: OpImpl) -> OpImpl:
        for n in names:
            if n in OPS and OPS[n] is not impl:
                raise RuntimeError(f"op {n!r} registered twice")
            OPS[n] = impl
        return impl

    return deco


def defop(d: OpDef) -> Callable[[Callable[..., list]], Any]:
    """Declare ``d`` in the schema and register its implementation with the registry: the
    registry calls ``fn(inputs, d.prepare(attrs), d.kernel(fast))``."""
    declare(d)

    def deco(fn: Callable[..., list]) -> Any:
        def impl(inputs: list, attrs: dict[str, Any], fast: bool) -> list[np.ndarray]:
            return fn(inputs, d.prepare(attrs), d.kernel(fast))
        impl.opdef = d  # type: ignore[attr-defined]
        impl.body = fn  # type: ignore[attr-defined]  # for callers that prepare once
        register(d.name)(impl)
        return fn
    return deco


def load_all() -> dict[str, OpImpl]:
    """Import every module that registers ops and return the registry."""
    import importlib

    for mod in ("sdk.ops.float_ops", "sdk.ops.int_ops", "sdk.ops.state_ops"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    return OPS
