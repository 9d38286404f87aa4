"""The committed keyword-spotting checkpoints: ONNX matches the checkpoint, and they hear words."""

import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sdk.audio import HOP_LENGTH, StreamingLogMel, logmel
from sdk.models import (
    LMUFormerWeights,
    initial_state,
    lmuformer_step,
    run_clip,
    running_mean_logits,
    state_shapes,
)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "samples" / "kws" / "models"
VARIANTS = ["nonspiking", "spiking", "spiking_wide"]
sys.path.insert(0, str(ROOT / "tools"))


def _checkpoint(variant: str) -> Path:
    path = MODELS / f"kws_lmuformer_{variant}.npz"
    if not path.is_file():
        pytest.skip(f"{path.name} not trained yet (tools/train_kws.py --variant "
                    f"{variant.split('_')[0]})")
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_committed_onnx_matches_the_checkpoint(variant):
    model = LMUFormerWeights.load(_checkpoint(variant))
    assert model.config.spiking == variant.startswith("spiking")
    assert model.parameter_count() < 300_000
    sess = ort.InferenceSession(str(MODELS / f"kws_lmuformer_{variant}.onnx"),
                                providers=["CPUExecutionProvider"])
    names = list(state_shapes(model.config))
    feats = np.random.default_rng(0).normal(20.0, 6.0, (40, model.config.n_mels))
    state_np = initial_state(model.config)
    state_ort = initial_state(model.config)
    for f in feats.astype(np.float32):
        logits, state_np, _ = lmuformer_step(model, f, state_np)
        out = sess.run(None, {"x": f[None], **{f"state_{n}": state_ort[n] for n in names}})
        state_ort = dict(zip(names, out[1:]))
        # float32 ONNX Runtime vs the NumPy model: the same tolerance as the zoo's own test
        # (tests/models/test_lmuformer.py); measured worst case here is ~3e-5
        np.testing.assert_allclose(out[0], logits, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def held_out_clips(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    import kws_dataset

    cfg = kws_dataset.DatasetConfig(seed=0, train_per_class=0, val_per_class=0,
                                    test_per_class=2)
    folder = kws_dataset.generate(tmp_path_factory.mktemp("kws"), cfg)
    return kws_dataset.load_split(folder, "test")


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpoint_recognizes_held_out_voices(variant, held_out_clips):
    model = LMUFormerWeights.load(_checkpoint(variant))
    pred = [running_mean_logits(run_clip(model, logmel(a) / 256.0))[-1].argmax()
            for a in held_out_clips["audio"]]
    correct = int(np.sum(np.array(pred) == held_out_clips["label"]))
    assert correct >= 20, f"{correct}/24 correct on held-out voices"


def test_hop_by_hop_stream_equals_the_offline_clip(held_out_clips):
    model = LMUFormerWeights.load(_checkpoint("spiking"))
    audio = held_out_clips["audio"][0]
    offline = run_clip(model, logmel(audio) / 256.0)
    front = StreamingLogMel()
    state = initial_state(model.config)
    rows = []
    for i in range(0, len(audio), HOP_LENGTH):
        frame = front.step(audio[i:i + HOP_LENGTH]) / 256.0
        logits, state, _ = lmuformer_step(model, frame, state)
        rows.append(logits[0])
    assert np.array_equal(np.stack(rows), offline)
