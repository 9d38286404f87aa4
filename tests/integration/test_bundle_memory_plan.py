"""The static arena plan travels in the .edge bundle: stored at compile time, verified and
loaded back, usable as-is to run the model in one buffer; older bundles still load."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from small_cnn import build_small_cnn, images

import sdk
from sdk import ModelFormatError, compile_model, load_bundle, plan_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "profile"))
from arena_executor import run_in_arena  # the profile tests' one-buffer executor

PLAN_PART = "memory_plan.json"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan")
    onnx.save(build_small_cnn(), d / "cnn.onnx")
    bundle = compile_model(d / "cnn.onnx", {"x": images(32, seed=1)})
    return bundle, bundle.save(d / "cnn.edge")


def _rewrite(src: Path, dst: Path, edit_manifest=None, edit_part=None, drop=()) -> Path:
    """Copy a bundle zip: ``edit_part(name, bytes)`` rewrites parts, ``edit_manifest(dict)``
    the manifest (after the part checksums were recomputed), ``drop`` removes parts."""
    with zipfile.ZipFile(src) as zin:
        parts = {n: zin.read(n) for n in zin.namelist() if n != "manifest.json"}
        manifest = json.loads(zin.read("manifest.json"))
    parts = {n: (edit_part(n, b) if edit_part else b) for n, b in parts.items() if n not in drop}

    manifest["parts"] = {n: hashlib.sha256(b).hexdigest() for n, b in parts.items()}
    if edit_manifest:
        edit_manifest(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        for n, b in parts.items():
            z.writestr(n, b)
    dst.write_bytes(buf.getvalue())
    return dst


def test_plan_is_stored_as_a_checksummed_part_and_summarised_in_the_manifest(compiled):
    bundle, path = compiled
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        stored = json.loads(z.read(PLAN_PART))
    assert manifest["format_version"] >= 2 and PLAN_PART in manifest["parts"]
    assert stored["arena_bytes"] == manifest["memory"]["peak_arena_bytes"] \
        == bundle.memory_plan.arena_bytes
    assert manifest["memory"]["flash_bytes"] == stored["weight_bytes"] + stored["attr_bytes"]


def test_loaded_plan_equals_the_compiled_one_and_a_fresh_plan(compiled):
    bundle, path = compiled
    loaded = load_bundle(path)
    assert loaded.memory_plan.to_json() == bundle.memory_plan.to_json()
    assert loaded.memory_plan.to_json() == plan_memory(loaded.graph).to_json()


def test_model_runs_inside_one_arena_laid_out_by_the_loaded_plan(compiled):
    _, path = compiled
    loaded = load_bundle(path)
    x = images(1, seed=3)[0]
    # the arena starts as random bytes: a tensor overwritten while live would change the result
    planned = run_in_arena(loaded.graph, loaded.memory_plan, {"x": x}, seed=5)
    assert np.array_equal(planned["logits"], loaded.run({"x": x}, fast=False)["logits"])


def test_format_1_bundle_still_loads_and_gets_its_plan_computed(compiled, tmp_path):
    bundle, path = compiled

    def to_v1(m):
        m["format_version"] = 1
        del m["memory"]

    old = _rewrite(path, tmp_path / "v1.edge", edit_manifest=to_v1, drop=(PLAN_PART,))
    loaded = load_bundle(old)
    assert loaded.memory_plan.arena_bytes == bundle.memory_plan.arena_bytes
    assert "format-1" in loaded.manifest["memory"]["note"]
    x = images(1, seed=4)[0]
    assert np.array_equal(loaded.run({"x": x})["logits"], bundle.run({"x": x})["logits"])


def test_unknown_format_version_is_a_clear_format_error(compiled, tmp_path):
    _, path = compiled
    bad = _rewrite(path, tmp_path / "v9.edge", edit_manifest=lambda m: m.update(format_version=9))
    with pytest.raises(ModelFormatError, match="format version 9.*reads versions 1, 2"):
        load_bundle(bad)


def test_tampered_plan_part_fails_its_checksum(compiled, tmp_path):
    _, path = compiled
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp_path / "t.edge", "w") as zout:
        for n in zin.namelist():
            data = zin.read(n)
            if n == PLAN_PART:
                data = data.replace(b'"arena_bytes": ', b'"arena_bytes": 1')
            zout.writestr(n, data)
    with pytest.raises(ModelFormatError, match="checksum mismatch in part 'memory_plan.json'"):
        load_bundle(tmp_path / "t.edge")


def test_plan_of_another_graph_is_refused(compiled, tmp_path):
    _, path = compiled

    def shorter_order(name, data):
        if name != PLAN_PART:
            return data
        doc = json.loads(data)
        doc["order"] = doc["order"][:-1]
        return json.dumps(doc).encode()

    bad = _rewrite(path, tmp_path / "other.edge", edit_part=shorter_order)
    with pytest.raises(ModelFormatError, match="memory_plan.json orders .* recompile"):
        load_bundle(bad)


def test_overlapping_plan_is_refused(compiled, tmp_path):
    _, path = compiled

    def overlap(name, data):
        if name != PLAN_PART:
            return data
        doc = json.loads(data)
        for t in doc["tensors"]:
            t["offset"] = 0  # every tensor at offset 0
        return json.dumps(doc).encode()

    bad = _rewrite(path, tmp_path / "overlap.edge", edit_part=overlap)
    with pytest.raises(ModelFormatError, match="memory_plan.json is malformed .*overlap"):
        load_bundle(bad)


def test_dynamic_batch_is_planned_for_batch_one(compiled, tmp_path):
    bundle, path = compiled
    graph = load_bundle(path).graph
    for t in graph.tensors.values():
        if not t.is_constant:
            t.shape = (-1, *t.shape[1:])
    dynamic = sdk.Bundle.from_graph(graph)
    assert "planned as 1" in dynamic.manifest["memory"]["note"]
    assert dynamic.memory_plan.arena_bytes == bundle.memory_plan.arena_bytes
    loaded = load_bundle(dynamic.save(tmp_path / "dyn.edge"))
    assert loaded.memory_plan.to_json() == dynamic.memory_plan.to_json()


def test_public_api_exposes_the_plan(compiled):
    bundle, _ = compiled
    assert isinstance(bundle.memory_plan, sdk.MemoryPlan)
    assert sdk.MemoryPlan.from_json(bundle.memory_plan.to_json()).arena_bytes \
        == bundle.memory_plan.arena_bytes


def test_bundle_built_by_hand_is_planned_like_a_compiled_one(compiled):
    bundle, _ = compiled
    manifest = {k: v for k, v in bundle.manifest.items() if k != "memory"}
    again = sdk.Bundle(bundle.graph, manifest)
    assert again.memory_plan.to_json() == bundle.memory_plan.to_json()
    assert again.manifest["memory"] == bundle.manifest["memory"]


def test_graph_without_shapes_is_stored_without_a_plan_and_says_why(compiled, tmp_path):
    from sdk.cli.inspect_cmd import bundle_report, memory_line

    _, path = compiled
    graph = load_bundle(path).graph
    for t in graph.tensors.values():
        if not t.is_constant:
            t.shape = None
    unplanned = sdk.Bundle.from_graph(graph)
    assert unplanned.memory_plan is None
    loaded = load_bundle(unplanned.save(tmp_path / "noshape.edge"))
    assert loaded.memory_plan is None and loaded.manifest["memory"]["planned"] is False
    line = memory_line(bundle_report(loaded)["memory"])
    assert line.startswith("memory: no static arena plan") and "'x' has no shape" in line
