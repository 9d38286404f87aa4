"""Session: describing inputs/outputs, running, and rejecting bad feeds with clear messages."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdk
from sdk.errors import InputError
from sdk.graph import Graph, Tensor
from sdk.runtime import Session


def _conv_model(path) -> str:
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 6, 6])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 4])
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Softmax", ["f"], ["prob"], axis=-1)]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture()
def sess(tmp_path) -> Session:
    return sdk.Session(_conv_model(tmp_path / "tiny.onnx"))


def test_session_describes_its_inputs_and_outputs(sess):
    assert sess.input_names == ["image"] and sess.output_names == ["prob"]
    assert sess.input_shapes == {"image": (-1, 3, 6, 6)}
    assert sess.output_shapes == {"prob": (-1, 4)}
    assert sess.inputs[0].dtype == "float32"
    assert "image(?, 3, 6, 6) float32" in repr(sess)


def test_run_returns_probabilities_for_any_batch(sess):
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 6, 6)).astype(np.float32)
        out = sess.run(None, {"image": x})
        assert out["prob"].shape == (batch, 4)
        np.testing.assert_allclose(out["prob"].sum(axis=1), 1.0, rtol=1e-5)
        # the single-dict form is the same call
        np.testing.assert_array_equal(sess.run({"image": x})["prob"], out["prob"])


def test_run_can_return_an_intermediate_tensor(sess):
    x = np.ones((2, 3, 6, 6), np.float32)
    out = sess.run(["g"], {"image": x})
    assert list(out) == ["g"] and out["g"].shape == (2, 4, 1, 1)


def test_unknown_input_name_names_the_real_inputs(sess):
    with pytest.raises(InputError, match=r"unknown input 'img'; the model's inputs are \['image'\]"):
        sess.run(None, {"img": np.zeros((1, 3, 6, 6), np.float32)})


def test_missing_input_says_what_is_expected(sess):
    with pytest.raises(InputError, match=r"missing input 'image': expected shape \(\?, 3, 6, 6\)"):
        sess.run(None, {})


def test_wrong_shape_names_expected_and_given(sess):
    with pytest.raises(InputError) as exc:
        sess.run(None, {"image": np.zeros((1, 3, 7, 6), np.float32)})
    assert str(exc.value) == ("input 'image': expected shape (?, 3, 6, 6), "
                              "given (1, 3, 7, 6)")
    with pytest.raises(InputError, match="expected shape"):
        sess.run(None, {"image": np.zeros((3, 6, 6), np.float32)})


def test_wrong_dtype_names_expected_given_and_fix(sess):
    with pytest.raises(InputError) as exc:
        sess.run(None, {"image": np.zeros((1, 3, 6, 6), np.float64)})
    assert "input 'image': expected dtype float32, given float64" in str(exc.value)
    assert ".astype(np.float32)" in str(exc.value)


def test_unknown_output_is_an_input_error(sess):
    with pytest.raises(InputError, match="unknown output 'logits'"):
        sess.run(["logits"], {"image": np.zeros((1, 3, 6, 6), np.float32)})


def test_python_lists_are_accepted_as_feeds():
    g = Graph("lists")
    g.add_tensor(Tensor("a", "float32", (3,)))
    g.add_tensor(Tensor("b", "float32", (3,)))
    g.inputs, g.outputs = ["a"], ["b"]
    g.add_node("Relu", ["a"], ["b"])
    out = Session(g).run(None, {"a": [-1.0, 0.5, 2.0]})["b"]
    np.testing.assert_array_equal(out, np.array([0.0, 0.5, 2.0], np.float32))


def test_unknown_file_suffix_is_a_model_format_error(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x02")
    with pytest.raises(sdk.ModelFormatError, match="Session opens"):
        Session(path)


def test_executor_frees_intermediates_it_no_longer_needs():
    from sdk.ops.interpreter import Interpreter

    g = Graph("chain")
    g.add_tensor(Tensor("x", "float32", (4,)))
    g.inputs = ["x"]
    prev = "x"
    for k in range(5):
        g.add_tensor(Tensor(f"t{k}", "float32", (4,)))
        g.add_node("Relu", [prev], [f"t{k}"])
        prev = f"t{k}"
    g.outputs = [prev]
    exe = Interpreter(g)
    nodes, free = exe._plan(("t4",), frozenset({"x"}))
    assert len(nodes) == 5
    # each intermediate is dropped right after its only consumer ran; the output is kept
    assert free == [[], ["t0"], ["t1"], ["t2"], ["t3"]]
