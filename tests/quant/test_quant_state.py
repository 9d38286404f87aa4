"""Recurrent state under quantization: each state input/output pair of a step graph shares one
grid (int16 under mixed precision), so a stream needs no Requantize between hops and stays
bit-exact with the unrolled graph; stateless models quantize exactly as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_models import encoder_block, recurrent_step, small_cnn, small_mlp

import sdk
from sdk.errors import GraphError
from sdk.frontends.onnx_import import load_onnx
from sdk.graph import Graph
from sdk.graph.state import inner_input, inner_output
from sdk.quant import quantize
from sdk.quant.trace import trace

ROOT = Path(__file__).resolve().parents[2]
STATES = ("m", "buf", "h")


def _stream_float(graph: Graph, xs: np.ndarray, suffix: str = "_next"
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run the float step over frames ``xs [T, 1, F]``: every hop's feeds, and y [T, 1, K]."""
    state = {k: np.zeros(graph.tensor(k).shape, np.float32) for k in STATES}
    feeds: dict[str, list[np.ndarray]] = {"x": [], **{k: [] for k in STATES}}
    ys = []
    for x in xs:
        for k, v in {"x": x, **state}.items():
            feeds[k].append(v)
        out = trace(graph, {"x": x, **state})
        state = {k: out[k + suffix] for k in STATES}
        ys.append(out["y"])
    return {k: np.stack(v) for k, v in feeds.items()}, np.stack(ys)


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def step() -> Graph:
    return load_onnx(recurrent_step(0))


@pytest.fixture(scope="module")
def calib(step) -> dict[str, np.ndarray]:
    return _stream_float(step, _frames(300, 1))[0]


@pytest.fixture(scope="module")
def int_step(step, calib) -> Graph:
    return quantize(step, calib)


def _grids(g: Graph, pairs: dict[str, str]) -> dict[str, tuple]:
    """State input → ((dtype, scale, zp) of its integer tensor, the same of its output's)."""
    c, p = g.consumers(), g.producers()
    out = {}
    for s_in, s_out in pairs.items():
        a, b = g.tensor(inner_input(g, s_in, c)), g.tensor(inner_output(g, s_out, p))
        out[s_in] = tuple((t.dtype, float(t.quant.scale), int(t.quant.zero_point)) for t in (a, b))
    return out


def test_state_pairs_share_one_grid_int16_where_the_graph_sets_it(int_step):
    pairs = {k: k + "_next" for k in STATES}
    assert int_step.metadata["state_pairs"] == pairs
    grids = _grids(int_step, pairs)
    for k, (g_in, g_out) in grids.items():
        assert g_in == g_out, k
    assert grids["m"][0][0] == "int16" and grids["m"][0][2] == 0  # Add root: int16 symmetric
    assert grids["buf"][0][0] == "int16"                          # Concat root
    assert grids["h"][0] == ("int8", 1 / 128, 0)                  # tanh LUT's own grid
    # the memory update's operands are int16 too, and its FC reads the int16 state
    ops = {n.outputs[0]: n for n in int_step.nodes}
    upd = ops[inner_output(int_step, "m_next", int_step.producers())]
    assert upd.op == "QAdd" and {int_step.tensor(i).dtype for i in upd.inputs} == {"int16"}
    fc_in = [int_step.tensor(n.inputs[0]).dtype for n in int_step.nodes
             if n.op == "QFullyConnected"]
    assert "int16" in fc_in


def test_streaming_needs_no_requantize_and_is_bit_exact_with_offline(int_step):
    ss = sdk.StreamingSession(int_step, integer_io=True, fast=False)
    assert ss.aligned_states == []
    assert not any(n.name.startswith("align_state_") for n in ss.graph.nodes)
    q = ss.stream_inputs[0].quant
    xq = np.clip(np.rint(_frames(40, 7) / float(q.scale)) + int(q.zero_point), -128, 127
                 ).astype(np.int8)
    offline, final = ss.run_offline(xq)
    streamed = ss.steps(xq)
    assert np.array_equal(streamed["y"], offline["y"])
    for k, v in ss.get_state().items():
        assert v.dtype == ss.state_infos[k].dtype
        assert np.array_equal(v, final[k]), k


def _float_states(graph: Graph, xs: np.ndarray) -> np.ndarray:
    """The float memory ``m'`` after every hop, [T, M]."""
    m = {k: np.zeros(graph.tensor(k).shape, np.float32) for k in STATES}
    rows = []
    for x in xs:
        out = trace(graph, {"x": x, **m})
        m = {k: out[k + "_next"] for k in STATES}
        rows.append(m["m"][0])
    return np.stack(rows)


def test_int16_memory_tracks_the_float_memory_closer_than_int8(step, calib, int_step):
    xs = _frames(120, 11)
    want = _float_states(step, xs)
    err = {}
    for name, g in [("paired", int_step), ("unpaired", quantize(step, calib, state_pairs={}))]:
        ss = sdk.StreamingSession(g, fast=False)
        q = ss.state_infos["m"].quant
        rows = []
        for x in xs:
            ss.step(x)
            rows.append((ss.get_state()["m"][0].astype(np.float64) - float(q.zero_point))
                        * float(q.scale))
        err[name] = float(np.sqrt(np.mean((np.stack(rows) - want) ** 2)))
    assert err["paired"] < 0.5 * err["unpaired"], err


def test_explicit_state_pairs_for_names_outside_the_convention(calib):
    g = load_onnx(recurrent_step(0, suffix="_updated"))
    data = _stream_float(g, _frames(120, 2), suffix="_updated")[0]
    assert "state_pairs" not in quantize(g, data).metadata  # the convention finds none
    pairs = {k: k + "_updated" for k in STATES}
    ig = quantize(g, data, state_pairs=pairs)
    grids = _grids(ig, pairs)
    assert all(a == b for a, b in grids.values())
    assert grids["m"][0][0] == "int16"
    with pytest.raises(GraphError, match="state output 'm_after'.*not a graph output"):
        quantize(g, data, state_pairs={"m": "m_after"})


def test_without_mixed_precision_a_pair_still_shares_its_int8_grid(step, calib):
    ig = quantize(step, calib, mixed_precision=False)
    grids = _grids(ig, {k: k + "_next" for k in STATES})
    for k, (g_in, g_out) in grids.items():
        assert g_in == g_out and g_in[0] == "int8", k


def _same_graph(a: Graph, b: Graph) -> None:
    assert [(n.op, n.inputs, n.outputs) for n in a.nodes] == \
        [(n.op, n.inputs, n.outputs) for n in b.nodes]
    for na, nb in zip(a.nodes, b.nodes):
        assert na.attrs.keys() == nb.attrs.keys(), na.name
        for k in na.attrs:
            assert np.array_equal(np.asarray(na.attrs[k]), np.asarray(nb.attrs[k])), (na.name, k)
    assert a.tensors.keys() == b.tensors.keys()
    for name, ta in a.tensors.items():
        tb = b.tensors[name]
        assert (ta.dtype, ta.shape, ta.quant) == (tb.dtype, tb.shape, tb.quant), name
        if ta.is_constant:
            assert np.array_equal(ta.data, tb.data), name


@pytest.mark.parametrize("model,shape", [(small_cnn, (1, 3, 16, 16)), (small_mlp, (4, 20)),
                                         (encoder_block, (1, 8, 32))])
def test_stateless_models_quantize_as_without_state_handling(model, shape):
    g = load_onnx(model())
    data = {"x": np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)}
    default = quantize(g, data)
    assert "state_pairs" not in default.metadata
    _same_graph(default, quantize(g, data, state_pairs={}))


@pytest.mark.parametrize("variant", ["nonspiking", "spiking"])
def test_lmuformer_step_graph_state_is_int16_and_streams_bit_exactly(variant):
    from sdk.models import LMUFormerWeights, build_step_onnx, step_calibration_data

    path = ROOT / "samples" / "kws" / "models" / f"kws_lmuformer_{variant}.npz"
    model = LMUFormerWeights.load(path)
    rng = np.random.default_rng(0)
    mean, inv_std = model.weights["in_mean"], model.weights["in_inv_std"]
    feats = (mean + rng.standard_normal((6, 60, mean.size)) / inv_std).astype(np.float32)
    g = quantize(load_onnx(build_step_onnx(model)), step_calibration_data(model, feats))
    pairs = g.metadata["state_pairs"]
    assert set(pairs) == {i for i in g.inputs if i.startswith("state_")}
    for k, (g_in, g_out) in _grids(g, pairs).items():
        assert g_in == g_out and g_in[0] == "int16" and g_in[2] == 0, k
    ss = sdk.StreamingSession(g, integer_io=True, fast=False)
    assert ss.aligned_states == []
    q = ss.stream_inputs[0].quant
    xq = np.clip(np.rint(feats[0, :25, None] / float(q.scale)) + int(q.zero_point), -128, 127
                 ).astype(np.int8)
    offline, final = ss.run_offline(xq)
    assert np.array_equal(ss.steps(xq)["logits"], offline["logits"])
    for k, v in ss.get_state().items():
        assert v.dtype == np.int16 and np.array_equal(v, final[k]), k


def test_int16_state_step_runs_bit_exactly_on_the_host_firmware(int_step):
    from firmware_bridge.build import toolchain_missing

    why = toolchain_missing("host")
    if why:
        pytest.skip(f"host firmware cannot be built: {why}")
    from firmware_bridge.client import DeviceClient
    from firmware_bridge.host_firmware import HostFirmware
    from firmware_bridge.image import pack_image
    from firmware_bridge.session import DeviceModel
    from sdk.ops.interpreter import run_graph

    pairs = int_step.metadata["state_pairs"]
    state = {k: np.zeros(int_step.tensor(k).shape, np.float32) for k in pairs}
    with HostFirmware() as fw:
        client = DeviceClient(fw.url, timeout=0.1)
        try:
            model = DeviceModel(client, pack_image(int_step, state=pairs))
            model.reset()
            for hop, x in enumerate(_frames(12, 3)):
                ref = run_graph(int_step, {"x": x, **state}, fast=False)
                got = model.run({"x": x})
                for name in ["y", *pairs.values()]:
                    assert np.array_equal(got[name], ref[name]), (hop, name)
                state = {k: ref[v] for k, v in pairs.items()}
        finally:
            client.close()


def test_a_state_output_on_its_own_grid_is_requantized_onto_the_pair_grid():
    # LeakyRelu lowers to an int8 lookup table whatever grid the plan asks for: the lowering
    # then requantizes the int8 result onto the pair's int16 grid inside the step graph
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(3).normal(0, 0.5, (7, 3)).astype(np.float32)
    nodes = [helper.make_node("Concat", ["x", "s"], ["xs"], axis=1),
             helper.make_node("MatMul", ["xs", "w"], ["pre"]),
             helper.make_node("LeakyRelu", ["pre"], ["s_next"], alpha=0.1),
             helper.make_node("Identity", ["s_next"], ["y"])]
    vi = helper.make_tensor_value_info
    model = helper.make_model(helper.make_graph(
        nodes, "lut_state", [vi("x", TensorProto.FLOAT, [1, 4]), vi("s", TensorProto.FLOAT, [1, 3])],
        [vi("y", TensorProto.FLOAT, [1, 3]), vi("s_next", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w, "w")]), opset_imports=[helper.make_opsetid("", 17)])
    g = load_onnx(model)
    rng = np.random.default_rng(4)
    data = {"x": rng.normal(0, 1, (64, 1, 4)).astype(np.float32),
            "s": rng.normal(0, 1, (64, 1, 3)).astype(np.float32)}
    ig = quantize(g, data)
    (g_in, g_out), = _grids(ig, {"s": "s_next"}).values()
    assert g_in == g_out and g_in[0] == "int16"
    producer = ig.producers()[inner_output(ig, "s_next", ig.producers())]
    assert producer.op == "Requantize" and ig.tensor(producer.inputs[0]).dtype == "int8"
    assert sdk.StreamingSession(ig).aligned_states == []
