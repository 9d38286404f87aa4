"""Shape and dtype inference (sdk.ops.shapes) against ONNX's own inference and ORT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from frontends_oracle import ort_run, relative_error
from onnx import TensorProto, helper, numpy_helper

from sdk.errors import GraphError
from sdk.frontends import load_onnx
from sdk.graph import Graph, Tensor
from sdk.ops.shapes import broadcast, infer_shapes
from sdk.runtime import Session

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "inception_v2", "densenet121"])
def test_inferred_shapes_equal_onnx_shape_inference(name):
    path = LIGHT / f"light_{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path.name} is not shipped by this onnx wheel")
    reference = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    expected = {vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
                for vi in reference.graph.value_info}
    graph = load_onnx(path)
    compared = 0
    for t in graph.tensors.values():
        if t.name in expected and not t.is_constant:
            assert t.shape == expected[t.name], t.name
            compared += 1
    assert compared > 50


def _dynamic_batch_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((5, 4 * 4 * 4)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        # batch-preserving reshape built from the run-time shape: Shape → Gather → Concat
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "dyn", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dynamic_batch_dims_are_minus_one():
    graph = load_onnx(_dynamic_batch_model())
    assert graph.tensor("x").shape == (-1, 3, 8, 8)
    assert graph.tensor("c").shape == (-1, 4, 4, 4)
    assert graph.tensor("s").shape == (4,)
    # the Reshape target is known only at run time, so is what follows it
    assert graph.tensor("flat").shape is None


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_runs_like_onnxruntime(batch):
    model = _dynamic_batch_model()
    sess = Session(load_onnx(model))
    assert sess.input_shapes["x"] == (-1, 3, 8, 8)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
    ours = sess.run(None, {"x": x})["y"]
    ref = ort_run(model, {"x": x})["y"]
    assert ours.shape == (batch, 5)
    assert relative_error(ours, ref) <= 1e-4


def test_static_shape_chain_folds_to_a_constant_reshape_target():
    model = _dynamic_batch_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    graph = load_onnx(model)
    assert "Shape" not in graph.op_types() and "Concat" not in graph.op_types()
    reshape = next(n for n in graph.nodes if n.op == "Reshape")
    np.testing.assert_array_equal(graph.tensor(reshape.inputs[1]).data, [2, -1])
    assert graph.tensor("flat").shape == (2, 64)
    assert graph.tensor("y").shape == (2, 5)


def test_rules_and_abstract_evaluation_agree_on_a_hand_built_graph():
    g = Graph("hand")
    g.add_tensor(Tensor("x", "float32", (2, 6, 5)))
    g.inputs = ["x"]
    g.add_constant("perm_axes", np.array([1], np.int64))
    for name in ("t", "u", "p", "m"):
        g.add_tensor(Tensor(name, "float32"))
    g.add_node("Transpose", ["x"], ["t"], perm=[2, 0, 1])          # rule
    g.add_node("Unsqueeze", ["t", "perm_axes"], ["u"])              # abstract evaluation
    g.add_node("ReduceMax", ["u"], ["m"], keepdims=0)               # abstract evaluation
    g.add_node("DepthToSpace", ["u"], ["p"], blocksize=1)           # abstract evaluation
    g.outputs = ["m", "p"]
    infer_shapes(g)
    assert g.tensor("t").shape == (5, 2, 6)
    assert g.tensor("u").shape == (5, 1, 2, 6)
    assert g.tensor("m").shape == () and g.tensor("m").dtype == "float32"
    assert g.tensor("p").shape == (5, 1, 2, 6)


def test_broadcast_with_dynamic_dims():
    assert broadcast((-1, 1, 4), (3, 1)) == (-1, 3, 4)
    assert broadcast((1,), (-1,)) == (-1,)
    with pytest.raises(GraphError, match="do not broadcast"):
        broadcast((2, 3), (4, 3))


def test_graph_input_without_shape_is_an_error():
    g = Graph("noshape")
    g.add_tensor(Tensor("x", "float32"))
    g.add_tensor(Tensor("y", "float32"))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_node("Relu", ["x"], ["y"])
    with pytest.raises(GraphError, match="'x' has no shape"):
        infer_shapes(g)
