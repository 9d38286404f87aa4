"""Bad model files and unsupported operators give one clear SDK error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sdk.errors import ModelFormatError, UnsupportedOpError
from sdk.frontends import load_onnx

SQUEEZENET = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / \
    "light_squeezenet.onnx"


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    if not SQUEEZENET.exists():
        pytest.skip("light_squeezenet.onnx is not shipped by this onnx wheel")
    return SQUEEZENET.read_bytes()


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 0.9, 0.999])
def test_truncated_file_is_a_model_format_error(tmp_path, model_bytes, fraction):
    path = tmp_path / "cut.onnx"
    path.write_bytes(model_bytes[: int(len(model_bytes) * fraction)])
    with pytest.raises(ModelFormatError) as exc:
        load_onnx(path)
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message and "truncated" in message


def test_text_file_is_a_model_format_error(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a model\nsecond line\n")
    with pytest.raises(ModelFormatError, match="not a readable ONNX model"):
        load_onnx(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelFormatError, match="empty"):
        load_onnx(empty)
    with pytest.raises(ModelFormatError, match="no such model file"):
        load_onnx(tmp_path / "absent.onnx")


def _model(nodes, inputs, outputs, opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   *extra_opsets])


def test_all_unsupported_ops_are_named_in_one_error():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("LSTM", ["a", "w", "r"], ["b"], hidden_size=4),
        helper.make_node("TopK", ["b", "k"], ["c", "ci"]),
        helper.make_node("NonMaxSuppression", ["c", "c"], ["d"]),
        helper.make_node("FusedConv", ["d"], ["y"], domain="com.microsoft"),
    ]
    model = _model(nodes, [x], [y], extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(UnsupportedOpError) as exc:
        load_onnx(model)
    message = str(exc.value)
    for op in ("LSTM", "TopK", "NonMaxSuppression", "com.microsoft.FusedConv"):
        assert op in message
    assert "Relu" not in message
    assert exc.value.ops == sorted(["LSTM", "TopK", "NonMaxSuppression",
                                    "com.microsoft.FusedConv"])


def test_cast_to_an_unsupported_dtype_is_reported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [3])
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)], [x], [y])
    with pytest.raises(UnsupportedOpError, match=r"Cast\(to=DOUBLE\)"):
        load_onnx(model)


def test_too_old_opset_says_how_to_upgrade():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=6)
    with pytest.raises(ModelFormatError, match="version_converter"):
        load_onnx(model)


def test_float64_input_is_rejected_with_the_fix():
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [3])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [3])
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y])
    with pytest.raises(ModelFormatError, match="'x' has element type DOUBLE.*float32"):
        load_onnx(model)


def test_node_reading_an_undefined_tensor_is_a_model_format_error():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    model = _model([helper.make_node("Add", ["x", "ghost"], ["y"])], [x], [y])
    with pytest.raises(ModelFormatError, match="ghost"):
        load_onnx(model)


def test_constant_subgraph_is_folded():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [
        helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(
            np.array([1.0, 2.0, 3.0], np.float32))),
        helper.make_node("Mul", ["c", "c"], ["c2"]),
        helper.make_node("Add", ["x", "c2"], ["y"]),
    ]
    graph = load_onnx(_model(nodes, [x], [y]))
    assert [n.op for n in graph.nodes] == ["Add"]
    np.testing.assert_array_equal(graph.tensor("c2").data, [1.0, 4.0, 9.0])


def test_resize_variants_without_a_kernel_are_reported_at_import():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scales = onnx.numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["r"], mode="cubic"),
             helper.make_node("Resize", ["r", "", "s"], ["y"], antialias=1)]
    graph = helper.make_graph(nodes, "g", [x], [y], [scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UnsupportedOpError) as exc:
        load_onnx(model)
    assert "Resize(mode=cubic)" in str(exc.value) and "Resize(antialias=1)" in str(exc.value)
