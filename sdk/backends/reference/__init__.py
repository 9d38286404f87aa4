"""The reference backend: the interpreter of :mod:`sdk.ops` (the integer specification and its
Numba twins) behind the backend interface. It runs on any target (the host CPU) and is where
every node another backend refuses falls back.

With ``fast`` a graph runs as one generated Numba program where every node has a compiled form
(:mod:`sdk.ops.codegen`; ``compiled=True`` compiles on the first run, ``None`` from a warm
cache or after a few runs, ``False`` never), else on the prepared interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.backends.base import Backend, Executable
from sdk.graph.ir import Graph, Node
from sdk.ops.codegen import CompiledExecutor
from sdk.ops.interpreter import Interpreter
from sdk.ops.registry import load_all


class ReferenceBackend(Backend):
    """The integer kernels of sdk/kernels (Numba twins, or the NumPy specification)."""

    def __init__(self, fast: bool = True, compiled: bool | None = None) -> None:
        self.fast = fast
        self.compiled = compiled
        self.name = "reference" if fast else "reference-numpy"

    def supports(self, node: Node, target: Any, graph: Graph) -> tuple[bool, str]:
        if node.op in load_all():
            return True, ""
        return False, f"no reference kernel for {node.op!r} (see docs/ops.md)"

    def compile(self, subgraph: Graph, target: Any) -> Executable:
        inner: Any = Interpreter(subgraph, fast=self.fast)
        if self.fast and self.compiled is not False:
            inner = CompiledExecutor(subgraph, inner, eager=self.compiled is True)
        return ReferenceExecutable(inner, self.name)


class ReferenceExecutable(Executable):
    """An :class:`~sdk.ops.interpreter.Interpreter` (or the compiled executor over one) as a
    backend executable."""

    def __init__(self, inner: Any, backend: str) -> None:
        self.inner = inner
        self.graph = inner.graph
        self.backend = backend

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.run(feeds)


def reference_numpy() -> ReferenceBackend:
    """The reference backend on the NumPy specification (``--backend reference-numpy``)."""
    return ReferenceBackend(fast=False)
