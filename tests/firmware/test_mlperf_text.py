"""The firmware also speaks the MLPerf Tiny runner's text protocol on the same link."""

from __future__ import annotations

import numpy as np

from firmware_bridge.image import pack_image
from firmware_bridge.mlperf import MlperfLink
from firmware_bridge.session import DeviceModel

from .models import reference, small_cnn


def test_name_and_profile(device):
    link = MlperfLink(device.port)
    assert link.command("name") == ["m-name-[edge-fw]"]
    lines = link.command("profile")
    assert lines[0] == "m-profile-[ULPMark for tinyML Firmware V0.0.1]"
    assert lines[1] == f"m-model-[{device.hello().board}]"


def test_db_load_and_infer_match_the_reference(device):
    graph = small_cnn(41)
    DeviceModel(device, pack_image(graph))
    x = np.random.default_rng(5).integers(-128, 128, (1, 2, 8, 8)).astype(np.int8)
    link = MlperfLink(device.port)
    lines = link.load_input(x.tobytes())
    assert lines[0] == "m-[Expecting 128 bytes]"
    assert lines[-1] == "m-load-done"
    results = link.infer(runs=3, warmup=1)
    assert np.array_equal(results, reference(graph, x).ravel())
    assert link.command("results")[0] == f"m-results-[{','.join(map(str, results))}]"


def test_unknown_command_is_an_error_line_and_binary_still_works(device):
    link = MlperfLink(device.port)
    assert link.command("fly") == ["e-[Unknown command: fly]"]
    assert device.hello().firmware_version == "1.0"
