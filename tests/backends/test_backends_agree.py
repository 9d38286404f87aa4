"""One compiled model, every executor: the same integer outputs (or within a stated 1 LSB).

* NumPy reference vs Numba kernels: identical (the fast twins are bit-exact by contract).
* LiteRT BUILTIN_REF: within 1 LSB — LiteRT 2.3 rounds the requantization once
  (sign(acc)·floor(|acc·M| + 0.5)) where the SDK rounds twice as TFLite Micro does.
* ONNX Runtime (QDQ model): within 1 LSB — it requantizes with a float multiply rounded
  half to even.
* LiteRT + XNNPACK: within 1 LSB — XNNPACK computes rint(float32(acc)·float32(M)).

A 1-LSB difference in an early layer can move a later layer by 1 as well, so "within 1 LSB"
is asserted on the final outputs *and* the share of differing elements is kept small.
"""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import lsb_diff

from sdk.backends import sample_graphs as sg
from sdk.backends.onnxruntime import cpu_check
from sdk.backends.partition import compile_for

MODELS = {"cnn": sg.cnn_graph, "attention": sg.attention_graph,
          "segmentation": sg.segmentation_graph}
TOLERANT = ["litert-ref", "onnxruntime", "litert"]


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    graph = MODELS[request.param]()
    feeds = sg.random_feeds(graph, seed=11)
    expected = compile_for(graph, "reference-numpy", "laptop").run(feeds)
    return graph, feeds, expected


def test_numba_kernels_identical_to_numpy_reference(model) -> None:
    graph, feeds, expected = model
    got = compile_for(graph, "reference", "laptop").run(feeds)
    for name in graph.outputs:
        assert np.array_equal(got[name], expected[name])


@pytest.mark.parametrize("backend", TOLERANT)
def test_delegated_backends_within_one_lsb(model, backend: str) -> None:
    # on CPUs where ORT's integer GEMM saturates, the ORT backend leaves the GEMMs to the
    # SDK's kernels (sdk.backends.onnxruntime.cpu_check), so this holds there too
    graph, feeds, expected = model
    got = compile_for(graph, backend, "laptop").run(feeds)
    for name in graph.outputs:
        d = lsb_diff(got[name], expected[name])
        assert d.max() <= 1, f"{backend} {name}: max diff {d.max()}"
        assert (d > 0).mean() <= 0.15, f"{backend} {name}: {(d > 0).mean():.1%} differ"


def _run_steps(backend: str, steps: int = 6) -> list[dict[str, np.ndarray]]:
    """Drive the recurrent step graph: h_t of one call is h_prev of the next."""
    graph = sg.step_graph()
    exe = compile_for(graph, backend, "laptop")
    rng = np.random.default_rng(4)
    h = np.full((1, 16), -128, np.int8)  # h = 0.0 in its scale (zero point -128)
    outs = []
    for _ in range(steps):
        x = rng.integers(-128, 128, (1, 8)).astype(np.int8)
        out = exe.run({"x_t": x, "h_prev": h})
        h = out["h_t"]
        outs.append(out)
    return outs


def test_stateful_step_graph_state_in_state_out() -> None:
    ref = _run_steps("reference-numpy")
    fast = _run_steps("reference")
    for a, b in zip(ref, fast):
        assert np.array_equal(a["h_t"], b["h_t"]) and np.array_equal(a["y_t"], b["y_t"])
    assert any(np.any(o["h_t"] != -128) for o in ref)  # the state actually moves
    for backend in TOLERANT:
        for k, (a, b) in enumerate(zip(ref, _run_steps(backend))):
            for name in ("h_t", "y_t"):
                # each backend carries its own state; a 1-LSB state difference may feed back,
                # so the bound is per step on the final values
                assert lsb_diff(a[name], b[name]).max() <= 1, f"{backend} step {k} {name}"


@pytest.mark.parametrize("backend", TOLERANT)
def test_each_op_within_one_lsb_on_larger_models(backend: str) -> None:
    """Per op, given the reference's own inputs, a delegated backend is within 1 LSB.

    End to end on larger models the per-op 1-LSB differences compound (a changed int8 input
    moves every dot product that reads it; Shiftmax sharpens score differences), so
    tools/bench_backends.py reports several LSB at the outputs of the bigger graphs. The
    guarantee that holds is per requantizing op, and that is what this test checks.
    """
    from sdk.backends.base import get_backend
    from sdk.backends.partition import extract_subgraph
    from sdk.ops.interpreter import Interpreter

    be = get_backend(backend)
    # where ORT's integer GEMM saturates, its backend refuses the GEMMs (checked below)
    hazard = cpu_check.integer_gemm_hazard() if backend == "onnxruntime" else None
    for graph in (sg.cnn_graph(hw=32, width=16), sg.attention_graph(t=32, d=64)):
        feeds = sg.random_feeds(graph, seed=12)
        every = [o for n in graph.nodes for o in n.outputs]
        env = dict(feeds)
        env.update(Interpreter(graph, fast=False).run(feeds, outputs=every))
        checked = refused = 0
        for node in graph.nodes:
            ok, why = be.supports(node, "laptop", graph)
            if not ok:
                if hazard is not None and node.op in cpu_check.GEMM_OPS:
                    assert hazard in why
                    refused += 1
                continue
            sub = extract_subgraph(graph, [node], node.name, set(node.outputs))
            got = be.compile(sub, "laptop").run({i: env[i] for i in sub.inputs})
            for o in node.outputs:
                assert lsb_diff(got[o], env[o]).max() <= 1, f"{backend} {graph.name} {node.name}"
            checked += 1
        assert checked >= 1 and checked + refused >= 5
