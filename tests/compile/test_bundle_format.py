"""The .edge bundle: round trip, manifest, and one-line errors for damaged files."""

import io
import json
import zipfile

import numpy as np
import pytest

from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.compile import compile_model, load_bundle
from sdk.compile.bundle import FORMAT_VERSION
from sdk.errors import CalibrationError, InputError, ModelFormatError


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import onnx

    d = tmp_path_factory.mktemp("bundle")
    onnx.save(build_demo_cnn(), d / "cnn.onnx")
    bundle = compile_model(d / "cnn.onnx", {"x": synthetic_images(16, seed=1)})
    path = bundle.save(d / "cnn.edge")
    return bundle, path


def _rewrite(src, dst, edit):
    """Copy a bundle zip, passing each part's bytes through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))
    return dst


def test_round_trip_gives_bit_identical_integer_outputs(compiled):
    bundle, path = compiled
    loaded = load_bundle(path)
    x = synthetic_images(3, seed=5)
    for xi in x:
        a = bundle.run_quantized({"x": xi})["logits"]
        b = loaded.run_quantized({"x": xi})["logits"]
        assert a.dtype == np.int8 and np.array_equal(a, b)
    assert [n.op for n in loaded.graph.nodes] == [n.op for n in bundle.graph.nodes]
    for t in bundle.graph.initializers():
        u = loaded.graph.tensor(t.name)
        assert u.dtype == t.dtype and np.array_equal(u.data, t.data) and u.quant == t.quant


def test_manifest_describes_the_model(compiled):
    _, path = compiled
    with zipfile.ZipFile(path) as z:
        m = json.loads(z.read("manifest.json"))
    assert m["format_version"] == FORMAT_VERSION and m["model_name"] == "demo_cnn"
    assert m["inputs"][0]["name"] == "x" and m["inputs"][0]["shape"] == [1, 3, 32, 32]
    assert m["inputs"][0]["quant_dtype"] == "int8" and m["inputs"][0]["quant"]["scale"] > 0
    assert m["outputs"][0]["name"] == "logits"
    assert m["ops"][0] == "QuantizeLinear" and m["ops"][-1] == "DequantizeLinear"
    assert set(m["parts"]) == {"graph.json", "weights.bin", "memory_plan.json"}
    assert all(len(h) == 64 for h in m["parts"].values())
    # 3×3×3×16 + 3×3×16 + 16×16 + 3×3×16×32 + 32×10 int8 weights + int32 biases
    w = 3 * 3 * 3 * 16 + 3 * 3 * 16 + 16 * 16 + 3 * 3 * 16 * 32 + 32 * 10
    assert m["parameter_bytes"] == w + 4 * (16 + 16 + 16 + 32 + 10)
    # conv 3→16 s2 on 32×32 → 16×16; max pool → 8×8; depthwise 3×3; pointwise 16→16;
    # conv 16→32 3×3; FC 32→10 (pooling and the residual Add count no MACs)
    macs = (16 * 16 * 16 * 27 + 8 * 8 * 16 * 9 + 8 * 8 * 16 * 16 + 8 * 8 * 32 * 144
            + 32 * 10)
    assert m["macs"] == macs


def test_checksum_mismatch_is_a_format_error(compiled, tmp_path):
    _, path = compiled

    def flip(name, data):
        if name == "weights.bin":
            data = bytearray(data)
            data[len(data) // 2] ^= 0x55
        return bytes(data)

    bad = _rewrite(path, tmp_path / "tampered.edge", flip)  # valid zip, wrong SHA-256
    with pytest.raises(ModelFormatError, match="checksum mismatch in part 'weights.bin'"):
        load_bundle(bad)


def test_truncated_bundle_is_a_format_error(compiled, tmp_path):
    _, path = compiled
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        p = tmp_path / f"cut{cut}.edge"
        p.write_bytes(data[:cut])
        with pytest.raises(ModelFormatError, match="truncated|not a readable"):
            load_bundle(p)


def test_newer_format_version_is_refused(compiled, tmp_path):
    _, path = compiled

    def bump(name, data):
        if name == "manifest.json":
            m = json.loads(data)
            m["format_version"] = FORMAT_VERSION + 1
            return json.dumps(m).encode()
        return data

    with pytest.raises(ModelFormatError, match=f"format version {FORMAT_VERSION + 1}"):
        load_bundle(_rewrite(path, tmp_path / "v2.edge", bump))


def test_missing_part_and_foreign_zip_are_format_errors(tmp_path, compiled):
    _, path = compiled
    foreign = tmp_path / "foreign.edge"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelFormatError, match="manifest.json"):
        load_bundle(foreign)
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp_path / "nograph.edge", "w") as zout:
        for n in zin.namelist():
            if n != "graph.json":
                zout.writestr(n, zin.read(n))
    with pytest.raises(ModelFormatError, match="no 'graph.json' part"):
        load_bundle(tmp_path / "nograph.edge")


def test_bundle_checks_its_inputs(compiled):
    bundle, _ = compiled
    with pytest.raises(InputError, match="expects \\[1, 3, 32, 32\\]"):
        bundle.run({"x": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(InputError, match="missing \\['x'\\]"):
        bundle.run({"image": np.zeros((1, 3, 32, 32), np.float32)})


def test_float_model_without_calibration_data_is_refused(tmp_path):
    import onnx

    onnx.save(build_demo_cnn(), tmp_path / "m.onnx")
    with pytest.raises(CalibrationError, match="needs calibration data"):
        compile_model(tmp_path / "m.onnx", None)


def _parts(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def test_bundle_bytes_are_deterministic(compiled, tmp_path):
    import onnx

    _, path = compiled
    saved = _parts(path.read_bytes())
    # a second, independent compile of the same model and calibration data gives the same
    # parts (zip timestamps aside) ...
    onnx.save(build_demo_cnn(), tmp_path / "cnn.onnx")
    again = compile_model(tmp_path / "cnn.onnx", {"x": synthetic_images(16, seed=1)})
    assert _parts(again.to_bytes()) == saved
    # ... and a loaded bundle written back out is byte-identical part for part
    assert _parts(load_bundle(path).to_bytes()) == saved
    assert set(saved) == {"manifest.json", "graph.json", "weights.bin", "memory_plan.json"}


def test_two_inputs_two_outputs_through_compile_and_cli(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sdk.cli.main import main

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((6, 5)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["a", "w"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["pos"]),
             helper.make_node("Mul", ["sum", "b"], ["prod"])]
    g = helper.make_graph(nodes, "two_io",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 6]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 5])],
                          [helper.make_tensor_value_info("pos", TensorProto.FLOAT, [2, 5]),
                           helper.make_tensor_value_info("prod", TensorProto.FLOAT, [2, 5])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "two.onnx")
    calib = {"a": rng.standard_normal((16, 2, 6)).astype(np.float32),
             "b": rng.standard_normal((16, 2, 5)).astype(np.float32)}
    np.savez(tmp_path / "calib.npz", **calib)
    assert main(["compile", str(tmp_path / "two.onnx"), "--calib", str(tmp_path / "calib.npz"),
                 "-o", str(tmp_path / "two.edge")]) == 0
    bundle = load_bundle(tmp_path / "two.edge")
    assert [i["name"] for i in bundle.inputs] == ["a", "b"]
    assert [o["name"] for o in bundle.outputs] == ["pos", "prod"]
    feeds = {"a": rng.standard_normal((2, 6)).astype(np.float32),
             "b": rng.standard_normal((2, 5)).astype(np.float32)}
    np.savez(tmp_path / "in.npz", **feeds)
    assert main(["run", str(tmp_path / "two.edge"), "-i", str(tmp_path / "in.npz"),
                 "-o", str(tmp_path / "out.npz")]) == 0
    capsys.readouterr()
    out = np.load(tmp_path / "out.npz")
    a, b, wf = feeds["a"].astype(np.float64), feeds["b"].astype(np.float64), \
        numpy_helper.to_array(w).astype(np.float64)
    s = a @ wf + b
    # Tolerance: the worst case of the roundings the integer graph makes, propagated from
    # the grids stored in the bundle (no saturation: the feeds lie inside the input grids).
    # Each requantization rounds by ≤ ½ step plus the high-mul's own ≤ 2^-6 step.
    g = bundle.graph
    step = {n: float(g.tensor(n).quant.scale) for n in ("a_q", "b_q", "h", "sum", "prod_q")}
    sw = g.tensor("w_nk_q").quant.scale.astype(np.float64)               # per output column
    half = 0.5 + 2.0**-6
    for name, x in (("a_q", a), ("b_q", b)):
        q = g.tensor(name).quant
        assert np.all(np.abs(np.round(x / float(q.scale)) + int(q.zero_point) + 0.5) <= 127.5), name
    e_h = (step["a_q"] / 2 * (np.abs(wf) + sw / 2).sum(0) + np.abs(a) @ np.ones_like(wf) * sw / 2
           + half * step["h"])
    e_sum = e_h + step["b_q"] / 2 + half * step["sum"]
    assert np.all(np.abs(out["pos"] - np.maximum(s, 0)) <= e_sum)      # ReLU: 1-Lipschitz
    e_prod = e_sum * np.abs(b) + np.abs(s) * step["b_q"] / 2 + e_sum * step["b_q"] / 2 \
        + half * step["prod_q"]
    assert np.all(np.abs(out["prod"] - s * b) <= e_prod)
