"""`Session(model, backend=..., target=...)` routes through sdk.backends.compile_for: the same
model on the reference kernels, LiteRT and ONNX Runtime, with the partition plan to show."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from small_cnn import build_small_cnn, images

import sdk
from sdk import EdgeError, InputError, Session, compile_model


@pytest.fixture(scope="module")
def edge_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("session")
    onnx.save(build_small_cnn(), d / "cnn.onnx")
    return compile_model(d / "cnn.onnx", {"x": images(32, seed=1)}).save(d / "cnn.edge")


@pytest.fixture(scope="module")
def x():
    return images(1, seed=11)[0]


def _lsb(edge_path) -> float:
    """One step of the integer output, in float units."""
    return float(np.asarray(Session(edge_path, integer_io=True).outputs[0].quant.scale))


def test_default_session_runs_the_reference_kernels_directly(edge_path, x):
    s = Session(edge_path)
    assert s.backend == "reference" and s.plan is None
    assert Session(edge_path, fast=False).backend == "reference-numpy"
    # intermediates are readable on the direct path
    assert s.run(["logits", "p1"], {"x": x})["p1"].shape == (1, 8, 8, 8)


@pytest.mark.parametrize("backend", ["reference", "reference-numpy"])
def test_reference_backends_through_the_partitioner_give_the_same_bits(edge_path, x, backend):
    s = Session(edge_path, backend=backend)
    assert s.plan.counts() == {backend: len(s.graph.nodes)}
    assert np.array_equal(s.run({"x": x})["logits"], Session(edge_path).run({"x": x})["logits"])


@pytest.mark.parametrize("backend", ["litert", "onnxruntime"])
def test_delegate_backends_agree_within_one_lsb(edge_path, x, backend):
    ref = Session(edge_path)
    s = Session(edge_path, backend=backend, target="laptop")
    assert s.plan.backend == backend and s.plan.counts().get(backend, 0) >= 4
    diff = np.abs(s.run({"x": x})["logits"] - ref.run({"x": x})["logits"]).max()
    assert diff <= _lsb(edge_path) * 1.0001  # float requantization rounds differently: ≤ 1 LSB


def test_target_alone_picks_the_targets_backend(edge_path, x):
    s = Session(edge_path, target="raspberry-pi-4")
    assert s.backend == sdk.default_backend("raspberry-pi-4") == "litert"
    assert "raspberry-pi-4" in str(s.plan)


def test_integer_io_on_a_backend_takes_and_returns_int8(edge_path, x):
    ref = Session(edge_path, integer_io=True)
    s = Session(edge_path, integer_io=True, backend="litert")
    q = ref.inputs[0].quant
    xi = np.clip(np.round(x / float(q.scale)) + int(q.zero_point), -128, 127).astype(np.int8)
    got, want = s.run({"x": xi})["logits"], ref.run({"x": xi})["logits"]
    assert got.dtype == want.dtype == np.int8
    assert np.abs(got.astype(np.int32) - want).max() <= 1
    # the float boundary nodes are not part of what LiteRT runs
    assert not any(a.op in ("QuantizeLinear", "DequantizeLinear") for a in s.plan.assignments)


def test_intermediate_tensor_on_a_backend_is_an_input_error(edge_path, x):
    s = Session(edge_path, backend="litert")
    with pytest.raises(InputError, match="only the outputs .* can be read"):
        s.run(["p1"], {"x": x})


def test_unknown_backend_names_the_known_ones(edge_path):
    with pytest.raises(EdgeError, match="unknown backend 'tpu9'.*litert"):
        Session(edge_path, backend="tpu9")
