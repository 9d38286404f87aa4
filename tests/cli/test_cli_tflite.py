"""`edge compile | run | inspect | profile` take an int8 .tflite (written by sdk.write_tflite
from a sample integer graph); the result equals running the source bundle, bit for bit."""

import json

import numpy as np
import pytest

import sdk
from sdk.backends import sample_graphs as sg
from sdk.cli.main import main
from sdk.compile.bundle import Bundle, load_bundle


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_tflite")
    graph = sg.cnn_graph()
    Bundle.from_graph(graph).save(d / "src.edge")
    sdk.write_tflite(graph, d / "cnn.tflite")
    feeds = sg.random_feeds(graph, seed=3)
    # float inputs, as the CLI takes them: the dequantized values of the integer feeds
    q = graph.tensor("x").quant
    x = ((feeds["x"].astype(np.float32) - np.float32(q.zero_point))
         * np.float32(q.scale)).astype(np.float32)
    np.savez(d / "in.npz", x=x)
    return d


def _edge(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_compile_tflite_bundles_it_without_calibration(files, capsys):
    rc, out, err = _edge(capsys, "compile", files / "cnn.tflite", "-o", files / "t.edge")
    assert rc == 0, err
    assert "wrote" in out and "MACs" in out
    b, src = load_bundle(files / "t.edge"), load_bundle(files / "src.edge")
    assert [n.op for n in b.graph.nodes] == [n.op for n in src.graph.nodes]
    feeds = sg.random_feeds(src.graph, seed=5)
    want, got = src.run_quantized(feeds), b.run_quantized(feeds)
    for k in want:
        assert np.array_equal(np.asarray(want[k]), np.asarray(got[k])), k


def test_compile_tflite_refuses_calib_in_one_line(files, capsys):
    np.savez(files / "calib.npz", x=np.zeros((2, 1, 3, 16, 16), np.float32))
    rc, _, err = _edge(capsys, "compile", files / "cnn.tflite", "--calib", files / "calib.npz")
    assert rc != 0 and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err


def test_run_tflite_equals_the_source_bundle(files, capsys):
    rc, _, err = _edge(capsys, "run", files / "cnn.tflite", "--input", files / "in.npz",
                         "--output", files / "t_out.npz")
    assert rc == 0, err
    rc, _, err = _edge(capsys, "run", files / "src.edge", "--input", files / "in.npz",
                         "--output", files / "b_out.npz")
    assert rc == 0, err
    t, b = np.load(files / "t_out.npz"), np.load(files / "b_out.npz")
    assert sorted(t.files) == sorted(b.files) == ["logits"]
    for k in b.files:
        assert t[k].dtype == b[k].dtype and np.array_equal(t[k], b[k]), k


def test_inspect_tflite_matches_the_source_bundle(files, capsys):
    rc, out_t, err = _edge(capsys, "inspect", files / "cnn.tflite", "--json")
    assert rc == 0, err
    rc, out_b, err = _edge(capsys, "inspect", files / "src.edge", "--json")
    assert rc == 0, err
    t, b = json.loads(out_t), json.loads(out_b)
    assert [n["op"] for n in t["nodes"]] == [n["op"] for n in b["nodes"]]
    assert t["total_macs"] == b["total_macs"] and t["total_param_bytes"] == b["total_param_bytes"]


def test_profile_tflite(files, capsys):
    rc, _, err = _edge(capsys, "profile", files / "cnn.tflite", "--no-run", "--runs", "1",
                           "--json", files / "pt.json")
    assert rc == 0, err
    rc, _, err = _edge(capsys, "profile", files / "src.edge", "--no-run", "--runs", "1",
                           "--json", files / "pb.json")
    assert rc == 0, err
    t = json.loads((files / "pt.json").read_text())
    b = json.loads((files / "pb.json").read_text())
    for k in ("peak_arena_bytes", "weight_bytes", "flash_bytes", "totals", "fits"):
        assert t[k] == b[k], k
    assert [r.get("op") for r in t["rows"]] == [r.get("op") for r in b["rows"]]


def test_session_opens_a_tflite_path(files):
    graph = sg.cnn_graph()
    feeds = sg.random_feeds(graph, seed=7)
    got = sdk.Session(str(files / "cnn.tflite"), integer_io=True).run(feeds)
    want = sdk.Session(str(files / "src.edge"), integer_io=True).run(feeds)
    for k in want:
        assert np.array_equal(np.asarray(got[k]), np.asarray(want[k])), k


def test_missing_tflite_is_one_line(files, capsys):
    for cmd in ("compile", "inspect"):
        rc, _, err = _edge(capsys, cmd, files / "nope.tflite")
        assert rc != 0 and "Traceback" not in err, (cmd, err)
