"""Outlier tools of PTQ on small synthetic graphs: SmoothQuant migration keeps the float
function exactly, the sensitivity report finds the outlier tensor and int16 goes there only,
per-tensor observers, explicit int16 layers, and the `edge compile --report` CLI."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.cli.main import main
from sdk.errors import CalibrationError
from sdk.frontends.onnx_import import load_onnx
from sdk.graph import QuantParams
from sdk.quant import quantize
from sdk.quant.fuse import prepare_float_graph
from sdk.quant.ptq import PTQReport
from sdk.quant.sensitivity import choose_int16, cosine, fake_quant_graph, int16_safe
from sdk.quant.smooth import migration_scales, smooth_graph
from sdk.quant.trace import trace


def _model(nodes, inits, inputs, out_shape, name):
    g = helper.make_graph(nodes, name, inputs,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def post_ln_block(seed=0, t=6, d=16, ff=32):
    """x → LN (γ with outlier channels) → {MatMul+Add → Relu → MatMul, residual} → Add → y:
    a post-LN layer whose LayerNorm output feeds a linear layer and the residual."""
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 1.5, d).astype(np.float32)
    gamma[[2, 9]] = [25.0, -18.0]  # LayerNorm outlier channels, as in BERT
    inits = {"g": gamma, "b": rng.normal(0, 0.2, d).astype(np.float32),
             "w1": (rng.standard_normal((d, ff)) / 4).astype(np.float32),
             "b1": rng.normal(0, 0.1, ff).astype(np.float32),
             "w2": (rng.standard_normal((ff, d)) / 6).astype(np.float32)}
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["h"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["h", "w1"], ["u0"]),
             helper.make_node("Add", ["u0", "b1"], ["u"]),
             helper.make_node("Relu", ["u"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["f"]),
             helper.make_node("Add", ["h", "f"], ["y"])]
    return _model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
                  [1, t, d], "post_ln")


def outlier_mlp(seed=0, t=8, d=16):
    """x → a = x·Wa + ba → h = a·Wb (channel 3 reaches ~±60, the rest ~±1) → y = h·Wc.
    Only ``h`` has outliers; y depends on its small channels too."""
    rng = np.random.default_rng(seed)
    wb = (rng.standard_normal((d, d)) / 4).astype(np.float32)
    wb[:, 3] *= 60.0
    wc = (rng.standard_normal((d, 8)) / 4).astype(np.float32)
    wc[3] /= 60.0
    inits = {"wa": (rng.standard_normal((d, d)) / 4).astype(np.float32),
             "ba": rng.normal(0, 0.1, d).astype(np.float32), "wb": wb, "wc": wc}
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["a0"]),
             helper.make_node("Add", ["a0", "ba"], ["a"]),
             helper.make_node("MatMul", ["a", "wb"], ["h"]),
             helper.make_node("MatMul", ["h", "wc"], ["y"])]
    return _model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, t, d])],
                  [1, t, 8], "outlier_mlp")


def _data(shape, n, seed):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def test_smoothing_keeps_the_float_function_exactly():
    g = prepare_float_graph(load_onnx(post_ln_block()))
    x = _data((1, 6, 16), 12, 1)
    for alpha in (0.0, 0.5, 0.8, 1.0):
        sg, info = smooth_graph(g, {"x": x[:8]}, alpha)
        (si,) = info
        # the LN also feeds the residual: a smoothed copy feeds the linear layer only
        assert si.tensor == "h" and si.smoothed != "h" and si.consumers == ["u0"]
        assert [n.op for n in sg.nodes].count("LayerNormalization") == 2
        if alpha > 0:
            assert si.act_ratio_after < si.act_ratio_before
        for xi in x[8:]:
            ref, got = trace(g, {"x": xi})["y"], trace(sg, {"x": xi})["y"]
            assert np.allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_smoothing_folds_into_the_layernorm_when_only_linears_read_it():
    g = prepare_float_graph(load_onnx(post_ln_block()))
    g.nodes = [n for n in g.nodes if n.op != "Add" or n.outputs[0] != "y"]
    g.nodes[-1].outputs = ["y"]  # y = MatMul(r, w2): the LN now feeds the linear only
    g.tensor("y").shape = (1, 6, 16)
    x = _data((1, 6, 16), 10, 2)
    sg, (si,) = smooth_graph(g, {"x": x[:8]}, 0.5)
    assert si.smoothed == "h" and [n.op for n in sg.nodes].count("LayerNormalization") == 1
    for xi in x[8:]:
        ref = trace(g, {"x": xi})["y"]
        assert np.allclose(trace(sg, {"x": xi})["y"], ref, rtol=1e-5, atol=1e-5)


def test_migration_scales_formula():
    s = migration_scales(np.array([8.0, 1.0, 0.0]), np.array([0.5, 2.0, 1.0]), 0.5)
    assert np.allclose(s, [np.sqrt(8.0) / np.sqrt(0.5), 1.0 / np.sqrt(2.0), 1.0])
    with pytest.raises(CalibrationError):
        migration_scales(np.ones(2), np.ones(2), 1.5)


def test_smoothing_helps_int8_on_layernorm_outliers():
    m = post_ln_block()
    x = _data((1, 6, 16), 72, 3)
    g = load_onnx(m)
    cos = {}
    for alpha in (None, 0.5):
        ig = quantize(g, {"x": x[:48]}, mixed_precision=False, smooth_alpha=alpha)
        cos[alpha] = np.mean([cosine(trace(ig, {"x": xi})["y"], trace(g, {"x": xi})["y"])
                              for xi in x[48:]])
    assert cos[0.5] > cos[None]


def test_sensitivity_report_picks_the_outlier_tensor_only():
    g = load_onnx(outlier_mlp())
    x = _data((1, 8, 16), 40, 4)
    for mode in ("float", "integer"):
        rep = PTQReport()
        ig = quantize(g, {"x": x[:32]}, int16_layers="auto", target_cosine=0.985,
                      sensitivity=mode, report=rep)
        top = rep.sensitivity[0]
        assert top.tensor == "h", mode
        assert top.bulk_ratio > 100 and "outliers" in top.reason()
        assert top.error > 10 * rep.sensitivity[1].error
        assert rep.int16 == ["h"] and ig.tensor("h").dtype == "int16"
        assert ig.metadata["int16_layers"] == ["h"]
        worst = min(cosine(trace(ig, {"x": xi})["y"], trace(g, {"x": xi})["y"]) for xi in x[32:])
        assert worst > 0.985
    base = quantize(g, {"x": x[:32]})
    worst = min(cosine(trace(base, {"x": xi})["y"], trace(g, {"x": xi})["y"]) for xi in x[32:])
    assert worst < 0.95  # int8 h loses the small channels


def test_choose_int16_takes_the_shortest_prefix():
    from sdk.quant.sensitivity import SensitivityRow

    rows = [SensitivityRow(f"t{i}", 1.0 / (i + 1), 0, 0, 1, 1, 0.1, "minmax") for i in range(10)]
    calls = []

    def evaluate(names):
        calls.append(len(names))
        return 0.9 + 0.01 * len(names)  # reaches 0.96 at 6

    chosen, _ = choose_int16(rows, evaluate, 0.96 - 1e-9)
    assert chosen == [f"t{i}" for i in range(6)]
    assert len(calls) == len(set(calls)) < 10
    chosen, _ = choose_int16(rows, lambda n: 1.0, 0.99)
    assert chosen == []
    chosen, _ = choose_int16(rows, lambda n: 0.5, 0.99)
    assert len(chosen) == 10


def test_int16_is_never_offered_where_an_accumulator_could_overflow():
    g = prepare_float_graph(load_onnx(outlier_mlp()))
    assert int16_safe(g, "h")  # K = 16: 32767·Σ|w_q| is far below 2^31
    big = g.copy()
    big.tensors["wc"].data = np.ones((40000, 8), np.float32)
    assert not int16_safe(big, "h")


def test_explicit_int16_layers_and_per_tensor_observers():
    g = load_onnx(outlier_mlp())
    x = _data((1, 8, 16), 24, 5)
    ig = quantize(g, {"x": x}, int16_layers="h", observer_for={"a": "percentile"})
    assert ig.tensor("h").dtype == "int16" and ig.tensor("a").dtype == "int8"
    with pytest.raises(CalibrationError, match="unknown tensor"):
        quantize(g, {"x": x}, int16_layers=["nope"])
    auto = PTQReport()
    quantize(g, {"x": x}, observer="auto", report=auto)
    assert {r.observer for r in auto.sensitivity} <= {"minmax", "percentile", "mse"}
    assert auto.observer_for.keys() == {r.tensor for r in auto.sensitivity}


def test_fake_quant_graph_rounds_the_named_tensor():
    g = prepare_float_graph(load_onnx(outlier_mlp()))
    qp = QuantParams(np.float32(0.5), np.int32(0))
    fq = fake_quant_graph(g, {"a": (qp, "int8")})
    xi = _data((1, 8, 16), 1, 6)[0]
    a = trace(fq, {"x": xi})["a"]
    assert np.allclose(a / 0.5, np.round(a / 0.5))


def test_edge_compile_report(tmp_path, capsys):
    onnx.save(outlier_mlp(), tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=_data((1, 8, 16), 24, 7))
    rc = main(["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npz"),
               "-o", str(tmp_path / "m.edge"), "--int16-layers", "auto", "--report",
               "--target-cosine", "0.985", "--observer", "minmax"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "per-layer error vs float" in out and "sensitivity" in out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("  h ")]
    assert rows[0][1] == "int16" and float(rows[0][2]) > 0.99  # per-layer row: cosine
    assert rows[1][4] == "yes" and "median" in " ".join(rows[1])  # sensitivity row
    assert "int16 layers: h" in out
    rc = main(["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npz"),
               "-o", str(tmp_path / "m2.edge"), "--smooth-alpha", "0.5", "--report",
               "--sensitivity", "float"])
    out = capsys.readouterr().out
    assert rc == 0 and "int16 layers: none" in out


def test_choose_int16_prune_drops_what_is_not_needed():
    from sdk.quant.sensitivity import SensitivityRow

    rows = [SensitivityRow(f"t{i}", 1.0 / (i + 1), 0, 0, 1, 1, 0.1, "minmax") for i in range(4)]

    def evaluate(names):  # only t0 and t2 matter
        return 0.9 + 0.05 * ("t0" in names) + 0.05 * ("t2" in names)

    assert choose_int16(rows, evaluate, 0.99)[0] == ["t0", "t1", "t2"]
    assert choose_int16(rows, evaluate, 0.99, prune=True)[0] == ["t0", "t2"]
