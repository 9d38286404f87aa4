"""NaN/Inf in a float input is refused by Session.run and `edge run` (one line naming the
input and the count) unless allowed, in which case it is reported."""

import numpy as np
import onnx
import pytest

from sdk import Session
from sdk.cli.demo_cmd import build_demo_cnn, synthetic_images
from sdk.cli.main import main
from sdk.errors import InputError, NonFiniteInputWarning


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nan")
    onnx.save(build_demo_cnn(), d / "cnn.onnx")
    np.savez(d / "calib.npz", x=synthetic_images(16, seed=1))
    x = synthetic_images(1, seed=9)[0].copy()
    x.flat[[0, 5, 7]] = np.nan
    x.flat[9] = np.inf
    np.savez(d / "nan.npz", x=x)
    assert main(["compile", str(d / "cnn.onnx"), "--calib", str(d / "calib.npz"),
                 "-o", str(d / "cnn.edge")]) == 0
    return d


@pytest.mark.parametrize("model", ["cnn.onnx", "cnn.edge"])
def test_session_refuses_nonfinite_input(files, model):
    sess = Session(str(files / model))
    x = np.load(files / "nan.npz")["x"]
    with pytest.raises(InputError, match=r"input 'x' holds 3 NaN and 1 Inf") as e:
        sess.run({"x": x})
    assert "\n" not in str(e.value)
    with pytest.warns(NonFiniteInputWarning, match="3 NaN and 1 Inf"):
        sess.run({"x": x}, allow_nonfinite=True)
    clean = np.nan_to_num(x, nan=0.0, posinf=0.0)
    assert all(np.isfinite(v).all() for v in sess.run({"x": clean}).values())


@pytest.mark.parametrize("model", ["cnn.onnx", "cnn.edge"])
def test_edge_run_exits_nonzero_on_nan(files, capsys, model):
    rc = main(["run", str(files / model), "-i", str(files / "nan.npz"),
               "-o", str(files / "out.npz")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and "3 NaN" in lines[0] and "'x'" in lines[0], err
    rc = main(["run", str(files / model), "-i", str(files / "nan.npz"), "--allow-nonfinite"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning: input 'x' holds 3 NaN and 1 Inf" in err
