"""StepProgram: a small integer step graph prepared once for many cheap runs (streaming).

A streaming step is tiny (one 10 ms frame: [1, C] tensors), so the generic executor's
per-call work — looking up the plan, re-validating every input, broadcasting constants,
turning attributes into per-channel vectors — costs more than the arithmetic. The general
machinery that hoists all of that out lives in :mod:`sdk.backends.reference.program` (it
also serves whole graphs through the reference executor); a StepProgram is that
:class:`~sdk.backends.reference.program.Program` on the Numba kernels, for the tensors a
StreamingSession feeds and reads each hop. Tests compare the bits with the reference executor.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdk.backends.reference.prepared import fully_connected_rows
from sdk.backends.reference.program import Program
from sdk.errors import GraphError
from sdk.graph.ir import Graph

__all__ = ["StepProgram", "fully_connected_rows"]


class StepProgram(Program):
    """``graph`` prepared to compute ``reads`` from ``fed`` tensors (plus its constants) on
    the Numba kernels; ``run(feeds)`` returns the reads in order, feeds used as given."""

    def __init__(self, graph: Graph, fed: Sequence[str], reads: Sequence[str]) -> None:
        super().__init__(graph, fed, reads, fast=True)
        for r in self.reads:
            if r in self.missing:
                raise GraphError(f"tensor {r!r} is neither fed, constant nor produced")
