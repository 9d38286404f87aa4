"""Bundle integrity: what load_bundle refuses, by name and before reading or allocating.

Each case here was measured on the loader before it was hardened: an extra part named
``../../../../etc/hostname`` with a correct hash was accepted; a 300 MB weights.bin where the
manifest says a few kilobytes was read in full; a corrupted deflate stream raised zlib.error
(and `edge inspect` printed a traceback); absurd shapes and quantization numbers raised
OverflowError; wrong JSON types raised AttributeError / TypeError / KeyError."""

import hashlib
import io
import json
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import sdk
from sdk.backends.sample_graphs import fc_graph, step_graph
from sdk.cli.main import main
from sdk.compile.bundle import load_bundle
from sdk.errors import ModelFormatError


@pytest.fixture(scope="module")
def bundle_bytes():
    return sdk.Bundle.from_graphs({"fc": fc_graph(), "step": step_graph()}).to_bytes()


def _entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _write(path, entries, rehash=True, manifest_edit=None):
    """A bundle zip of ``entries``; with ``rehash`` the manifest's part hashes agree with
    the parts (so only the check under test can refuse it)."""
    entries = list(entries)
    if rehash:
        i = [n for n, _ in entries].index("manifest.json")
        m = json.loads(entries[i][1])
        m["parts"] = {n: hashlib.sha256(b).hexdigest() for n, b in entries
                      if n != "manifest.json"}
        if manifest_edit:
            manifest_edit(m)
        entries[i] = ("manifest.json", json.dumps(m).encode())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in entries:
            z.writestr(n, b)
    return path


def _edit_json(entries, part, edit):
    out = []
    for n, b in entries:
        if n == part:
            doc = json.loads(b)
            edit(doc)
            b = json.dumps(doc).encode()
        out.append((n, b))
    return out


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_the_clean_bundle_loads_and_runs(bundle_bytes, tmp_path):
    p = tmp_path / "ok.edge"
    p.write_bytes(bundle_bytes)
    b = load_bundle(p)
    assert b.entry_names == ["fc", "step"]


@pytest.mark.parametrize("name", ["../../../../etc/hostname", "/etc/hostname",
                                  "entries\\fc\\graph.json", "entries/../graph.json"])
def test_a_traversal_part_with_a_correct_hash_is_refused_by_name(bundle_bytes, tmp_path, name):
    entries = _entries(bundle_bytes) + [(name, b"pwned\n")]
    p = _write(tmp_path / "t.edge", entries)  # the extra part's hash is in the manifest
    with pytest.raises(ModelFormatError) as e:
        load_bundle(p)
    msg = _one_line(e)
    assert repr(name) in msg and "unsafe name" in msg
    assert "checksum" not in msg


def test_an_unknown_part_with_a_correct_hash_is_refused_by_name(bundle_bytes, tmp_path):
    p = _write(tmp_path / "u.edge", _entries(bundle_bytes) + [("extra.bin", b"\0" * 64)])
    with pytest.raises(ModelFormatError, match="unknown part 'extra.bin'"):
        load_bundle(p)


def test_a_traversal_entry_name_is_refused_as_a_name_not_a_checksum(bundle_bytes, tmp_path):
    def rename(m):
        m["entries"][1]["name"] = "../../x"
    entries = _edit_json(_entries(bundle_bytes), "manifest.json", rename)
    with pytest.raises(ModelFormatError) as e:
        load_bundle(_write(tmp_path / "n.edge", entries))
    msg = _one_line(e)
    assert "entries[1].name" in msg and "checksum" not in msg


def test_oversized_weights_are_refused_by_name_before_they_are_read(bundle_bytes, tmp_path):
    entries = _entries(bundle_bytes)
    weights = dict(entries)["weights.bin"]
    manifest = json.loads(dict(entries)["manifest.json"])
    assert manifest["weight_store_bytes"] == len(weights)
    big = 300 * 1024 * 1024
    h = hashlib.sha256(weights)
    zeros = b"\0" * (1 << 20)
    for _ in range((big - len(weights)) // len(zeros)):
        h.update(zeros)
    manifest["parts"]["weights.bin"] = h.hexdigest()  # a correct hash, a wrong size
    p = tmp_path / "big.edge"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest))
        for n, b in entries:
            if n == "weights.bin":
                with z.open(n, "w", force_zip64=True) as f:
                    f.write(weights)
                    for _ in range((big - len(weights)) // len(zeros)):
                        f.write(zeros)
            elif n != "manifest.json":
                z.writestr(n, b)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ModelFormatError) as e:
            load_bundle(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    msg = _one_line(e)
    assert "'weights.bin'" in msg and f"{len(weights):,}" in msg
    assert elapsed < 2.0, f"took {elapsed:.1f} s: the part was read"
    assert peak < 32 * 1024 * 1024, f"peak {peak:,} bytes: the part was read"


def _zlib_corrupted(data: bytes, part: str) -> bytes:
    """``data`` with one byte of ``part``'s deflate stream changed so that zlib itself fails
    (not just the CRC)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(part)
    off = info.header_offset
    n, e = struct.unpack("<HH", data[off + 26:off + 30])
    start = off + 30 + n + e
    for i in range(start, start + info.compress_size):
        for flip in (0xFF, 0x80, 0x01):
            b = bytearray(data)
            b[i] ^= flip
            try:
                with zipfile.ZipFile(io.BytesIO(bytes(b))) as z:
                    z.read(part)
            except zlib.error:
                return bytes(b)
            except zipfile.BadZipFile:
                continue
    raise AssertionError("no byte change made zlib fail")


@pytest.mark.parametrize("part", ["graph.json", "manifest.json", "weights.bin"])
def test_a_zlib_corrupted_part_is_an_sdk_error_naming_it(bundle_bytes, tmp_path, part):
    p = tmp_path / "z.edge"
    p.write_bytes(_zlib_corrupted(bundle_bytes, part))
    with pytest.raises(ModelFormatError) as e:
        load_bundle(p)
    assert repr(part) in _one_line(e)


def test_edge_inspect_on_a_bit_flipped_bundle_is_one_line(bundle_bytes, tmp_path, capsys):
    p = tmp_path / "flip.edge"
    p.write_bytes(_zlib_corrupted(bundle_bytes, "graph.json"))
    rc = main(["inspect", str(p)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "graph.json" in lines[0], err


def _graph_edit(bundle_bytes, tmp_path, edit, part="graph.json"):
    if part == "manifest.json":  # edited after the hashes are recomputed
        return _write(tmp_path / "g.edge", _entries(bundle_bytes), manifest_edit=edit)
    return _write(tmp_path / "g.edge", _edit_json(_entries(bundle_bytes), part, edit))


def _tensor(doc, constant: bool):
    return next(t for t in doc["tensors"] if (t.get("data") is not None) == constant)


@pytest.mark.parametrize("case", ["inf_dim", "huge_dims", "negative_dim", "huge_zero_point",
                                  "inf_scale_list", "huge_state_capacity"])
def test_absurd_shapes_and_numbers_are_refused_naming_part_and_field(bundle_bytes, tmp_path,
                                                                      case):
    def edit(doc):
        act, const = _tensor(doc, False), _tensor(doc, True)
        if case == "inf_dim":
            act["shape"] = [float("inf")]
        elif case == "huge_dims":
            const["shape"] = [2**40, 2**40]
        elif case == "negative_dim":
            const["shape"] = [-3, 4]
        elif case == "huge_zero_point":
            const["quant"] = {"scale": 0.5, "zero_point": 2**40, "axis": None}
        elif case == "inf_scale_list":
            const["quant"] = {"scale": [10**400], "zero_point": [0], "axis": 0}
        else:
            doc["state"] = [{"input": doc["inputs"][0], "output": doc["outputs"][0],
                             "kind": "kv_cache", "capacity": 10**30, "position": "p"}]
    with pytest.raises(ModelFormatError) as e:
        load_bundle(_graph_edit(bundle_bytes, tmp_path, edit))
    assert "graph.json" in _one_line(e)


@pytest.mark.parametrize("part,edit,field", [
    ("manifest.json", lambda m: m.update(parts=[]), "parts"),
    ("manifest.json", lambda m: m.update(inputs="x"), "inputs"),
    ("manifest.json", lambda m: m["entries"][0].update(inputs=[{"name": 3}]), "name"),
    ("manifest.json", lambda m: m["entries"][0].pop("outputs"), "outputs"),
    ("manifest.json", lambda m: m["inputs"][0].pop("shape"), "shape"),
    ("manifest.json", lambda m: m.update(weight_store_bytes="12"), "weight_store_bytes"),
    ("manifest.json", lambda m: m.update(format_version=[3]), "format version"),
    ("graph.json", lambda g: g.update(tensors={"a": 1}), "tensors"),
    ("graph.json", lambda g: g["nodes"][0].update(inputs=5), "inputs"),
    ("graph.json", lambda g: g["nodes"][0].update(attrs=[1, 2]), "attrs"),
    ("graph.json", lambda g: g["nodes"][0].pop("op"), "op"),
    ("graph.json", lambda g: g["tensors"][0].update(dtype=7), "dtype"),
    ("graph.json", lambda g: _tensor(g, True)["data"].update(offset="0"), "offset"),
    ("graph.json", lambda g: _tensor(g, True).update(quant=[1]), "quant"),
    ("graph.json", lambda g: g.update(state=[3]), "state"),
    ("graph.json", lambda g: g.update(metadata=[]), "metadata"),
    ("memory_plan.json", lambda p: p.update(tensors=3), "memory_plan.json"),
    ("memory_plan.json", lambda p: p.update(alignment=0), "memory_plan.json"),
    ("graph.json", lambda g: g["nodes"][0]["attrs"].update(
        {next(iter(g["nodes"][0]["attrs"])): {"x": [1]}}), "node"),
])
def test_wrong_json_types_are_one_line_model_format_errors(bundle_bytes, tmp_path, part, edit,
                                                           field):
    with pytest.raises(ModelFormatError) as e:
        load_bundle(_graph_edit(bundle_bytes, tmp_path, edit, part))
    msg = _one_line(e)
    assert part in msg or "format version" in msg
    assert field in msg


def test_declared_constant_bytes_must_match_its_shape(bundle_bytes, tmp_path):
    def edit(doc):
        t = _tensor(doc, True)
        t["shape"] = [10**6, 10**6]  # 10**12 elements said to sit in a few bytes
    with pytest.raises(ModelFormatError, match=r"nbytes|limit"):
        load_bundle(_graph_edit(bundle_bytes, tmp_path, edit))


def test_a_valid_bundle_still_runs_after_the_checks(bundle_bytes, tmp_path):
    p = tmp_path / "ok.edge"
    p.write_bytes(bundle_bytes)
    b = load_bundle(p)
    g = b.entry("fc")
    x = np.zeros(g.tensor("x").shape, np.int8)
    assert set(b.run({"x": x}, entry="fc")) == {"y"}
