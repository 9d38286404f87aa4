"""`edge aot` (sdk.aot): a bundle's compiled program as a native module that `edge run` loads
without importing Numba; bit-equal to the interpreter (the NumPy specification's path); a
module for another bundle, CPU, Python or NumPy refused with one line, then the usual path."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdk import Session, aot
from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The demo CNN compiled, its module built beside it (one pycc build, ~10 s), a second
    bundle of the same graph calibrated differently, inputs."""
    import onnx

    d = tmp_path_factory.mktemp("aot")
    onnx.save(build_demo_cnn(), d / "cnn.onnx")
    for name, seed in (("calib", 1), ("calib2", 2)):
        np.savez(d / f"{name}.npz", x=synthetic_images(16, seed=seed))
    assert main(["compile", str(d / "cnn.onnx"), "--calib", str(d / "calib.npz"),
                 "-o", str(d / "cnn.edge")]) == 0
    assert main(["compile", str(d / "cnn.onnx"), "--calib", str(d / "calib2.npz"),
                 "-o", str(d / "other.edge")]) == 0
    assert main(["aot", str(d / "cnn.edge"), "--beside"]) == 0
    np.save(d / "in.npy", synthetic_images(1, seed=9)[0])
    return d


def _edge(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_edge_run_on_the_module_imports_no_numba_and_equals_the_interpreter(built):
    code = ("import sys\nfrom sdk.cli.main import main\n"
            f"rc = main(['run', {str(built / 'cnn.edge')!r}, '-i', {str(built / 'in.npy')!r},"
            f" '-o', {str(built / 'y_aot.npz')!r}])\n"
            "print(rc, sorted(m for m in ('numba', 'llvmlite', 'onnxruntime', 'sdk.ops.codegen')"
            " if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0 []", r.stdout
    assert "ahead-of-time module" in r.stdout and r.stderr == ""
    sess = Session(built / "cnn.edge", compiled=False)  # the interpreter: the reference
    want = sess.run({"x": np.load(built / "in.npy")})
    got = np.load(built / "y_aot.npz")
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k].view(np.uint32),
                                                          v.view(np.uint32)), k


def test_the_module_equals_the_interpreter_bit_for_bit_on_many_inputs(built):
    prog, why = aot.find(built / "cnn.edge")
    assert prog is not None and why is None
    sess = Session(built / "cnn.edge", compiled=False)
    rng = np.random.default_rng(3)
    xs = [synthetic_images(1, seed=s)[0] for s in range(8)]
    xs += [rng.normal(0, 50, xs[0].shape).astype(np.float32),  # saturates the input grid
           np.zeros_like(xs[0]), np.full_like(xs[0], -1e30)]
    for x in xs:
        got, want = prog.run({"x": x}), sess.run({"x": x})
        for k, v in want.items():
            assert np.array_equal(got[k].view(np.uint32), v.view(np.uint32)), k


def test_import_sdk_and_the_cli_import_no_numba():
    code = ("import sys, sdk, sdk.cli.main, sdk.aot\n"
            "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=False, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def _copy_with(built, tmp_path, edit=None, bundle="cnn.edge"):
    """``bundle`` in tmp_path with cnn.edge's module beside it, its manifest edited."""
    shutil.copy(built / bundle, tmp_path / "m.edge")
    shutil.copytree(aot.beside(built / "cnn.edge"), aot.beside(tmp_path / "m.edge"))
    if edit:
        mf = aot.beside(tmp_path / "m.edge") / "manifest.json"
        manifest = json.loads(mf.read_text())
        manifest.update(edit)
        mf.write_text(json.dumps(manifest))
    return tmp_path / "m.edge"


@pytest.mark.parametrize("edit, words", [
    (None, "another bundle"),
    ({"cpu_id": "0" * 16, "cpu_name": "Cortex-A76"}, "another CPU ('Cortex-A76'"),
    ({"numpy": "1.26.4"}, "NumPy 1.26.4"),
    ({"ext_suffix": ".cpython-312-aarch64-linux-gnu.so"}, "Python"),
    ({"format": 99}, "format 99"),
])
def test_a_mismatched_module_is_refused_in_one_line_and_the_usual_path_runs(
        built, tmp_path, capsys, edit, words):
    model = _copy_with(built, tmp_path, edit, "other.edge" if edit is None else "cnn.edge")
    rc, out, err = _edge(capsys, "run", model, "-i", built / "in.npy", "-o", tmp_path / "y.npz")
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("note: ahead-of-time module not used:")
    assert words in lines[0] and "edge aot" in lines[0], lines[0]
    assert "ahead-of-time module)" not in out and "(integer kernels)" in out
    want = Session(model, compiled=False).run({"x": np.load(built / "in.npy")})
    got = np.load(tmp_path / "y.npz")
    for k, v in want.items():
        assert np.array_equal(got[k].view(np.uint32), v.view(np.uint32)), k


def test_the_cache_directory_is_found(built, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copy(built / "cnn.edge", tmp_path / "c.edge")
    rc, out, err = _edge(capsys, "aot", tmp_path / "c.edge", "--check")
    assert rc != 0 and "no ahead-of-time module" in err and len(err.strip().splitlines()) == 1
    shutil.copytree(aot.beside(built / "cnn.edge"),
                    aot.cache_path(aot.bundle_sha256(tmp_path / "c.edge")))
    rc, out, err = _edge(capsys, "aot", tmp_path / "c.edge", "--check")
    assert rc == 0 and "valid:" in out, err
    rc, out, err = _edge(capsys, "run", tmp_path / "c.edge", "-i", built / "in.npy")
    assert rc == 0 and "ahead-of-time module" in out and err == "", err
    rc, out, err = _edge(capsys, "run", tmp_path / "c.edge", "-i", built / "in.npy", "--no-aot")
    assert rc == 0 and "ahead-of-time module" not in out


def test_inputs_the_module_does_not_take_give_the_sessions_answer(built, tmp_path, capsys):
    x = np.load(built / "in.npy")
    x64 = x.astype(np.float64)  # narrowed to float32 as on the usual path: same bits
    np.save(tmp_path / "x64.npy", x64)
    rc, out, err = _edge(capsys, "run", built / "cnn.edge", "-i", tmp_path / "x64.npy",
                         "-o", tmp_path / "y.npz")
    assert rc == 0 and "ahead-of-time module" in out, err
    want = Session(built / "cnn.edge", compiled=False).run({"x": x})
    assert all(np.array_equal(np.load(tmp_path / "y.npz")[k], v) for k, v in want.items())
    bad = {"nan": np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x)
           .astype(np.float32), "shape": x[:, :, :4]}
    for name, arr in bad.items():
        np.save(tmp_path / f"{name}.npy", arr)
        got = _edge(capsys, "run", built / "cnn.edge", "-i", tmp_path / f"{name}.npy")
        ref = _edge(capsys, "run", built / "cnn.edge", "-i", tmp_path / f"{name}.npy",
                    "--no-aot")
        assert got[0] != 0 and got == ref, (name, got, ref)


def test_a_module_that_does_not_load_is_refused_in_one_line(built, tmp_path, capsys):
    model = _copy_with(built, tmp_path)
    so = next(p for p in aot.beside(model).iterdir() if p.name.startswith("edge_aot_"))
    so.write_bytes(b"\x7fELF not a module")
    rc, out, err = _edge(capsys, "run", model, "-i", built / "in.npy")
    assert rc == 0 and "(integer kernels)" in out, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot load (ImportError" in lines[0], err


def test_edge_aot_refuses_what_is_not_a_bundle_in_one_line(built, tmp_path, capsys):
    for args in (["aot", built / "cnn.onnx"], ["aot", tmp_path / "missing.edge"],
                 ["aot", built / "cnn.edge", "--beside", "--out", tmp_path]):
        rc, _, err = _edge(capsys, *args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc != 0 and len(lines) == 1 and "Traceback" not in err, (args, err)
    assert not any(tmp_path.iterdir())  # nothing written


def test_edge_inspect_says_what_edge_run_does(built, tmp_path, capsys):
    rc, out, err = _edge(capsys, "inspect", built / "cnn.edge", "--json")
    assert rc == 0, err
    assert json.loads(out)["aot"] == {"module": str(aot.beside(built / "cnn.edge")),
                                      "refused": None}
    rc, out, err = _edge(capsys, "inspect", built / "cnn.edge")
    assert rc == 0 and f"edge run: ahead-of-time module {aot.beside(built / 'cnn.edge')}" in out
    model = _copy_with(built, tmp_path, {"numpy": "1.26.4"})
    rc, out, err = _edge(capsys, "inspect", model)
    assert rc == 0 and "edge run: no ahead-of-time module (" in out and "NumPy 1.26.4" in out
