"""A model with an op the importer cannot read AND an op the integer lowering cannot lower is
refused with both in one message, not in two rounds (fix one, then meet the other)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sdk.cli.main import main


def _model(with_importer_gap: bool) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("LRN", ["c"], ["n"], size=3)]       # imported, never lowered
    if with_importer_gap:
        nodes.append(helper.make_node("Hardmax", ["n"], ["y"], axis=1))   # not imported
    else:
        nodes.append(helper.make_node("Relu", ["n"], ["y"]))
    # a spelled-out op chain that preparation fuses away must NOT be reported
    graph = helper.make_graph(nodes, "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_importer_and_lowering_gaps_in_one_line(tmp_path, capsys):
    onnx.save(_model(True), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).standard_normal((4, 1, 4, 8, 8),
                                                                           ).astype(np.float32))
    rc = main(["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"),
               "-o", str(tmp_path / "m.edge")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and len(err) == 1, err
    assert "Hardmax" in err[0] and "LRN" in err[0]
    assert "Conv" not in err[0] and "Relu" not in err[0]
    assert not (tmp_path / "m.edge").exists()


def test_the_lowering_gap_alone_is_what_the_lowering_says(tmp_path, capsys):
    onnx.save(_model(False), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", x=np.ones((2, 1, 4, 8, 8), np.float32))
    rc = main(["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "c.npz"),
               "-o", str(tmp_path / "m.edge")])
    err = capsys.readouterr().err
    assert rc != 0 and "LRN" in err and "integer lowering" in err


def test_ops_that_preparation_fuses_away_are_not_reported(tmp_path, capsys):
    # a real torch export with spelled-out RMSNorm (Pow, ReduceMean, Sqrt, Div) and GELU (Erf):
    # with an importer gap added at its output, only the gap is named
    from pathlib import Path

    fx = Path(__file__).resolve().parents[1] / "fixtures" / "torch"
    m = onnx.load(fx / "rope_block.onnx")
    out = m.graph.output[0].name
    m.graph.node.append(helper.make_node("Hardmax", [out], ["hard"], axis=-1))
    m.graph.output[0].name = "hard"
    onnx.save(m, tmp_path / "m.onnx")
    rc = main(["compile", str(tmp_path / "m.onnx"), "--calib",
               str(fx / "rope_block_calib.npz"), "-o", str(tmp_path / "m.edge")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc != 0 and len(err) == 1, err
    assert "Hardmax" in err[0] and "lowering will also refuse" not in err[0]
