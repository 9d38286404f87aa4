"""ONNX Runtime as the oracle: build small ONNX graphs, run them in ORT and in the SDK."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

NP_TO_ONNX = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64,
              "int32": TensorProto.INT32, "bool": TensorProto.BOOL, "int8": TensorProto.INT8,
              "uint8": TensorProto.UINT8}


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """``max|ours − ref| / max|ref|`` (the acceptance metric; 0 when both are all zero)."""
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    diff = np.max(np.abs(ours - ref)) if ref.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
            outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    names = outputs or [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def single_op_model(op: str, inputs: list[tuple[str, tuple, str]], n_outputs: int = 1,
                    attrs: dict | None = None, initializers: dict[str, np.ndarray] | None = None,
                    opset: int = 17) -> onnx.ModelProto:
    """One node ``op`` over graph inputs (name, shape, dtype) and constant initializers.

    Node inputs are the graph inputs then the initializers, in the order given; an
    initializer named '' stands for an omitted optional input.
    """
    initializers = initializers or {}
    g_inputs = [helper.make_tensor_value_info(n, NP_TO_ONNX[d], list(s)) for n, s, d in inputs]
    inits = [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()
             if not k.startswith("_")]
    node_inputs = [n for n, _, _ in inputs] + [("" if k.startswith("_") else k)
                                               for k in initializers]
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, node_inputs, outs, **(attrs or {}))
    graph = helper.make_graph([node], f"{op}_test", g_inputs, [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    # output types come from ONNX's own shape inference (ORT needs an element type)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi for vi in inferred.graph.value_info}
    for o in outs:
        model.graph.output.append(types.get(o) or helper.make_tensor_value_info(
            o, TensorProto.FLOAT, None))
    return model


def random_feed(shape: tuple, dtype: str, rng: np.random.Generator) -> np.ndarray:
    if dtype == "float32":
        return rng.standard_normal(shape).astype(np.float32)
    if dtype == "bool":
        return rng.random(shape) > 0.5
    return rng.integers(-5, 6, size=shape).astype(dtype)
