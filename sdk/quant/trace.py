"""Run a graph on the reference executor and keep every intermediate tensor.

Calibration needs all activations of the float graph, and tests need the integer tensor just
before an output's ``DequantizeLinear``; both use :func:`trace`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sdk.graph import Graph
from sdk.ops.interpreter import Interpreter


def trace(graph: Graph, feeds: Mapping[str, np.ndarray], fast: bool = False) -> dict[str, np.ndarray]:
    """Values of every graph input and node output for one run of ``graph``."""
    names = list(graph.inputs) + [o for n in graph.nodes for o in n.outputs if o]
    return Interpreter(graph, fast=fast).run(feeds, outputs=names)
