"""A constant or all-zero calibration tensor is warned about by name; an all-zero calibration
set for a graph input is an error unless forced (API and `edge compile`)."""

import warnings

import numpy as np
import onnx
import pytest

from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.cli.main import main
from sdk.errors import CalibrationError, CalibrationWarning
from sdk.frontends.onnx_import import load_onnx
from sdk.quant import quantize
from sdk.quant.calibrate import allow_zero_calibration_inputs, calibrate


def test_all_zero_graph_input_is_an_error_unless_forced():
    g = load_onnx(build_demo_cnn())
    zeros = {"x": np.zeros((4, *synthetic_images(1, seed=0).shape[1:]), np.float32)}
    with pytest.raises(CalibrationError, match=r"input 'x' is all zero") as e:
        quantize(g, zeros)
    assert "\n" not in str(e.value)
    with allow_zero_calibration_inputs(), pytest.warns(CalibrationWarning, match="'x'"):
        quantize(g, zeros)
    with pytest.warns(CalibrationWarning, match=r"graph input 'x' is all zero"):
        calibrate(g, zeros, allow_zero_inputs=True)


def test_constant_tensor_warned_by_name():
    g = load_onnx(build_demo_cnn())
    const = {"x": np.full((4, *synthetic_images(1, seed=0).shape[1:]), 0.5, np.float32)}
    with pytest.warns(CalibrationWarning, match=r"graph input 'x' is the constant 0.5"):
        quantize(g, const)


def test_healthy_calibration_gives_no_warning():
    g = load_onnx(build_demo_cnn())
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        calibrate(g, {"x": synthetic_images(8, seed=1)})


def test_edge_compile_zero_calibration(tmp_path, capsys):
    onnx.save(build_demo_cnn(), tmp_path / "cnn.onnx")
    np.savez(tmp_path / "zero.npz", x=np.zeros_like(synthetic_images(4, seed=1)))
    args = ["compile", str(tmp_path / "cnn.onnx"), "--calib", str(tmp_path / "zero.npz"),
            "-o", str(tmp_path / "cnn.edge")]
    assert main(args) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "'x' is all zero" in err[0]
    assert main(args + ["--force-calibration"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith("warning: ") and "'x'" in ln for ln in err), err
