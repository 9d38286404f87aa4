"""LMUFormer keyword-spotter building blocks: LMU matrices, LIF, the ONNX step graph."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from scipy.linalg import expm

from sdk.errors import InputError, ModelFormatError
from sdk.models.lmuformer import (
    LMUFormerConfig,
    LMUFormerWeights,
    build_step_onnx,
    heaviside_hard_sigmoid,
    initial_state,
    legendre_readout,
    lmu_continuous,
    lmu_matrices,
    lmuformer_step,
    run_clip,
    running_mean_logits,
    state_shapes,
    weight_shapes,
)

SMALL = LMUFormerConfig(n_mels=8, n_classes=5, d_model=12, lmu_units=3, lmu_order=4,
                        lmu_theta=10.0)


def _random_model(cfg: LMUFormerConfig, seed: int = 0) -> LMUFormerWeights:
    rng = np.random.default_rng(seed)
    w = {k: (rng.standard_normal(s) * 0.6).astype(np.float32)
         for k, s in weight_shapes(cfg).items()}
    w["in_inv_std"] = np.abs(w["in_inv_std"]) + 0.5
    a, b = lmu_matrices(cfg.lmu_order, cfg.lmu_theta)
    w["a_bar"], w["b_bar"] = a.astype(np.float32), b.astype(np.float32)
    return LMUFormerWeights(cfg, w)


def test_continuous_matrices_follow_the_lmu_formula():
    a, b = lmu_continuous(3, 2.0)
    expect_a = np.array([[-1, -1, -1], [3, -3, -3], [-5, 5, -5]]) / 2.0
    assert np.allclose(a, expect_a)
    assert np.allclose(b[:, 0], np.array([1, -3, 5]) / 2.0)


def test_zero_order_hold_matches_closed_form():
    a, b = lmu_continuous(6, 12.0)
    a_bar, b_bar = lmu_matrices(6, 12.0)
    assert np.allclose(a_bar, expm(a), atol=1e-12)
    assert np.allclose(b_bar, np.linalg.solve(a, (a_bar - np.eye(6)) @ b), atol=1e-10)


def test_memory_holds_a_delayed_copy_of_the_input():
    order, theta = 12, 40.0
    a_bar, b_bar = lmu_matrices(order, theta)
    t = np.arange(400)
    u = np.sin(2 * np.pi * t / 60.0)
    m = np.zeros(order)
    mem = []
    for k in range(len(t)):
        m = a_bar @ m + b_bar[:, 0] * u[k]
        mem.append(m)
    y = np.array(mem) @ legendre_readout(order, 0.5)
    expect = np.sin(2 * np.pi * (t - 20.0) / 60.0)
    assert np.abs(y[200:] - expect[200:]).max() < 0.1


def test_lif_integrates_fires_and_resets():
    cfg = LMUFormerConfig(n_mels=1, n_classes=1, d_model=1, lmu_units=1, lmu_order=1,
                          spiking=True)
    model = _random_model(cfg)
    w = model.weights
    # make the embedding pass x straight through: e = x, then watch the first LIF
    w["in_mean"][:] = 0
    w["in_inv_std"][:] = 1
    w["w_embed"][:] = [[0, 0, 1]]
    w["b_embed"][:] = 0
    state = initial_state(cfg)
    spikes = []
    for _ in range(6):
        _, state, acts = lmuformer_step(model, np.array([1.5], np.float32), state)
        spikes.append(float(acts["v_embed"][0, 0]))
    # H1 = 0.75 (no spike), H2 = (0.75 + 1.5)/2 = 1.125 (spike, V = 0), then it repeats
    assert spikes == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("spiking", [False, True])
def test_onnx_step_graph_equals_numpy_step_over_a_stream(spiking):
    cfg = LMUFormerConfig(**{**SMALL.__dict__, "spiking": spiking})
    model = _random_model(cfg, seed=1)
    sess = ort.InferenceSession(build_step_onnx(model).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    names = list(state_shapes(cfg))
    rng = np.random.default_rng(2)
    state_np = initial_state(cfg)
    state_ort = initial_state(cfg)
    fired = 0.0
    for _ in range(30):
        x = (rng.standard_normal((1, cfg.n_mels)) * 2).astype(np.float32)
        logits_np, state_np, acts = lmuformer_step(model, x, state_np)
        feeds = {"x": x, **{f"state_{n}": state_ort[n] for n in names}}
        out = sess.run(None, feeds)
        state_ort = dict(zip(names, out[1:]))
        np.testing.assert_allclose(out[0], logits_np, rtol=1e-4, atol=1e-4)
        for n in names:
            np.testing.assert_allclose(state_ort[n], state_np[n], rtol=1e-4, atol=1e-4)
        fired += sum(float(a.mean()) for a in acts.values())
    assert fired > 0  # the activations are not all dead


def test_step_graph_uses_only_the_documented_ops():
    allowed = {"Add", "Mul", "MatMul", "Gemm", "Concat", "Slice", "Reshape", "Identity",
               "Relu", "HardSigmoid", "Sub"}
    for spiking in (False, True):
        cfg = LMUFormerConfig(**{**SMALL.__dict__, "spiking": spiking})
        graph = build_step_onnx(_random_model(cfg)).graph
        assert {n.op_type for n in graph.node} <= allowed
        assert graph.input[0].name == "x"
        assert [o.name for o in graph.output][1:] == [f"{i.name}_next"
                                                      for i in graph.input][1:]


def test_running_mean_logits():
    z = np.array([[1.0, 0.0], [3.0, 2.0], [2.0, 4.0]])
    assert np.allclose(running_mean_logits(z), [[1, 0], [2, 1], [2, 2]])


def test_run_clip_is_the_stream_of_steps():
    model = _random_model(SMALL, seed=5)
    feats = np.random.default_rng(6).standard_normal((7, SMALL.n_mels)).astype(np.float32)
    state = initial_state(SMALL)
    manual = []
    for f in feats:
        logits, state, _ = lmuformer_step(model, f, state)
        manual.append(logits[0])
    assert np.array_equal(run_clip(model, feats), np.stack(manual))


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = _random_model(SMALL, seed=3)
    model.save(tmp_path / "m.npz")
    back = LMUFormerWeights.load(tmp_path / "m.npz")
    assert back.config == SMALL
    assert all(np.array_equal(back.weights[k], model.weights[k]) for k in model.weights)
    with pytest.raises(InputError, match="does not exist"):
        LMUFormerWeights.load(tmp_path / "missing.npz")
    bad = dict(model.weights)
    bad["w_u"] = bad["w_u"][:, :2]
    with pytest.raises(ModelFormatError, match="w_u"):
        LMUFormerWeights(SMALL, bad)


def test_onnx_model_passes_the_checker():
    onnx.checker.check_model(build_step_onnx(_random_model(SMALL)), full_check=True)


@pytest.mark.parametrize("spiking", [False, True])
def test_batched_step_graph_runs_streams_side_by_side(spiking):
    cfg = LMUFormerConfig(**{**SMALL.__dict__, "spiking": spiking})
    model = _random_model(cfg, seed=7)
    sess = ort.InferenceSession(build_step_onnx(model, batch=None).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    names = list(state_shapes(cfg))
    feats = (np.random.default_rng(8).standard_normal((3, 12, cfg.n_mels)) * 2
             ).astype(np.float32)
    state = initial_state(cfg, batch=3)
    rows = []
    for t in range(feats.shape[1]):
        out = sess.run(None, {"x": feats[:, t], **{f"state_{n}": state[n] for n in names}})
        state = dict(zip(names, out[1:]))
        rows.append(out[0])
    batched = np.stack(rows, axis=1)
    for i in range(3):
        np.testing.assert_allclose(batched[i], run_clip(model, feats[i]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spiking", [False, True])
def test_sdk_session_runs_the_float_step_graph(tmp_path, spiking):
    from sdk.runtime import Session

    cfg = LMUFormerConfig(**{**SMALL.__dict__, "spiking": spiking})
    model = _random_model(cfg, seed=9)
    path = tmp_path / "step.onnx"
    path.write_bytes(build_step_onnx(model).SerializeToString())
    sess = Session(path)
    names = list(state_shapes(cfg))
    feats = (np.random.default_rng(10).standard_normal((10, cfg.n_mels)) * 2).astype(np.float32)
    state = initial_state(cfg)
    logits = []
    for f in feats:
        out = sess.run(None, {"x": f[None], **{f"state_{n}": state[n] for n in names}})
        state = {n: out[f"state_{n}_next"] for n in names}
        logits.append(out["logits"][0])
    np.testing.assert_allclose(np.stack(logits), run_clip(model, feats), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_hard_sigmoid_step_is_exactly_heaviside_in_float32(threshold):
    from onnx import TensorProto, helper

    attrs = heaviside_hard_sigmoid(threshold)
    th = np.float32(threshold)
    near = [np.nextafter(th, np.float32(-1)), th, np.nextafter(th, np.float32(2))]
    h = np.concatenate([np.array(near, np.float32),
                        np.random.default_rng(0).normal(0, 3, 2000).astype(np.float32),
                        np.array([-1e30, 1e30, 0.0], np.float32)])
    node = helper.make_node("HardSigmoid", ["h"], ["s"], **attrs)
    graph = helper.make_graph([node], "step",
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [len(h)])],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, [len(h)])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.array_equal(sess.run(None, {"h": h})[0], (h >= th).astype(np.float32))
    with pytest.raises(ValueError, match="power of two"):
        heaviside_hard_sigmoid(0.7)


@pytest.mark.parametrize("spiking", [False, True])
def test_step_graph_quantizes_to_an_integer_only_graph(spiking):
    from sdk.frontends.onnx_import import load_onnx
    from sdk.models import step_calibration_data
    from sdk.quant import quantize
    from sdk.runtime import Session

    cfg = LMUFormerConfig(**{**SMALL.__dict__, "spiking": spiking})
    model = _random_model(cfg, seed=11)
    feats = (np.random.default_rng(12).standard_normal((6, 15, cfg.n_mels)) * 2
             ).astype(np.float32)
    graph = quantize(load_onnx(build_step_onnx(model)), step_calibration_data(model, feats))
    ops = {n.op for n in graph.nodes}
    assert "QFullyConnected" in ops
    assert ("QLut" in ops) == spiking  # the spike step is one lookup table
    # integer-only: floats exist only at the boundary (Quantize of a graph input, Dequantize
    # to a graph output); every other node reads and writes integer tensors
    for n in graph.nodes:
        if n.op == "QuantizeLinear":
            assert n.inputs[0] in graph.inputs, n.name
        elif n.op == "DequantizeLinear":
            assert n.outputs[0] in graph.outputs, n.name
        else:
            for t in [*n.inputs, *n.outputs]:
                if t and not graph.tensor(t).is_constant:
                    assert graph.tensor(t).dtype.startswith(("int", "uint")), (n.op, t)
    sess = Session(graph, integer_io=True)
    info = {i.name: i for i in sess.inputs}
    names = list(state_shapes(cfg))
    state = {n: np.full(info[f"state_{n}"].shape, int(info[f"state_{n}"].quant.zero_point),
                        info[f"state_{n}"].dtype) for n in names}
    xq = info["x"].quant
    for f in feats[0]:
        x = np.clip(np.rint(f[None] / xq.scale) + xq.zero_point, -128, 127).astype(np.int8)
        out = sess.run(None, {"x": x, **{f"state_{n}": state[n] for n in names}})
        state = {n: out[f"state_{n}_next"] for n in names}
        assert all(state[n].dtype == info[f"state_{n}"].dtype for n in names)
