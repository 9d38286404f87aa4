"""Through the reference backend's registry, the fast and the reference kernels of every
sample integer graph give the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from sdk.backends import sample_graphs
from sdk.ops.interpreter import Interpreter


@pytest.mark.parametrize("build", ["fc_graph", "conv_graph", "add_graph", "cnn_graph",
                                   "attention_graph", "step_graph"])
def test_fast_and_reference_graphs_agree(build: str) -> None:
    graph = getattr(sample_graphs, build)()
    feeds = sample_graphs.random_feeds(graph)
    ref = Interpreter(graph, fast=False).run(feeds)
    fast = Interpreter(graph, fast=True).run(feeds)
    assert ref.keys() == fast.keys() and ref
    for name in ref:
        assert ref[name].dtype == fast[name].dtype
        np.testing.assert_array_equal(ref[name], fast[name])
