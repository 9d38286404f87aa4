"""The committed I-Segmenter-style model: files, I-Segmenter's graph changes, and its integer
bundle (integer-only ops, size, agreement with float on held-out scenes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import sdk
from sdk.ops.schema import opdef

from .conftest import MODEL

SAMPLES = MODEL.parent
LIMIT = 5 * 1024 * 1024


@pytest.mark.parametrize("name", ["seg_vit_mask.onnx", "seg_vit_mask.npz",
                                  "seg_vit_linear.onnx", "seg_vit_linear.npz"])
def test_committed_files_are_small(name: str) -> None:
    path = SAMPLES / name
    assert path.is_file(), f"{path} missing: tools/train_seg.py writes it"
    assert path.stat().st_size < LIMIT


@pytest.mark.parametrize("name", ["seg_vit_mask.onnx", "seg_vit_linear.onnx"])
def test_graph_has_i_segmenter_changes(name: str) -> None:
    m = onnx.load(str(SAMPLES / name))
    ops = [n.op_type for n in m.graph.node]
    resizes = [n for n in m.graph.node if n.op_type == "Resize"]
    assert resizes, "the logits are upsampled in the graph"
    for n in resizes:
        mode = {a.name: a for a in n.attribute}["mode"].s.decode()
        assert mode == "nearest", "I-Segmenter upsamples by nearest neighbour, not bilinear"
    # no L2 normalisation anywhere (Segmenter's mask decoder has one; I-Segmenter drops it):
    # torch spells F.normalize as ReduceL2 (or Pow/ReduceSum/Sqrt) then Div
    assert not {"ReduceL2", "LpNormalization", "ReduceSumSquare", "Sqrt"} & set(ops)
    consts = {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    consts |= {i.name for i in m.graph.initializer}
    pows = [n for n in m.graph.node if n.op_type == "Pow"]
    assert all(set(n.input) <= consts for n in pows), "a Pow of an activation (a norm)"
    assert "Softmax" in ops and "Erf" in ops  # attention and GELU as torch exports them
    inp = m.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in inp] == [1, 3, 64, 64]


def test_integer_bundle_is_integer_only_and_small(seg_bundle: Path) -> None:
    bundle = sdk.load_bundle(seg_bundle)
    g = bundle.graph
    ops = [n.op for n in g.nodes]
    fam = {op: opdef(op).family for op in set(ops)}
    assert not [op for op, f in fam.items() if f == "float"], fam
    assert [op for op, f in fam.items() if f == "boundary"] == [] or \
        {"QuantizeLinear", "DequantizeLinear"} >= {op for op, f in fam.items() if f == "boundary"}
    for need in ("Shiftmax", "ShiftGELU", "ILayerNorm", "ResizeNearest", "QMatMul"):
        assert need in ops, f"{need} missing from {sorted(set(ops))}"
    for n in g.nodes:
        if n.op == "ShiftGELU":  # λ-ShiftGELU: the sigmoid's argument is clipped at ±λ
            assert -(2**31) < int(n.attrs["clip_min"]) < 0 < int(n.attrs["clip_max"]) < 2**31 - 1
    # the model is >= 3.8x smaller than the float ONNX (integer parameters)
    ratio = MODEL.stat().st_size / int(bundle.manifest["parameter_bytes"])
    assert ratio >= 3.8, ratio


def test_integer_model_agrees_with_float_on_held_out_scenes(seg_bundle: Path) -> None:
    images, labels = sdk.vision.cached_scenes(6, 1, "test", 64)
    x = sdk.vision.normalize_batch(images)
    f = sdk.Session(MODEL, backend="onnxruntime")
    q = sdk.Session(seg_bundle)
    agree, acc_f, acc_q = [], [], []
    for xi, lab in zip(x, labels):
        pf = f.run({"x": xi[None]})["logits"][0].argmax(0)
        pq = q.run({"x": xi[None]})["logits"][0].argmax(0)
        agree.append((pf == pq).mean())
        acc_f.append((pf == lab).mean())
        acc_q.append((pq == lab).mean())
    assert np.mean(agree) > 0.9, agree
    assert np.mean(acc_q) > np.mean(acc_f) - 0.03
    assert np.mean(acc_f) > 0.5  # the model has learnt something beyond chance


def test_pixels_to_labels_in_integers_equals_the_float_io_path(seg_bundle: Path) -> None:
    """The demo's integer path (uint8 pixels → table → int8 input, int8 logits, integer
    argmax) gives the labels the float-I/O session gives after dequantizing."""
    from sdk.vision.segment import Segmenter

    ints = Segmenter(seg_bundle)
    assert ints.integer_io and ints.pixel_table.dtype == np.int8
    floats = sdk.Session(seg_bundle)
    images, _ = sdk.vision.make_scenes(3, seed=4, split="test", size=90)
    for im in images:
        labels, _ = ints(im)
        want = floats.run({"x": sdk.vision.preprocess(im, 64)})["logits"][0].argmax(0)
        assert np.array_equal(labels, want)


def test_demo_energy_is_the_profilers_headline(seg_bundle: Path) -> None:
    """The demo's "modelled energy" is what `edge profile` calls the energy per inference
    (active power x modelled time), not the per-layer op-count sum (which was 17x lower
    on mps2-an386 for the tiny model)."""
    from sdk.profile import profile_model
    from sdk.vision.segment import modelled_energy_uj

    for target in ("mps2-an386", "raspberry-pi-4"):
        rep = profile_model(seg_bundle, target, measure=False)
        uj = modelled_energy_uj(seg_bundle, target)
        assert uj == pytest.approx(rep.energy_per_inference_j * 1e6, rel=1e-12)
        assert uj == pytest.approx(rep.active_w * rep.inference_time_s * 1e6, rel=1e-9)
