"""Delegate discovery with real failure modes: each becomes a clear reason and a CPU fallback.

* a delegate library that does not exist (OSError from the loader);
* a real shared library, compiled here with gcc, whose ``tflite_plugin_create_delegate``
  returns NULL — what a delegate does when its device is absent (ValueError);
* a real shared library that exports no delegate entry point (AttributeError);
* the Edge TPU runtime, ``libedgetpu.so.1``, which this machine does not have.
"""

from __future__ import annotations

import ctypes.util
import shutil
import subprocess

import numpy as np
import pytest

from sdk.backends import sample_graphs as sg
from sdk.backends.litert import LiteRTBackend
from sdk.backends.litert.runtime import choose_delegate, load_external
from sdk.backends.partition import compile_for
from sdk.ops.interpreter import run_graph

NULL_DELEGATE_C = r"""
#include <stddef.h>
/* The external-delegate plugin ABI: returning NULL means "no delegate" (no device). */
void *tflite_plugin_create_delegate(char **keys, char **values, size_t n,
                                    void (*report_error)(const char *)) {
  (void)keys; (void)values; (void)n;
  if (report_error) report_error("edge-sdk test delegate: no device attached");
  return NULL;
}
void tflite_plugin_destroy_delegate(void *delegate) { (void)delegate; }
"""

NOT_A_DELEGATE_C = "int edge_sdk_answer(void) { return 42; }\n"


def _compile(tmp_path, source: str, name: str) -> str:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    c = tmp_path / f"{name}.c"
    c.write_text(source)
    so = tmp_path / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(c)], check=True)
    return str(so)


def _check_runs_on_cpu(delegates: list[str]) -> str:
    graph = sg.cnn_graph()
    feeds = sg.random_feeds(graph, seed=2)
    exe = compile_for(graph, LiteRTBackend(delegates=delegates), "laptop")
    got = exe.run(feeds)["logits"]
    want = run_graph(graph, feeds, fast=False)["logits"]
    assert np.abs(got.astype(int) - want).max() <= 1  # LiteRT rounding, see test_backends_agree
    return exe.parts[0].choice.describe()


def test_missing_library_falls_back_with_reason(tmp_path) -> None:
    missing = str(tmp_path / "libno_such_delegate.so")
    delegate, why = load_external(missing)
    assert delegate is None
    assert "cannot open delegate library" in why and "libno_such_delegate.so" in why
    text = _check_runs_on_cpu([missing, "cpu"])
    assert "skipped" in text and "'cpu'" in text


def test_null_returning_delegate_falls_back(tmp_path) -> None:
    so = _compile(tmp_path, NULL_DELEGATE_C, "null_delegate")
    delegate, why = load_external(so)
    assert delegate is None
    assert "created no delegate" in why and "device attached" in why
    choice = choose_delegate([so, "xnnpack"])
    assert choice.name == "xnnpack" and choice.skipped[0][0] == so
    _check_runs_on_cpu([so, "xnnpack"])


def test_library_without_entry_point_is_not_a_delegate(tmp_path) -> None:
    so = _compile(tmp_path, NOT_A_DELEGATE_C, "not_a_delegate")
    delegate, why = load_external(so)
    assert delegate is None
    assert "not a TFLite delegate library" in why
    _check_runs_on_cpu([so])


def test_edgetpu_absent_falls_back_to_next_delegate() -> None:
    if ctypes.util.find_library("edgetpu"):
        pytest.skip("an Edge TPU runtime is installed here; this test checks its absence")
    choice = choose_delegate(["edgetpu", "xnnpack", "cpu"])  # coral-dev-board's order
    assert choice.name == "xnnpack"
    assert choice.skipped[0][0] == "edgetpu" and "libedgetpu.so.1" in choice.skipped[0][1]


def test_other_backends_delegates_are_skipped_not_loaded() -> None:
    choice = choose_delegate(["hailo", "tensorrt"])
    assert choice.name == "cpu"
    assert [n for n, _ in choice.skipped] == ["hailo", "tensorrt"]
