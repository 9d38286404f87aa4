"""Early exit end to end on the committed digit classifier (samples/exits, real scikit-learn
digits): `edge compile --exits` calibrates the thresholds on the calibration split, the
held-out test split checks the saving and the accuracy, the NumPy spec and Numba take the
same exit, bad options are one line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sdk.backends.onnxruntime import cpu_check
from sdk.cli.main import main
from sdk.compile.bundle import load_bundle
from sdk.errors import InputError, ModelFormatError
from sdk.exits import ExitPlan, argmax_int
from sdk.exits.calibrate import integer_outputs
from sdk.runtime.early_exit import EarlyExitSession

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "exits"
ONNX = SAMPLES / "digits_exits.onnx"
CALIB = SAMPLES / "digits_calib.npz"   # exit thresholds
QUANT = SAMPLES / "digits_quant.npz"   # quantization ranges (its first 64 images)
TEST = SAMPLES / "digits_test.npz"


def _compile(tmp: Path, name: str, *extra: str) -> tuple[int, Path]:
    out = tmp / name
    rc = main(["compile", str(ONNX), "--calib", str(QUANT), "-o", str(out), *extra])
    return rc, out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exits")
    rc, with_exits = _compile(tmp, "digits.edge", "--exits", str(CALIB),
                              "--max-accuracy-drop", "0.5")
    assert rc == 0
    rc, plain = _compile(tmp, "plain.edge")
    assert rc == 0
    return with_exits, plain


@pytest.fixture(scope="module")
def test_split():
    with np.load(TEST) as z:
        return z["x"], z["label"]


def test_held_out_digits_save_40_percent_macs_within_half_a_point(bundles, test_split):
    sess = EarlyExitSession(bundles[0], compiled=False)  # the same bits; no JIT wait here
    x, y = test_split
    hits = hits_full = 0
    macs = []
    for xi, yi in zip(x, y):
        r, f = sess.run({"x": xi[None]}), sess.run_full({"x": xi[None]})
        hits += r.label == yi
        hits_full += f.label == yi
        macs.append(r.macs)
        assert r.outputs[r.exit_name].shape == (1, 10)
    acc, acc_full = 100 * hits / len(y), 100 * hits_full / len(y)
    saved = 1 - np.mean(macs) / sess.plan.full_macs
    assert saved >= 0.40, saved
    assert acc >= acc_full - 0.5, (acc, acc_full)
    cal = sess.plan.calibration
    assert cal["samples"] == 360 and cal["max_accuracy_drop"] == 0.5
    assert cal["chosen"]["accuracy"] >= cal["accuracy_full"] - 0.5


def test_numpy_spec_and_numba_take_the_same_exit_at_and_beside_the_threshold(bundles,
                                                                            test_split):
    x, _ = test_split
    fast = EarlyExitSession(bundles[0], fast=True)
    ref = EarlyExitSession(bundles[0], fast=False)
    for xi in x[:40]:
        a, b = fast.run({"x": xi[None]}), ref.run({"x": xi[None]})
        assert (a.exit, a.label, a.scores) == (b.exit, b.label, b.scores)
    # thresholds put exactly at one input's exit-1 score: it fires; one above: it does not
    s = fast.run({"x": x[0][None]}).scores[0]
    never = 1 << 30
    for impl in (True, False):
        at = EarlyExitSession(bundles[0], fast=impl, thresholds=[s, never])
        above = EarlyExitSession(bundles[0], fast=impl, thresholds=[s + 1, never])
        assert at.run({"x": x[0][None]}).exit == 0
        assert above.run({"x": x[0][None]}).exit == 2


def test_a_bundle_without_exits_is_unaffected(bundles, test_split):
    with_exits, plain = (load_bundle(p) for p in bundles)
    assert "exits" not in plain.manifest and plain.entry_names == ["main"]
    assert with_exits.entry_names == ["main", "stage_1", "stage_2", "stage_3"]
    assert ExitPlan.of(plain) is None
    x = test_split[0][:5]
    for xi in x:  # the main graph of the exits bundle is the plain model
        a, b = plain.run({"x": xi[None]}), with_exits.run({"x": xi[None]})
        assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="no exits; compile it with"):
        EarlyExitSession(bundles[1])
    # the stages share the main graph's weights: the weight store did not grow
    sizes = [len(zipfile.ZipFile(p).read("weights.bin")) for p in bundles]
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("drop", ["-1", "abc", "101", "nan"])
def test_a_bad_max_accuracy_drop_is_one_line_and_writes_nothing(tmp_path, capsys, drop):
    rc, out = _compile(tmp_path, "bad.edge", "--exits", str(CALIB), "--max-accuracy-drop", drop)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and not out.exists()
    assert len(err) == 1 and "--max-accuracy-drop" in err[0] and "[0, 100]" in err[0]


def test_exit_options_without_exits_are_refused(tmp_path, capsys):
    rc, out = _compile(tmp_path, "x.edge", "--max-accuracy-drop", "0.5")
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and not out.exists() and len(err) == 1 and "needs --exits" in err[0]


def test_a_calibration_set_that_cannot_reach_the_drop_says_what_was_achievable(
        bundles, test_split, tmp_path, capsys):
    # held-out samples on which both early exits disagree with the full model, labelled with
    # the full model's answer: any early exit loses a whole sample
    x, _ = test_split
    b = load_bundle(bundles[0])
    q = integer_outputs(b, {"x": x}, ["exit_1_q", "exit_2_q", "exit_3_q"])
    a = [argmax_int(v) for v in q]
    hard = np.flatnonzero((a[0] != a[2]) & (a[1] != a[2]))
    assert len(hard) >= 3
    np.savez(tmp_path / "hard.npz", x=x[hard], label=a[2][hard].astype(np.int64))
    rc, out = _compile(tmp_path, "hard.edge", "--exits", str(tmp_path / "hard.npz"),
                       "--max-accuracy-drop", "0.5")
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and not out.exists() and len(err) == 1
    pct = 100 / len(hard)
    assert f"the smallest drop that saves compute is {pct:.2f} points" in err[0], err[0]
    # unlabelled calibration data
    np.savez(tmp_path / "nolabel.npz", x=x[:20])
    rc, _ = _compile(tmp_path, "n.edge", "--exits", str(tmp_path / "nolabel.npz"))
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and len(err) == 1 and "no 'label' array" in err[0]


def test_a_malformed_exit_plan_is_refused_on_load(bundles, tmp_path):
    src = zipfile.ZipFile(bundles[0])
    m = json.loads(src.read("manifest.json"))
    m["exits"]["exits"][0]["threshold"] = "4"
    with zipfile.ZipFile(tmp_path / "bad.edge", "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        for n in src.namelist():
            if n != "manifest.json":
                z.writestr(n, src.read(n))
    with pytest.raises(ModelFormatError, match=r"exits.exits\[0\].threshold"):
        load_bundle(tmp_path / "bad.edge")


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_ort_and_litert_run_each_stage_as_its_own_graph(bundles, test_split, backend):
    pytest.importorskip("onnxruntime" if backend == "onnxruntime" else "ai_edge_litert")
    x, _y = test_split
    ref = EarlyExitSession(bundles[0])
    sess = EarlyExitSession(bundles[0], backend=backend)
    # where ORT's integer GEMM saturates (x86 AVX2 without VNNI), its backend leaves the GEMMs
    # to the SDK's exact kernels and says so; everywhere else nothing falls back
    hazard = cpu_check.integer_gemm_hazard() if backend == "onnxruntime" else None
    for st in sess.stages:  # every node of every stage entry on the backend, no fallback
        assert st.plan.backend == backend
        assert all(a.backend == backend
                   or (hazard is not None and a.op in cpu_check.GEMM_OPS and hazard in a.reason)
                   for a in st.plan.assignments), str(st.plan)
    agree = 0
    for xi in x[:60]:
        a, b = sess.run({"x": xi[None]}), ref.run({"x": xi[None]})
        agree += (a.exit, a.label) == (b.exit, b.label)
        # the backends' integer kernels round within a unit: scores within 2 integer steps
        assert all(abs(p - q) <= 2 for p, q in zip(a.scores, b.scores)), (a.scores, b.scores)
    assert agree >= 58
    full = sess.run_full({"x": x[0][None]})
    assert full.exit == 2 and full.macs == sess.plan.full_macs


def test_edge_profile_shows_the_curve_and_the_expected_cost(bundles, tmp_path, capsys):
    assert main(["profile", str(bundles[0]), "--target", "laptop", "--no-run", "--plot",
                 str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "early exit (margin; curve from 360 held-out calibration samples)" in out
    assert "<- chosen" in out and "expected per inference at the chosen point" in out
    plan = ExitPlan.of(load_bundle(bundles[0]))
    assert f"{plan.calibration['chosen']['mean_macs']:.0f} MACs" in out
    assert (tmp_path / "p-exits.png").stat().st_size > 1000
    assert main(["profile", str(bundles[1]), "--target", "laptop", "--no-run"]) == 0
    assert "early exit" not in capsys.readouterr().out


@pytest.mark.parametrize("field, value", [
    ("stages", [{"a": 1}]), ("input", 3), ("full_macs", True), ("calibration", "x"),
    ("rule", "fastest"), ("gate", None)])
def test_malformed_exit_fields_are_one_line_format_errors(bundles, tmp_path, field, value):
    src = zipfile.ZipFile(bundles[0])
    m = json.loads(src.read("manifest.json"))
    m["exits"][field] = value
    if field == "gate":
        m["exits"]["rule"] = "gate"
    with zipfile.ZipFile(tmp_path / "bad.edge", "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        for n in src.namelist():
            if n != "manifest.json":
                z.writestr(n, src.read(n))
    with pytest.raises(ModelFormatError, match=f"exits.{field}") as err:
        load_bundle(tmp_path / "bad.edge")
    assert "\n" not in str(err.value)
