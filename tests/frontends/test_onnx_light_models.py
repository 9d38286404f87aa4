"""The `light_*` ImageNet models that the onnx wheel ships, imported and run on the reference
backend, against ONNX Runtime (acceptance: max|diff| / max|ort| ≤ 1e-4).

As shipped, these models build every weight with ConstantOfShape (all weights equal), so the
softmax output is nearly uniform. The second test therefore also replaces those weights with
random values (the same model for ORT and for the SDK) and compares the logits before the
final Softmax as well as the probabilities.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from frontends_oracle import ort_run, relative_error
from onnx import helper, numpy_helper

from sdk.frontends import load_onnx
from sdk.runtime import Session

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ["squeezenet", "shufflenet", "resnet50", "densenet121", "inception_v1",
          "inception_v2", "bvlc_alexnet", "zfnet512", "vgg19"]
# the last three carry 60-140 M fully-connected weights: drawing random ones is slow
RANDOM_WEIGHT_MODELS = MODELS[:6]


def _path(name: str) -> Path:
    p = LIGHT / f"light_{name}.onnx"
    if not p.exists():
        pytest.skip(f"{p.name} is not shipped by this onnx wheel")
    return p


def _feeds(sess: Session, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.inputs}


def _with_random_weights(model: onnx.ModelProto, seed: int = 1) -> onnx.ModelProto:
    """Replace each ConstantOfShape weight by a random initializer of the same shape.

    Vectors (biases, batch-norm statistics) get values in [0.5, 1.5] so variances stay
    positive; weight tensors get N(0, 1)·√(2/fan_in) so activations stay in range.
    """
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
            if len(shape) <= 1:
                value = rng.uniform(0.5, 1.5, shape)
            else:
                fan_in = int(np.prod(shape[1:]))
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            m.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32),
                                                               node.output[0]))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.ir_version = max(m.ir_version, 4)  # initializers need not be listed as graph inputs
    return m


def _pre_softmax(model: onnx.ModelProto) -> str:
    """The logits: the final Softmax's input, or the model's output when it has no Softmax."""
    return next((n.input[0] for n in reversed(model.graph.node) if n.op_type == "Softmax"),
                model.graph.output[0].name)


@pytest.mark.parametrize("name", MODELS)
def test_light_model_as_shipped_matches_onnxruntime(name):
    path = _path(name)
    sess = Session(path)
    feeds = _feeds(sess)
    ref = ort_run(onnx.load(str(path)), feeds)
    ours = sess.run(None, feeds)
    for out, r in ref.items():
        assert ours[out].shape == r.shape
        assert relative_error(ours[out], r) <= 1e-4


@pytest.mark.parametrize("name", RANDOM_WEIGHT_MODELS)
def test_light_model_with_random_weights_matches_onnxruntime(name):
    model = _with_random_weights(onnx.load(str(_path(name))))
    logits = _pre_softmax(model)
    if logits not in [o.name for o in model.graph.output]:
        model.graph.output.append(helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT,
                                                                None))
    t0 = time.perf_counter()
    sess = Session(load_onnx(model))
    feeds = _feeds(sess, seed=2)
    ours = sess.run(None, feeds)
    elapsed = time.perf_counter() - t0
    ref = ort_run(model, feeds)
    assert set(ours) == set(ref)
    for out, r in ref.items():
        assert ours[out].shape == r.shape, out
        err = relative_error(ours[out], r)
        assert err <= 1e-4, f"{name} {out}: relative error {err:.2e}"
    assert np.std(ref[logits]) > 1e-3 * np.max(np.abs(ref[logits])), "logits are degenerate"
    assert elapsed < 20.0, f"{name}: import + run took {elapsed:.1f} s"


def test_light_model_weights_are_folded_at_import():
    graph = load_onnx(_path("squeezenet"))
    assert "ConstantOfShape" not in graph.op_types()
    conv = next(n for n in graph.nodes if n.op == "Conv")
    weight = graph.tensor(conv.inputs[1])
    assert weight.is_constant and weight.shape == (64, 3, 3, 3)
    assert graph.inputs == ["data_0"]
