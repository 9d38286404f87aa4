"""tools/kws_average.py: checkpoint averaging ("model soup") of fine-tunes from one start;
the committed soup (the stream model's start) is the mean of its two committed sources."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk.models import LMUFormerWeights, build_step_onnx

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "samples" / "kws" / "models"
sys.path.insert(0, str(ROOT / "tools"))


def test_average_is_the_elementwise_mean_and_writes_npz_onnx_json(tmp_path):
    import kws_average

    base = LMUFormerWeights.load(MODELS / "kws_lmuformer_nonspiking.npz")
    rng = np.random.default_rng(0)
    moved = LMUFormerWeights(base.config, {
        k: v if k in kws_average.FIXED else (v + rng.normal(0, 0.1, v.shape)).astype(np.float32)
        for k, v in base.weights.items()})
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    base.save(a)
    moved.save(b)
    (a.with_suffix(".json")).write_text(json.dumps({"command": "python tools/train_kws.py A"}))
    out = tmp_path / "soup" / "avg.npz"
    assert kws_average.main([str(a), str(b), "--out", str(out), "--no-eval"]) == 0
    got = LMUFormerWeights.load(out)
    assert got.config == base.config
    for k, v in base.weights.items():
        want = v if k in kws_average.FIXED else (v.astype(np.float64) + moved.weights[k]) / 2
        np.testing.assert_allclose(got.weights[k], want, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(got.weights["w_1"], base.weights["w_1"])
    assert out.with_suffix(".onnx").read_bytes() == build_step_onnx(got, batch=1).SerializeToString()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["parameters"] == base.parameter_count()
    assert [s["path"] for s in report["averaged_from"]] == [str(a), str(b)]
    assert report["averaged_from"][0]["command"] == "python tools/train_kws.py A"
    assert "command" not in report["averaged_from"][1]  # b has no report beside it
    assert report["command"].startswith("python tools/kws_average.py ")


def test_weights_give_the_weighted_mean_and_are_reported(tmp_path):
    import kws_average

    base = LMUFormerWeights.load(MODELS / "kws_lmuformer_nonspiking.npz")
    rng = np.random.default_rng(1)
    moved = [LMUFormerWeights(base.config, {
        k: v if k in kws_average.FIXED else (v + rng.normal(0, 0.1, v.shape)).astype(np.float32)
        for k, v in base.weights.items()}) for _ in range(2)]
    paths = [tmp_path / f"{n}.npz" for n in "abc"]
    for m, p in zip([base, *moved], paths):
        m.save(p)
    out = tmp_path / "w.npz"
    mix = [0.5, 0.3, 0.2]
    assert kws_average.main([*map(str, paths), "--out", str(out), "--weights",
                             *map(str, mix), "--no-eval"]) == 0
    got = LMUFormerWeights.load(out)
    for k, v in base.weights.items():
        want = v if k in kws_average.FIXED else sum(
            w * m.weights[k].astype(np.float64) for w, m in zip(mix, [base, *moved]))
        np.testing.assert_allclose(got.weights[k], want, rtol=1e-6, atol=1e-7)
    # the weights matter: not the plain mean
    plain = kws_average.average([base, *moved], list(map(str, paths)))
    assert not np.allclose(got.weights["w_1"], plain.weights["w_1"])
    report = json.loads(out.with_suffix(".json").read_text())
    assert [s["weight"] for s in report["averaged_from"]] == mix
    assert "--weights 0.5 0.3 0.2" in report["command"]


def test_the_committed_soup_is_the_mean_of_its_sources():
    """``candidates/kws_stream_sA`` = mean(f2, h2), the twelfth session's stream model and the
    thirteenth's ``--init``: its report names both sources by hash, and averaging the committed
    candidates gives its weights again, bit for bit."""
    import hashlib

    import kws_average

    soup = MODELS / "candidates" / "kws_stream_sA.npz"
    report = json.loads(soup.with_suffix(".json").read_text())
    paths = [ROOT / s["path"] for s in report["averaged_from"]]
    assert [p.name for p in paths] == ["kws_stream_f2.npz", "kws_stream_h2.npz"]
    for p, s in zip(paths, report["averaged_from"]):
        assert hashlib.sha256(p.read_bytes()).hexdigest() == s["sha256"]
        assert s["command"].startswith("python tools/train_kws.py ")
    again = kws_average.average([LMUFormerWeights.load(p) for p in paths],
                                [str(p) for p in paths])
    committed = LMUFormerWeights.load(soup)
    assert again.config == committed.config
    for k, v in committed.weights.items():
        np.testing.assert_array_equal(again.weights[k], v)
    # the committed stream model was fine-tuned from it (the thirteenth session's k1)
    stream = json.loads((MODELS / "kws_lmuformer_stream.json").read_text())
    assert "--init samples/kws/models/kws_lmuformer_stream.npz" in stream["command"]
    assert stream["config"] == report["config"]
    tuned = LMUFormerWeights.load(MODELS / "kws_lmuformer_stream.npz")
    for k in kws_average.FIXED:  # what a fine-tune does not change
        np.testing.assert_array_equal(tuned.weights[k], committed.weights[k])


def test_average_refuses_what_is_not_one_lineage_in_one_line(tmp_path, capsys):
    import kws_average

    clip, stream = MODELS / "kws_lmuformer_nonspiking.npz", MODELS / "kws_lmuformer_stream.npz"
    out = tmp_path / "x.npz"
    cases = [([str(clip), str(stream)], "average checkpoints of one architecture"),
             ([str(clip)], "give two or more checkpoints"),
             ([str(clip), str(clip), "--out", str(clip)], "is one of the sources"),
             ([str(clip), str(tmp_path / "none.npz")], "no checkpoint"),
             ([str(clip), str(clip), "--weights", "1"], "give one weight per checkpoint"),
             ([str(clip), str(clip), "--weights", "0.7", "0.7"], "positive weights that sum to 1"),
             ([str(clip), str(clip), "--weights", "1.5", "-0.5"],
              "positive weights that sum to 1"),
             ([str(clip), str(clip), "--weights", "nan", "0.5"], "positive weights that sum to 1")]
    # same architecture, another input normalization (trained from another start)
    base = LMUFormerWeights.load(clip)
    other = LMUFormerWeights(base.config, {**base.weights,
                                           "in_mean": base.weights["in_mean"] + 0.5})
    other.save(tmp_path / "other.npz")
    cases.append(([str(clip), str(tmp_path / "other.npz")], "do not share a start"))
    # not checkpoints: the step graph, an .npz without a config
    np.savez(tmp_path / "bare.npz", w_o=np.zeros((12, 64), np.float32))
    cases += [([str(clip), str(clip.with_suffix(".onnx"))],
               "is not an LMUFormer checkpoint (not a .npz archive)"),
              ([str(clip), str(tmp_path / "bare.npz")], "holds no config")]
    for args, message in cases:
        if "--out" not in args:
            args = [*args, "--out", str(out)]
        with pytest.raises(SystemExit) as e:
            kws_average.main([*args, "--no-eval"])
        assert message in str(e.value) and "\n" not in str(e.value)
        assert not out.exists()
