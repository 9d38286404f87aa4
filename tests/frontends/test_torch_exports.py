"""What PyTorch's ONNX exporter writes for transformers imports, compiles and runs integer-only.

The fixtures under ``tests/fixtures/torch/`` come from ``tools/export_torch_fixtures.py``
(torch 2.13, TorchScript exporter, opset 17); torch itself is not needed here:

* ``encoder``: int64 ``input_ids``/``attention_mask`` [1, 16], learned token and position
  embeddings, 2 pre-LN blocks (width 64, 4 heads, GELU FFN), the HF additive mask
  ``(1 − mask)·finfo.min`` through Unsqueeze/Shape/ConstantOfShape/Equal/Where/Expand/Cast.
* ``rope_block``: spelled-out RMSNorm (Pow/ReduceMean/Add/Sqrt/Div/Mul), rotary embedding
  (Slice/Neg/Concat), a constant causal ``-inf`` mask.
* ``hf_style``: HF-BERT-like post-LN encoder: token + segment + position embeddings,
  hand-written LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add), a boolean mask into
  ``scaled_dot_product_attention`` (Cast/Expand/Where and the IsNaN guard after Softmax),
  Split/Squeeze heads, a tanh pooler on the first token (``pooled``).
* ``gpt_block``: GPT-2-like pre-LN block on float ``x`` plus ``attention_mask``: fused qkv
  + Split, ``masked_fill`` (Where) with a constant causal tril and with ``attention_mask == 0``
  (Equal/Cast/Where), tanh GELU spelled out (Mul/Tanh chain).
* ``unsupported``: CumSum, TopK and Einsum.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.errors import UnsupportedOpError
from sdk.frontends.onnx_import import load_onnx
from sdk.quant.fuse import prepare_float_graph
from sdk.quant.integer_ops import assert_integer_only
from sdk.runtime import Session

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "torch"
MODELS = ["encoder", "rope_block", "hf_style", "gpt_block"]
OUT = {"encoder": "hidden", "rope_block": "hidden", "hf_style": "pooled", "gpt_block": "hidden"}
# integer output vs torch float on held-out inputs (kept tokens only), least per-sample cosine
MIN_COSINE = {"encoder": 0.999, "rope_block": 0.999, "hf_style": 0.995, "gpt_block": 0.999}
NORM = {"encoder": "ILayerNorm", "rope_block": "IRMSNorm", "hf_style": "ILayerNorm",
        "gpt_block": "ILayerNorm"}


def _data(name: str, part: str) -> dict[str, np.ndarray]:
    with np.load(FIX / f"{name}_{part}.npz") as z:
        return {k: z[k] for k in z.files}


def _feeds(data: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in data.items() if not k.startswith("expected_")}


@lru_cache(maxsize=None)
def _compiled(name: str):
    return sdk.compile_model(FIX / f"{name}.onnx", calib=_data(name, "calib"))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _kept(feeds: dict[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """The per-token outputs of the tokens the attention mask keeps (all tokens without one,
    the whole output when it is not per token)."""
    if "attention_mask" not in feeds or y.ndim != 3 or y.shape[1] != feeds["attention_mask"].size:
        return y
    return y[:, feeds["attention_mask"][0].astype(bool)]


@pytest.mark.parametrize("name", MODELS)
def test_float_import_matches_torch_and_onnxruntime(name):
    import onnxruntime as ort

    path = FIX / f"{name}.onnx"
    sess = Session(load_onnx(path))
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    test, out = _data(name, "test"), OUT[name]
    for i in range(len(test[f"expected_{out}"])):
        feeds = _feeds(test, i)
        y = sess.run(feeds)[out]
        np.testing.assert_allclose(y, test[f"expected_{out}"][i], rtol=0, atol=1e-5)
        np.testing.assert_allclose(y, ref.run(None, feeds)[0], rtol=0, atol=1e-5)


def test_import_folds_the_shape_and_mask_arithmetic():
    g = load_onnx(FIX / "encoder.onnx")
    ops = Counter(n.op for n in g.nodes)
    for folded in ("Shape", "ConstantOfShape", "Equal", "Where", "Concat", "Constant"):
        assert ops[folded] == 0, ops
    fg = prepare_float_graph(g)
    ops = Counter(n.op for n in fg.nodes)
    # the mask chain (Unsqueeze, Expand, Cast, Sub, Mul, Add) became the Softmax's mask inputs
    for gone in ("Cast", "Expand", "Unsqueeze", "Sub", "Mul"):
        assert ops[gone] == 0, ops
    masked = [n for n in fg.nodes if n.op == "Softmax"]
    assert len(masked) == 2 and all(n.inputs[1] == "attention_mask" for n in masked)
    rope = Counter(n.op for n in prepare_float_graph(load_onnx(FIX / "rope_block.onnx")).nodes)
    assert rope["RMSNormalization"] == 2 and rope["Pow"] == rope["ReduceMean"] == rope["Sqrt"] == 0
    hf = Counter(n.op for n in prepare_float_graph(load_onnx(FIX / "hf_style.onnx")).nodes)
    assert hf["LayerNormalization"] == 5 and hf["Softmax"] == 2
    for gone in ("Pow", "ReduceMean", "Sqrt", "Where", "IsNaN", "Cast", "Expand", "Unsqueeze"):
        assert hf[gone] == 0, hf
    gpt = prepare_float_graph(load_onnx(FIX / "gpt_block.onnx"))
    ops = Counter(n.op for n in gpt.nodes)
    assert ops["Gelu"] == 1 and ops["Tanh"] == ops["Where"] == ops["Equal"] == 0, ops
    sm = next(n for n in gpt.nodes if n.op == "Softmax")
    assert sm.inputs[1] == "attention_mask" and sm.inputs[2]  # padding ids and causal flags


@pytest.mark.parametrize("name", MODELS)
def test_prepared_float_graph_keeps_the_function(name):
    g = load_onnx(FIX / f"{name}.onnx")
    a, b = Session(g), Session(prepare_float_graph(g))
    test, out = _data(name, "test"), OUT[name]
    for i in range(len(test[f"expected_{out}"])):
        feeds = _feeds(test, i)
        np.testing.assert_allclose(b.run(feeds)[out], a.run(feeds)[out], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_compiles_integer_only_and_numba_matches_numpy(name):
    bundle = _compiled(name)
    g = bundle.graph
    assert_integer_only(g)
    ops = Counter(n.op for n in g.nodes)
    assert ops["Shiftmax"] >= 1
    assert ops[NORM[name]] >= 2
    if name in ("encoder", "hf_style"):  # ids stay integer inputs: no QuantizeLinear at all
        assert ops["QuantizeLinear"] == 0
        assert {g.tensor(x).dtype for x in g.inputs} == {"int64"}
    fast, spec = Session(g, fast=True), Session(g, fast=False)
    test, out = _data(name, "test"), OUT[name]
    cos = []
    for i in range(len(test[f"expected_{out}"])):
        feeds = _feeds(test, i)
        y = fast.run(feeds)[out]
        np.testing.assert_array_equal(y, spec.run(feeds)[out])
        cos.append(_cosine(_kept(feeds, y), _kept(feeds, test[f"expected_{out}"][i])))
        if "x" in feeds:  # a block with a residual: judge what the block adds, too
            delta = _cosine(_kept(feeds, y - feeds["x"]),
                            _kept(feeds, test[f"expected_{out}"][i] - feeds["x"]))
            assert delta >= 0.99, delta
    assert min(cos) >= MIN_COSINE[name], cos


@pytest.mark.parametrize("name", ["encoder", "hf_style", "gpt_block"])
def test_padding_mask_is_honoured_in_integers(name):
    """Right padding (the saved torch outputs) for the encoders; the causal GPT block cannot
    see right padding at all, so it gets the masks flipped to left padding and the imported
    float model (equal to torch within 1e-5, see above) as the reference."""
    sess = Session(_compiled(name).graph)
    test, out = _data(name, "test"), OUT[name]
    padded = [i for i in range(len(test["attention_mask"])) if not test["attention_mask"][i].all()]
    assert padded
    causal = name == "gpt_block"
    ref = Session(load_onnx(FIX / f"{name}.onnx")) if causal else None
    rng = np.random.default_rng(5)
    for i in padded:
        feeds = _feeds(test, i)
        if causal:
            feeds["attention_mask"] = feeds["attention_mask"][:, ::-1].copy()
        keep = feeds["attention_mask"][0].astype(bool)
        y = sess.run(feeds)[out]
        want = ref.run(feeds)[out] if causal else test[f"expected_{out}"][i]
        # kept tokens (or the pooled first token) match the float model run with the same mask
        assert _cosine(_kept(feeds, y), _kept(feeds, want)) >= 0.995
        # ... and not the output without the mask: the mask changes what they attend to
        unmasked = sess.run({**feeds, "attention_mask": np.ones_like(feeds["attention_mask"])})
        assert np.abs(_kept(feeds, unmasked[out]) - _kept(feeds, y)).max() > 0.05
        # masked keys get exactly zero weight: other tokens at the padded positions change
        # no bit of the kept outputs
        key = "input_ids" if "input_ids" in feeds else "x"
        changed = feeds[key].copy()
        if key == "input_ids":
            changed[0, ~keep] = rng.integers(0, 96, size=int((~keep).sum()))
        else:
            changed[0, ~keep] = rng.standard_normal(changed[0, ~keep].shape)
        other = sess.run({**feeds, key: changed})[out]
        np.testing.assert_array_equal(_kept(feeds, other), _kept(feeds, y))


@pytest.mark.parametrize("name", ["rope_block", "gpt_block"])
def test_causal_mask_is_honoured_in_integers(name):
    """Token t must not see tokens after t: changing the last token leaves every earlier
    integer output bit-identical."""
    sess = Session(_compiled(name).graph)
    feeds = _feeds(_data(name, "test"), 0)
    x = feeds["x"]
    y = sess.run(feeds)["hidden"]
    x2 = x.copy()
    x2[0, -1] = -x2[0, -1]
    y2 = sess.run({**feeds, "x": x2})["hidden"]
    np.testing.assert_array_equal(y2[0, :-1], y[0, :-1])
    assert np.abs(y2[0, -1] - y[0, -1]).max() > 0.05


def test_unsupported_ops_fail_in_one_line_naming_all():
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(FIX / "unsupported.onnx")
    msg = str(err.value)
    assert "\n" not in msg
    for op in ("CumSum", "TopK", "Einsum"):
        assert op in msg
    with pytest.raises(UnsupportedOpError):
        sdk.compile_model(FIX / "unsupported.onnx", calib={"x": np.zeros((2, 1, 8), np.float32)})


def test_attributes_are_honoured_or_refused_in_the_same_line():
    """An attribute the kernels would not honour is refused next to unsupported ops."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])
    one = helper.make_tensor("g", TensorProto.FLOAT, [8], [1.0] * 8)
    axis = helper.make_tensor("ax", TensorProto.INT64, [], [1])
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g"], ["a"], stash_type=0),
        helper.make_node("Softmax", ["a"], ["b"], axis=-1, temperature=2.0),
        helper.make_node("CumSum", ["b", "ax"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y], [one, axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(model)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("LayerNormalization(stash_type=0)", "Softmax(temperature)", "CumSum"):
        assert part in msg, msg
    assert isinstance(model, onnx.ModelProto)


def test_dynamic_axes_export_compiles_once_its_input_shapes_are_fixed():
    """A dynamic-axes export keeps its Shape arithmetic (the integer lowering refuses it by
    name); :func:`specialize_input_shapes` folds it, and the result is the static export's."""
    from sdk.frontends.onnx_import import specialize_input_shapes
    from sdk.quant import quantize

    g = load_onnx(FIX / "encoder_dynamic.onnx")
    assert g.tensor("input_ids").shape == (-1, -1)
    with pytest.raises(UnsupportedOpError, match="Shape"):
        quantize(g, _data("encoder", "calib"))
    specialize_input_shapes(g, {"input_ids": (1, 16), "attention_mask": (1, 16)})
    ops = Counter(n.op for n in g.nodes)
    assert ops["Shape"] == ops["ConstantOfShape"] == ops["Equal"] == 0, ops
    ig = quantize(g, _data("encoder", "calib"))
    assert_integer_only(ig)
    a, b = Session(ig), Session(_compiled("encoder").graph)
    test = _data("encoder", "test")
    for i in range(len(test["expected_hidden"])):
        feeds = _feeds(test, i)
        np.testing.assert_array_equal(a.run(feeds)["hidden"], b.run(feeds)["hidden"])


def _masked_mean_model():
    """Masked mean pooling as sentence-embedding graphs write it: Cast(mask) → ReduceSum →
    Div → Unsqueeze → MatMul with the token states."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mf", "ax1"], ["cnt"], keepdims=1),
        helper.make_node("Div", ["mf", "cnt"], ["w"]),
        helper.make_node("Unsqueeze", ["w", "ax1"], ["w3"]),
        helper.make_node("MatMul", ["w3", "x"], ["pooled3"]),
        helper.make_node("Reshape", ["pooled3", "shape"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes, "masked_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 64]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, 16])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor("ax1", TensorProto.INT64, [1], [1]),
         helper.make_tensor("shape", TensorProto.INT64, [2], [1, 64])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_masked_mean_pooling_lowers_to_integers():
    model = _masked_mean_model()
    rng = np.random.default_rng(9)
    mask = np.ones((16, 1, 16), np.int64)
    for i in range(8, 16):
        mask[i, 0, 16 - i:] = 0
    calib = {"x": rng.standard_normal((16, 1, 16, 64)).astype(np.float32), "attention_mask": mask}
    g = sdk.compile_model(model, calib=calib).graph
    assert_integer_only(g)
    assert Counter(n.op for n in prepare_float_graph(load_onnx(model)).nodes)["MaskedMean"] == 1
    fl, fast, spec = Session(load_onnx(model)), Session(g), Session(g, fast=False)
    for i in range(16):
        feeds = {"x": rng.standard_normal((1, 16, 64)).astype(np.float32),
                 "attention_mask": mask[i]}
        y, z = fl.run(feeds)["pooled"], fast.run(feeds)["pooled"]
        np.testing.assert_array_equal(z, spec.run(feeds)["pooled"])
        # int8 input and output grids (the pooled range spans 1 to 16 tokens): ~0.995
        assert _cosine(y, z) >= 0.99
        keep = mask[i][0].astype(bool)
        if not keep.all():  # padded tokens change nothing
            x2 = feeds["x"].copy()
            x2[0, ~keep] = 5.0
            np.testing.assert_array_equal(fast.run({**feeds, "x": x2})["pooled"], z)


def _figures() -> None:
    """Print the float and integer agreement figures of every fixture."""
    import onnxruntime as ort

    for name in MODELS:
        out, test = OUT[name], _data(name, "test")
        fl = Session(load_onnx(FIX / f"{name}.onnx"))
        ref = ort.InferenceSession(str(FIX / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        q = Session(_compiled(name).graph)
        d_torch = d_ort = 0.0
        full, pad, delta = [], [], []
        for i in range(len(test[f"expected_{out}"])):
            feeds, want = _feeds(test, i), test[f"expected_{out}"][i]
            y, z = fl.run(feeds)[out], q.run(feeds)[out]
            d_torch = max(d_torch, float(np.abs(y - want).max()))
            d_ort = max(d_ort, float(np.abs(y - ref.run(None, feeds)[0]).max()))
            c = _cosine(_kept(feeds, z), _kept(feeds, want))
            padded = "attention_mask" in feeds and not feeds["attention_mask"].all()
            (pad if padded else full).append(c)
            if "x" in feeds:
                delta.append(_cosine(_kept(feeds, z - feeds["x"]), _kept(feeds, want - feeds["x"])))
        line = (f"{name}: float max|diff| vs torch {d_torch:.2e}, vs ORT {d_ort:.2e}; integer "
                f"cosine (full masks) min {min(full):.5f} mean {np.mean(full):.5f}")
        if pad:
            line += f"; padded, kept tokens min {min(pad):.5f} mean {np.mean(pad):.5f}"
        if delta:
            line += f"; block delta (minus the residual x) min {min(delta):.5f}"
        print(line)


if __name__ == "__main__":  # .venv/bin/python tests/frontends/test_torch_exports.py
    _figures()


def test_compile_model_fixes_a_dynamic_axes_export_to_the_calibration_shapes():
    """What a user of torch.onnx.export(dynamic_axes=...) does: compile with calibration data.
    The bundle's inputs take one sample's shape and its bits are the static export's."""
    bundle = sdk.compile_model(FIX / "encoder_dynamic.onnx", _data("encoder", "calib"))
    assert bundle.graph.tensor("input_ids").shape == (1, 16)
    assert_integer_only(bundle.graph)
    a, b = Session(bundle.graph), Session(_compiled("encoder").graph)
    test = _data("encoder", "test")
    for i in range(len(test["expected_hidden"])):
        feeds = _feeds(test, i)
        np.testing.assert_array_equal(a.run(feeds)["hidden"], b.run(feeds)["hidden"])
