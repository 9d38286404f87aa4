"""`edge profile` on a model declaring a huge input shape: one line naming the tensor, its
bytes and the limit, non-zero exit, before any array is allocated (it was a 224 GiB
_ArrayMemoryError traceback)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from sdk.cli.main import main
from sdk.errors import TargetError
from sdk.frontends.onnx_import import load_onnx
from sdk.graph.ir import Graph, Tensor
from sdk.profile.profiler import check_host_sizes, profile_graph


def _huge(path, shape=(1, 3, 100000, 100000)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "huge", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _one_line(err: str) -> str:
    assert "Traceback" not in err and "MemoryError" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("shape", [(1, 3, 100000, 100000), (1, 3, 1000000, 1000000)])
def test_profile_huge_declared_shape_is_one_line(tmp_path, capsys, shape):
    model = _huge(tmp_path / "huge.onnx", shape)
    rc = main(["profile", str(model)])
    err = capsys.readouterr().err
    assert rc != 0
    line = _one_line(err)
    n = 1
    for d in shape:
        n *= d
    assert "'x'" in line, line
    # the ONNX importer may refuse the shape first (its own element limit); else the profiler
    assert (f"{n * 8:,} bytes" in line and "limit" in line and "--no-run" in line) or (
        "elements" in line and "at most" in line), line


def _huge_graph(shape=(1, 3, 100000, 100000)) -> Graph:
    """The same model built in the IR directly (no importer limit in the way)."""
    g = Graph("huge")
    g.add_tensor(Tensor("x", "float32", shape))
    g.add_tensor(Tensor("y", "float32", shape))
    g.add_node("Relu", ["x"], ["y"], name="relu")
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_profile_no_run_is_one_line_too(tmp_path, capsys):
    model = _huge(tmp_path / "huge.onnx")
    rc = main(["profile", str(model), "--no-run"])
    err = capsys.readouterr().err
    assert rc != 0
    _one_line(err)


def test_check_host_sizes_names_the_tensor_over_the_limit(tmp_path):
    graph = load_onnx(_huge(tmp_path / "small.onnx", (1, 4, 8, 8)))
    check_host_sizes(graph)                      # 2 KiB: fine
    check_host_sizes(graph, generated_inputs=False, limit=1500)      # x, y: 1,024 B each
    with pytest.raises(TargetError, match=r"tensor 'x' \[1, 4, 8, 8\] float32 needs 1,024 bytes"
                       r".*limit of 1,000 bytes"):
        check_host_sizes(graph, generated_inputs=False, limit=1000)
    with pytest.raises(TargetError, match="'x'.*2,048 bytes.*float64"):
        check_host_sizes(graph, generated_inputs=True, limit=1500)


@pytest.mark.parametrize("target", ["laptop", "stm32h7"])
def test_profile_graph_raises_before_allocating(target):
    with pytest.raises(TargetError, match=r"tensor 'x' \[1, 3, 100000, 100000\] float32 needs "
                                          r"240,000,000,000 bytes.*limit of [\d,]+ bytes"):
        profile_graph(_huge_graph(), target, runs=1)
