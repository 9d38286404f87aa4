"""Calibration observers and calibration-data checks."""

import numpy as np
import pytest

from sdk.errors import CalibrationError
from sdk.graph import Graph, Tensor
from sdk.quant.calibrate import calibrate, check_calibration_data
from sdk.quant.observers import fake_quantize, make_observer, params_for_range


def _one_input_graph() -> Graph:
    g = Graph("relu")
    g.add_tensor(Tensor("x", "float32", (1, 4)))
    g.add_tensor(Tensor("y", "float32", (1, 4)))
    g.add_node("Relu", ["x"], ["y"])
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_minmax_covers_the_observed_extremes():
    obs = make_observer("minmax")
    obs.update(np.array([-1.5, 0.2, 3.0]))
    obs.update(np.array([2.0, -0.5]))
    assert obs.range("int8", False) == (-1.5, 3.0)


def test_percentile_clips_a_rare_outlier():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(-1, 1, 100_000), [50.0]])
    obs = make_observer("percentile")
    obs.update(v)
    lo, hi = obs.range("int8", False)
    assert hi < 2.0 and lo > -2.0


def test_mse_beats_minmax_on_long_tailed_data():
    rng = np.random.default_rng(1)
    v = rng.laplace(0, 1, 50_000).astype(np.float32)
    mse, mm = make_observer("mse"), make_observer("minmax")
    mse.update(v)
    mm.update(v)

    def err(obs):
        qp = params_for_range(*obs.range("int8", False), "int8", False)
        return float(np.mean((fake_quantize(v, qp, "int8") - v) ** 2))

    assert err(mse) < err(mm)


def test_zero_is_exactly_representable_and_symmetric_has_zero_point_zero():
    qp = params_for_range(0.3, 5.0, "int8", False)  # range widened to include 0
    assert fake_quantize(np.array([0.0], np.float32), qp, "int8")[0] == 0.0
    sym = params_for_range(-2.0, 7.0, "int16", True)
    assert int(sym.zero_point) == 0 and np.isclose(float(sym.scale), 7.0 / 32767)


def test_unknown_observer_is_a_calibration_error():
    with pytest.raises(CalibrationError, match="unknown calibration observer 'kl'"):
        make_observer("kl")


@pytest.mark.parametrize("bad, what", [
    (np.full((3, 1, 4), np.nan, np.float32), "NaN/inf"),
    (np.array([[[1.0, np.inf, 0, 0]]], np.float32), "NaN/inf"),
    (np.zeros((0, 1, 4), np.float32), "empty"),
])
def test_bad_calibration_data_names_the_input(bad, what):
    with pytest.raises(CalibrationError, match=f"input 'x'.*{what}|{what}.*'x'"):
        check_calibration_data(_one_input_graph(), {"x": bad})


def test_missing_calibration_input_is_named():
    with pytest.raises(CalibrationError, match=r"\['x'\]"):
        check_calibration_data(_one_input_graph(), {"image": np.zeros((2, 1, 4))})


def test_calibrate_observes_every_activation_per_sample_and_per_batch_row():
    g = _one_input_graph()
    data = np.array([[[-1.0, 2.0, 0.5, 0.0]], [[3.0, -4.0, 1.0, 0.0]]], np.float32)
    obs = calibrate(g, {"x": data})
    assert (obs["x"].lo, obs["x"].hi) == (-4.0, 3.0)
    assert (obs["y"].lo, obs["y"].hi) == (0.0, 3.0)
    rows = calibrate(g, {"x": data[:, 0, :]})  # samples as rows of the batch axis
    assert (rows["y"].lo, rows["y"].hi) == (0.0, 3.0)


def test_entropy_clips_a_long_tail_but_keeps_the_bulk():
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.normal(0, 1, 60_000), rng.normal(0, 1, 30) * 40]).astype(np.float32)
    obs = make_observer("entropy")
    obs.update(v)
    lo, hi = obs.range("int8", False)
    assert 2.5 < hi < 0.5 * v.max() and -0.5 * abs(v.min()) < lo < -2.5


def test_misshaped_calibration_samples_are_named():
    with pytest.raises(CalibrationError, match=r"input 'x' has samples of shape \(5,\)"):
        check_calibration_data(_one_input_graph(), {"x": np.zeros((3, 5), np.float32)})
