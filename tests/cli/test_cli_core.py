"""`edge compile | run | inspect | demo` through sdk.cli.main.main, and one-line errors."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    onnx.save(build_demo_cnn(), d / "cnn.onnx")
    np.savez(d / "calib.npz", x=synthetic_images(16, seed=1))
    x = synthetic_images(1, seed=9)[0]
    np.savez(d / "in.npz", x=x)
    np.save(d / "in.npy", x)
    assert main(["compile", str(d / "cnn.onnx"), "--calib", str(d / "calib.npz"),
                 "-o", str(d / "cnn.edge")]) == 0
    return d


def _edge(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line_error(rc, err):
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_compile_prints_a_summary_and_writes_the_bundle(files, capsys):
    rc, out, _ = _edge(capsys, "compile", files / "cnn.onnx", "--calib", files / "calib.npz",
                       "-o", files / "b16.edge", "--activation-bits", "16", "--observer", "mse",
                       "--per-tensor")
    assert rc == 0
    assert "compiled demo_cnn" in out and "MACs" in out and "wrote" in out
    with zipfile.ZipFile(files / "b16.edge") as z:
        m = json.loads(z.read("manifest.json"))
    assert m["inputs"][0]["quant_dtype"] == "int16"
    assert m["quantization"] == {"observer": "mse", "activation_bits": 16,
                                 "per_channel": False, "mixed_precision": True, "source": "onnx"}


def test_run_bundle_and_onnx_agree(files, capsys):
    rc, out, _ = _edge(capsys, "run", files / "cnn.edge", "--input", files / "in.npz",
                       "--output", files / "q.npz")
    assert rc == 0 and "integer kernels" in out
    rc, out, _ = _edge(capsys, "run", files / "cnn.onnx", "--input", files / "in.npy",
                       "--output", files / "f.npz")
    assert rc == 0 and "float reference" in out
    q, f = np.load(files / "q.npz")["logits"], np.load(files / "f.npz")["logits"]
    assert q.shape == f.shape == (1, 10) and q.dtype == np.float32
    cos = float(q.ravel() @ f.ravel() / np.linalg.norm(q) / np.linalg.norm(f))
    assert cos > 0.99


def test_inspect_table_and_json(files, capsys):
    rc, out, _ = _edge(capsys, "inspect", files / "cnn.edge")
    assert rc == 0 and "QConv2d" in out and "MACs" in out and "parameter bytes" in out
    rc, out, _ = _edge(capsys, "inspect", files / "cnn.edge", "--json")
    report = json.loads(out)
    assert report["total_macs"] == sum(r["macs"] for r in report["nodes"]) > 0
    conv = next(r for r in report["nodes"] if r["op"] == "QConv2d")
    assert conv["macs"] == 16 * 16 * 16 * 27 and conv["shape"] == [1, 16, 16, 16]


def test_demo_runs_end_to_end(capsys, tmp_path):
    rc, out, _ = _edge(capsys, "demo", "--runs", "3", "--out-dir", tmp_path)
    assert rc == 0
    cos = float(out.split("cosine ")[1].split(",")[0])
    assert cos >= 0.99 and "latency median" in out and "MACs" in out
    assert (tmp_path / "demo_cnn.edge").is_file()


def test_nan_calibration_data_is_one_line(files, capsys, tmp_path):
    bad = synthetic_images(4, seed=1)
    bad[2, 0, 1, 3, 3] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad)
    rc, _, err = _edge(capsys, "compile", files / "cnn.onnx", "--calib", tmp_path / "nan.npz",
                       "-o", tmp_path / "o.edge")
    line = _one_line_error(rc, err)
    assert "'x'" in line and "NaN" in line


def test_empty_calibration_data_is_one_line(files, capsys, tmp_path):
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 3, 32, 32), np.float32))
    rc, _, err = _edge(capsys, "compile", files / "cnn.onnx", "--calib", tmp_path / "empty.npz")
    assert "empty" in _one_line_error(rc, err)


def test_tampered_bundle_is_one_line(files, capsys, tmp_path):
    src = files / "cnn.edge"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp_path / "t.edge", "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            zout.writestr(n, data[:-1] + bytes([data[-1] ^ 1]) if n == "weights.bin" else data)
    rc, _, err = _edge(capsys, "run", tmp_path / "t.edge", "--input", files / "in.npz")
    assert "checksum mismatch" in _one_line_error(rc, err)
    rc, _, err = _edge(capsys, "inspect", tmp_path / "t.edge")
    assert "checksum mismatch" in _one_line_error(rc, err)


def test_truncated_bundle_is_one_line_in_a_subprocess(files, tmp_path):
    data = (files / "cnn.edge").read_bytes()
    (tmp_path / "cut.edge").write_bytes(data[: len(data) // 3])
    r = subprocess.run([sys.executable, "-m", "sdk.cli.main", "run", str(tmp_path / "cut.edge"),
                        "--input", str(files / "in.npz")], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, check=False)
    line = _one_line_error(r.returncode, r.stderr)
    assert "truncated" in line


def test_wrong_input_file_is_one_line(files, capsys, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    rc, _, err = _edge(capsys, "run", files / "cnn.edge", "--input", tmp_path / "junk.npz")
    assert "cannot read input file" in _one_line_error(rc, err)
    np.savez(tmp_path / "other.npz", image=np.zeros((1, 3, 32, 32), np.float32))
    rc, _, err = _edge(capsys, "run", files / "cnn.edge", "--input", tmp_path / "other.npz")
    assert "'x'" in _one_line_error(rc, err)


def test_every_core_command_has_help(capsys):
    for cmd in ("compile", "run", "inspect", "demo"):
        rc, out, _ = _edge(capsys, cmd, "--help")
        assert rc == 0 and "Usage:" in out
