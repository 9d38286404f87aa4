"""Partitioning: nodes a backend refuses run on the reference kernels, and the plan says so."""

from __future__ import annotations

import json

import pytest
from backend_helpers import lsb_diff

from sdk.backends import sample_graphs as sg
from sdk.backends.partition import compile_for, partition
from sdk.errors import EdgeError, UnsupportedOpError
from sdk.ops.interpreter import run_graph


def test_plan_shows_the_split_and_why() -> None:
    graph = sg.attention_graph()
    plan = partition(graph, "litert", "raspberry-pi-4")
    where = {a.node: a for a in plan.assignments}
    assert where["softmax"].backend == "reference"
    assert "TFLite has no operator" in where["softmax"].reason
    assert where["tanh"].backend == "reference"
    assert where["q"].backend == "litert" and where["q"].reason == ""
    text = str(plan)
    assert "fallback" in text and "Shiftmax" in text and "segment 1 [reference]" in text
    assert [s.backend for s in plan.segments] == ["litert", "reference", "litert", "reference",
                                                  "litert"]
    assert json.loads(plan.dumps())["nodes"][0]["backend"] == "litert"


def test_graph_with_unsupported_op_runs_correctly_with_cpu_fallback() -> None:
    graph = sg.attention_graph()
    feeds = sg.random_feeds(graph, seed=3)
    exe = compile_for(graph, "litert", "raspberry-pi-4")
    assert exe.plan.fallbacks  # the split really happened
    got = exe.run(feeds)["y"]
    want = run_graph(graph, feeds, fast=False)["y"]
    # LiteRT + XNNPACK rounds requantization in float32 (see test_backends_agree): 1 LSB
    assert lsb_diff(got, want).max() <= 1


def test_segments_are_self_contained_subgraphs() -> None:
    graph = sg.attention_graph()
    plan = partition(graph, "onnxruntime", "jetson-orin-nano")
    produced: set[str] = set(graph.inputs)
    for seg in plan.segments:
        seg.graph.validate()
        assert set(seg.inputs) <= produced  # every input comes from an earlier segment
        produced |= set(seg.outputs)
    assert set(graph.outputs) <= produced


def test_npu_plan_keeps_unlisted_ops_on_cpu() -> None:
    graph = sg.attention_graph()
    plan = partition(graph, "npu", "corstone-300-ethos-u55")
    where = {a.node: a for a in plan.assignments}
    assert where["q"].backend == "npu"
    assert where["scores"].backend == "reference"  # QMatMul is not in the Ethos-U op list
    assert "does not take QMatMul" in where["scores"].reason


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(EdgeError, match="unknown backend 'tensorflow'"):
        partition(sg.fc_graph(), "tensorflow")


def test_op_nobody_implements_names_it() -> None:
    graph = sg.fc_graph()
    graph.nodes[0].op = "QFancyOp"
    with pytest.raises(UnsupportedOpError, match="QFancyOp"):
        partition(graph, "litert")
