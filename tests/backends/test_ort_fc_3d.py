"""A fully-connected layer on a 3-D activation exports to ONNX Runtime and runs there.

ONNX Runtime 1.32 rewrites a QDQ MatMul+Add on a 3-D input into Reshape+Gemm and then rejects
the QuantizeLinear it built itself ("output_dtype INT8 does not match y_zero_point type
UINT8"); the exporter flattens the integer tensor instead. This is the LMU's per-unit layer.
"""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sdk


def _fc3d_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (16, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        "fc3d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.usefixtures("require_exact_ort_integer_gemm")  # else the FC stays off ORT
def test_fc_on_3d_input_runs_on_onnxruntime_within_one_lsb():
    rng = np.random.default_rng(1)
    bundle = sdk.compile_model(_fc3d_model(), {"x": rng.normal(size=(32, 1, 4, 16)).astype(np.float32)})
    x = rng.normal(size=(1, 4, 16)).astype(np.float32)
    ref = sdk.Session(bundle.graph).run({"x": x})["y"]
    ort = sdk.Session(bundle.graph, backend="onnxruntime", target="laptop")
    fc_backends = {seg.backend for seg in ort.plan.segments
                   if any(n.op == "QFullyConnected" for n in seg.graph.nodes)}
    assert fc_backends == {"onnxruntime"}
    got = ort.run({"x": x})["y"]
    g = bundle.graph
    dequant = next(n for n in g.nodes if n.op == "DequantizeLinear" and n.outputs == ["y"])
    lsb = float(g.tensor(dequant.inputs[0]).quant.scale)
    assert got.shape == ref.shape == (1, 4, 8)
    assert np.max(np.abs(got - ref)) <= lsb * 1.0001
