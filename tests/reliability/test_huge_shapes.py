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
    assert "'x'" in line and f"{n * 8:,} bytes" in line and "limit" in line, line
    assert "--no-run" in line


def test_profile_no_run_models_it_and_refuses_the_fit(tmp_path, capsys):
    model = _huge(tmp_path / "huge.onnx")
    rc = main(["profile", str(model), "--no-run"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "does not fit" in _one_line(err)


def test_check_host_sizes_names_the_tensor_over_the_limit(tmp_path):
    graph = load_onnx(_huge(tmp_path / "small.onnx", (1, 4, 8, 8)))
    check_host_sizes(graph)                      # 2 KiB: fine
    check_host_sizes(graph, generated_inputs=False, limit=1500)      # x, y: 1,024 B each
    with pytest.raises(TargetError, match=r"tensor 'x' \[1, 4, 8, 8\] float32 needs 1,024 bytes"
                       r".*limit of 1,000 bytes"):
        check_host_sizes(graph, generated_inputs=False, limit=1000)
    with pytest.raises(TargetError, match="'x'.*2,048 bytes.*float64"):
        check_host_sizes(graph, generated_inputs=True, limit=1500)


def test_profile_graph_raises_before_allocating(tmp_path):
    graph = load_onnx(_huge(tmp_path / "huge.onnx"))
    with pytest.raises(TargetError, match="'x'"):
        profile_graph(graph, "laptop", runs=1)
