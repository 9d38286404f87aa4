"""StreamingSession on a generated recurrent step graph: hop-by-hop equals the unrolled graph,
float and compiled integer, plus reset / save / restore and bad input."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from step_graphs import calibration, frames, numpy_reference, recurrent_step

import sdk
from sdk.errors import GraphError, InputError, ModelFormatError
from sdk.graph.state import pair_states
from sdk.kernels.quantize import quantize_linear


@pytest.fixture(scope="module")
def float_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("step") / "recurrent_step.onnx"
    onnx.save(recurrent_step(0), p)
    return p


@pytest.fixture(scope="module")
def bundle(float_path):
    return sdk.compile_model(float_path, calibration(0))


def _raw_frames(ss: sdk.StreamingSession, xs: np.ndarray) -> np.ndarray:
    q = ss.stream_inputs[0].quant
    return quantize_linear(xs, q.scale, q.zero_point, ss.stream_inputs[0].dtype)


def test_states_are_paired_by_name_convention(float_path):
    ss = sdk.StreamingSession(float_path)
    assert ss.pairs == {"buf": "buf_next", "h": "h_next"}
    assert [i.name for i in ss.stream_inputs] == ["x"]
    assert [o.name for o in ss.stream_outputs] == ["y"]


def test_other_suffixes_and_explicit_mapping():
    assert pair_states(["x", "h_in", "c"], ["y", "h_out", "c_new"]) == {"h_in": "h_out",
                                                                       "c": "c_new"}
    g = sdk.load_onnx(recurrent_step(0, state_suffix="_after"))
    with pytest.raises(GraphError, match="no state input/output pairs"):
        sdk.StreamingSession(g)
    ss = sdk.StreamingSession(g, state={"h": "h_after", "buf": "buf_after"})
    assert ss.steps(frames(5, 1))["y"].shape == (5, 1, 4)


def test_explicit_mapping_with_unknown_name_is_rejected(float_path):
    with pytest.raises(GraphError, match="'h_nxt' .* not a graph output"):
        sdk.StreamingSession(float_path, state={"h": "h_nxt", "buf": "buf_next"})


def test_float_streaming_matches_numpy_recurrence(float_path):
    xs = frames(40, 1)
    ys = sdk.StreamingSession(float_path).steps(xs)["y"]
    np.testing.assert_allclose(ys, numpy_reference(0, xs), rtol=1e-5, atol=1e-5)


def test_float_streaming_equals_unrolled_graph_exactly(float_path):
    xs = frames(40, 2)
    ss = sdk.StreamingSession(float_path)
    offline, final = ss.run_offline(xs)
    streamed = ss.steps(xs)
    assert np.array_equal(streamed["y"], offline["y"])
    for k, v in ss.get_state().items():
        assert np.array_equal(v, final[k])


def test_integer_state_is_raw_and_starts_at_zero_point(bundle):
    ss = sdk.StreamingSession(bundle)
    assert ss.is_integer
    for name, info in ss.state_infos.items():
        assert info.dtype in ("int8", "int16")
        assert np.all(ss.get_state()[name] == int(info.quant.zero_point))


@pytest.mark.parametrize("fast", [True, False])
def test_integer_streaming_equals_unrolled_graph_bit_exactly(bundle, fast):
    ss = sdk.StreamingSession(bundle, integer_io=True, fast=fast)
    xq = _raw_frames(ss, frames(60, 3))
    offline, final = ss.run_offline(xq)
    streamed = ss.steps(xq)
    assert streamed["y"].dtype == offline["y"].dtype == np.int8
    assert np.array_equal(streamed["y"], offline["y"])
    for k, v in ss.get_state().items():
        assert np.array_equal(v, final[k])


def test_numba_and_numpy_reference_stream_the_same_bits(bundle):
    xs = frames(30, 4)
    a = sdk.StreamingSession(bundle, integer_io=True, fast=True)
    b = sdk.StreamingSession(bundle, integer_io=True, fast=False)
    assert np.array_equal(a.steps(_raw_frames(a, xs))["y"], b.steps(_raw_frames(b, xs))["y"])


def test_state_grid_mismatch_is_aligned_with_an_integer_requantize(float_path):
    # quantized as stateless (state_pairs={}), the tanh output keeps the LUT's fixed grid
    # and the calibrated h input gets another one
    bundle = sdk.compile_model(float_path, calibration(0), state_pairs={})
    ss = sdk.StreamingSession(bundle)
    assert ss.aligned_states == ["h"]
    assert [n.op for n in ss.graph.nodes].count("Requantize") >= 1
    assert any(n.name == "align_state_h" for n in ss.graph.nodes)


def test_integer_stream_tracks_the_float_stream(float_path, bundle):
    xs = frames(60, 5)
    yf = sdk.StreamingSession(float_path).steps(xs)["y"]
    yq = sdk.StreamingSession(bundle).steps(xs)["y"]  # float in, dequantized out
    err = np.abs(yq - yf).max()
    assert err < 0.1 * np.abs(yf).max(), err


def test_reset_restarts_the_stream(bundle):
    ss = sdk.StreamingSession(bundle, integer_io=True)
    xq = _raw_frames(ss, frames(25, 6))
    first = ss.steps(xq)["y"]
    assert ss.hop == 25
    ss.reset()
    assert ss.hop == 0
    assert np.array_equal(ss.steps(xq)["y"], first)


def test_save_and_restore_continue_exactly(bundle, tmp_path):
    ss = sdk.StreamingSession(bundle, integer_io=True)
    xq = _raw_frames(ss, frames(50, 7))
    whole = ss.steps(xq)["y"]
    ss.reset()
    ss.steps(xq[:20])
    snap = ss.save_state(tmp_path / "state.npz")
    tail = ss.steps(xq[20:])["y"]
    assert np.array_equal(tail, whole[20:])
    ss.steps(xq[:7])  # wander off
    ss.restore_state(snap)
    assert ss.hop == 20
    assert np.array_equal(ss.steps(xq[20:])["y"], whole[20:])
    fresh = sdk.StreamingSession(bundle, integer_io=True)
    fresh.restore_state(tmp_path / "state.npz")
    assert fresh.hop == 20
    assert np.array_equal(fresh.steps(xq[20:])["y"], whole[20:])


def test_restore_rejects_a_snapshot_of_another_model(float_path, bundle, tmp_path):
    fl = sdk.StreamingSession(float_path)
    fl.steps(frames(3, 1))
    fl.save_state(tmp_path / "float_state.npz")
    q = sdk.StreamingSession(bundle)
    with pytest.raises(InputError, match="state 'buf': expected .* int16, given .* float32"):
        q.restore_state(tmp_path / "float_state.npz")


def test_restore_rejects_missing_and_foreign_files(bundle, tmp_path):
    ss = sdk.StreamingSession(bundle)
    with pytest.raises(InputError, match="does not exist"):
        ss.restore_state(tmp_path / "nope.npz")
    bad = tmp_path / "other.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ModelFormatError, match="not a stream state snapshot"):
        ss.restore_state(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFormatError, match="cannot read the state snapshot"):
        ss.restore_state(junk)


def test_bad_stream_input_is_a_clear_error(float_path):
    ss = sdk.StreamingSession(float_path)
    with pytest.raises(InputError, match="unknown stream input 'h'"):
        ss.step({"x": frames(1, 0)[0], "h": np.zeros((1, 8), np.float32)})
    with pytest.raises(InputError, match="input 'x': expected shape"):
        ss.step(np.zeros((1, 5), np.float32))
