"""Bundle format 3: several entries over one weight store, per-entry plans, checks."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import sdk
from sdk.compile.bundle import load_bundle
from sdk.errors import InputError, ModelFormatError
from sdk.graph import Graph, QuantParams, StateDecl, Tensor


def _fc_graph(name: str, w: np.ndarray, n_in: int = 8) -> Graph:
    """x float [1, n_in] -> QuantizeLinear -> QFullyConnected(w) -> DequantizeLinear -> y."""
    g = Graph(name)
    q = QuantParams(np.float32(0.05), np.int32(0))
    g.add_tensor(Tensor("x", "float32", (1, n_in)))
    g.add_tensor(Tensor("x_q", "int8", (1, n_in), q))
    g.add_constant("w", w.astype(np.int8))
    g.add_tensor(Tensor("y_q", "int8", (1, w.shape[0]), q))
    g.add_tensor(Tensor("y", "float32", (1, w.shape[0])))
    g.add_node("QuantizeLinear", ["x"], ["x_q"], scale=0.05, zero_point=0, dtype="int8")
    g.add_node("QFullyConnected", ["x_q", "w", ""], ["y_q"], x_zp=0, m0=1 << 30, shift=-3,
               out_zp=0, dtype="int8")
    g.add_node("DequantizeLinear", ["y_q"], ["y"], scale=0.05, zero_point=0)
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def _zip_parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_same_name_same_bytes_is_stored_once_other_bytes_twice(tmp_path):
    w = np.random.default_rng(0).integers(-20, 21, (8, 8))
    shared = sdk.Bundle.from_graphs({"a": _fc_graph("a", w), "b": _fc_graph("b", w)})
    other = sdk.Bundle.from_graphs({"a": _fc_graph("a", w), "b": _fc_graph("b", w[::-1])})
    ws = len(_zip_parts(shared.to_bytes())["weights.bin"])
    wo = len(_zip_parts(other.to_bytes())["weights.bin"])
    assert ws == 64 and wo == 128
    loaded = load_bundle(other.save(tmp_path / "o.edge"))
    assert np.array_equal(loaded.entry("b").tensor("w").data, w[::-1])
    x = np.linspace(-1, 1, 8, dtype=np.float32)[None]
    assert not np.array_equal(loaded.run({"x": x}, entry="a")["y"],
                              loaded.run({"x": x}, entry="b")["y"])
    assert np.array_equal(loaded.run({"x": x}, entry="b")["y"], other.run({"x": x}, entry="b")["y"])


def test_each_entry_has_its_own_plan_and_manifest_entry(tmp_path):
    w = np.ones((8, 8))
    b = sdk.Bundle.from_graphs({"small": _fc_graph("s", w[:2]), "big": _fc_graph("b", w)})
    m = json.loads(_zip_parts(b.to_bytes())["manifest.json"])
    assert m["main_entry"] == "small" and m["inputs"] == m["entries"][0]["inputs"]
    assert [e["graph_part"] for e in m["entries"]] == ["graph.json", "entries/big/graph.json"]
    assert m["entries"][1]["outputs"][0]["shape"] == [1, 8]
    loaded = load_bundle(b.save(tmp_path / "e.edge"))
    assert set(loaded.plans) == {"small", "big"}
    assert all(p is not None for p in loaded.plans.values())


def test_state_declaration_round_trips_and_is_checked():
    g = _fc_graph("s", np.eye(8))
    with pytest.raises(sdk.GraphError, match="'h' is not a graph input"):
        g.declare_state(StateDecl("h", "y"))
    with pytest.raises(sdk.GraphError, match="needs a capacity"):
        StateDecl("x", "y", "kv_cache")
    d = StateDecl("x", "y", "kv_cache", 4, "pos", "int8", QuantParams(np.float32(0.5), 3))
    assert StateDecl.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_bad_entry_names_and_missing_entry_list_are_refused(tmp_path):
    g = _fc_graph("s", np.eye(8))
    with pytest.raises(InputError, match="entry name"):
        sdk.Bundle.from_graphs({"a/b": g})
    parts = _zip_parts(sdk.Bundle.from_graph(g).to_bytes())
    m = json.loads(parts.pop("manifest.json"))
    del m["entries"]
    with zipfile.ZipFile(tmp_path / "x.edge", "w") as z:
        z.writestr("manifest.json", json.dumps(m))
        for n, data in parts.items():
            z.writestr(n, data)
    with pytest.raises(ModelFormatError, match="lists no entries; recompile"):
        load_bundle(tmp_path / "x.edge")


def test_edge_inspect_lists_the_entries_and_shows_the_one_asked_for(tmp_path, capsys):
    from sdk.cli.main import main

    w = np.random.default_rng(1).integers(-20, 21, (8, 8))
    path = sdk.Bundle.from_graphs({"prefill": _fc_graph("prefill", w),
                                   "step": _fc_graph("step", w[:4])}).save(tmp_path / "m.edge")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "*entry prefill: x -> y; 64 MACs" in out and " entry step: x -> y; 32 MACs" in out
    assert main(["inspect", str(path), "--entry", "step", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["entry"] == "step" and report["total_macs"] == 32
    assert [r["macs"] for r in report["nodes"] if r["op"] == "QFullyConnected"] == [32]
    assert main(["inspect", str(path), "--entry", "decode"]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "decode" in err[0] and "prefill" in err[0]
