"""Keyword spotting exits over depth: the exit head after the LMU block of the committed
streaming LMUFormer (samples/exits/kws_depth_head.npz, tools/train_kws_exits.py). The step
graph with the head computes it from the MLP's input (float, checked against the NumPy
model); integer, the graph with a batch axis gives each stream the bits of the batch-1
graph; on the committed integer clip sums of the real validation / held-out-voice test clips
(samples/exits/kws_depth_sums.npz, written by tools/bench_exit.py --kws-only
--save-kws-depth) the calibrated margin threshold saves MACs within one point."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.exits.calibrate import choose, sweep
from sdk.exits.rules import margin_scores
from sdk.models import LMUFormerWeights, state_shapes
from sdk.models.lmuformer import initial_state, lmuformer_step, macs_per_frame
from sdk.ops.shapes import with_input_shapes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
SUMS = ROOT / "samples" / "exits" / "kws_depth_sums.npz"


@pytest.fixture(scope="module")
def model_and_head():
    import train_kws_exits

    model = LMUFormerWeights.load(train_kws_exits.MODEL)
    with np.load(train_kws_exits.HEAD) as z:
        head = {"w": z["w"], "b": z["b"]}
    return model, head, train_kws_exits.kws_exit_step_onnx


def test_exit_head_reads_the_mlp_input(model_and_head):
    model, head, build = model_and_head
    sess = sdk.Session(sdk.load_onnx(build(model, head)))
    rng = np.random.default_rng(0)
    state = initial_state(model.config)
    feeds_state = {f"state_{k}": v for k, v in state.items()}
    for _ in range(5):
        x = rng.normal(0, 2, (1, model.config.n_mels)).astype(np.float32)
        r = sess.run({"x": x, **feeds_state})
        logits, state, acts = lmuformer_step(model, x, state)
        want = acts["v_mix_in"] @ head["w"].T + head["b"]
        np.testing.assert_allclose(r["exit_logits"], want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(r["logits"], logits, rtol=1e-4, atol=1e-4)
        feeds_state = {f"state_{k}": r[f"state_{k}_next"] for k in state}


def test_batched_integer_graph_equals_batch_one(model_and_head):
    model, head, build = model_and_head
    rng = np.random.default_rng(1)
    clips = rng.normal(0, 2, (3, 6, model.config.n_mels)).astype(np.float32)
    from sdk.models import step_calibration_data

    graph = sdk.quantize(sdk.load_onnx(build(model, head)),
                         step_calibration_data(model, clips), observer="minmax")
    names = list(state_shapes(model.config))

    def stream(g, x):
        s = sdk.Session(g, integer_io=True)
        info = {i.name: i for i in s.inputs}
        st = {m: np.full(info[f"state_{m}"].shape, int(info[f"state_{m}"].quant.zero_point),
                         info[f"state_{m}"].dtype) for m in names}
        q = info["x"].quant
        out = []
        for t in range(x.shape[1]):
            xi = np.clip(np.rint(x[:, t] / np.float32(q.scale)) + int(q.zero_point), -128,
                         127).astype(np.int8)
            r = s.run(None, {"x": xi, **{f"state_{m}": st[m] for m in names}})
            st = {m: r[f"state_{m}_next"] for m in names}
            out.append(np.concatenate([r["logits"], r["exit_logits"]], 1))
        return np.stack(out, 1)

    shapes = {"x": [3, model.config.n_mels],
              **{f"state_{m}": [3, s[1]] for m, s in state_shapes(model.config).items()}}
    batched = stream(with_input_shapes(graph, shapes), clips)
    for i in range(3):
        assert np.array_equal(batched[i], stream(graph, clips[i:i + 1])[0])


def test_committed_clip_sums_save_macs_within_one_point():
    with np.load(SUMS) as z:
        ev, fv, yv = z["val_exit"], z["val_full"], z["val_y"]
        et, ft, yt = z["test_exit"], z["test_full"], z["test_y"]
    assert len(yv) == 1800 and len(yt) == 2400
    m = macs_per_frame(LMUFormerWeights.load(ROOT / "samples" / "kws" / "models" /
                                             "kws_lmuformer_nonspiking.npz").config)
    stage1 = m["embed"] + m["u"] + m["memory"] + m["lmu_in"] + m["head"]
    cum = [stage1, stage1 + m["mix_1"] + m["mix_2"] + m["head"]]
    full = sum(m.values())
    answers = np.stack([ev.argmax(1), fv.argmax(1)], 1)
    pts = sweep("margin", margin_scores(ev)[:, None].astype(np.int64), answers == yv[:, None],
                cum)
    pick = choose(pts, float((answers[:, 1] == yv).mean() * 100), full, 1.0, len(yv))
    fire = margin_scores(et) >= pick.thresholds[0]
    acc = (np.where(fire, et.argmax(1), ft.argmax(1)) == yt).mean() * 100
    acc_full = (ft.argmax(1) == yt).mean() * 100
    macs = np.where(fire, cum[0], cum[1]).mean()
    assert acc >= acc_full - 1.0
    assert macs < 0.85 * full  # at least 15% fewer MACs per hop on the held-out voices
