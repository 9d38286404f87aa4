"""Delegate honesty: what the .tflite writer accepts, LiteRT can prepare and run.

* every op the writer emits (``SUPPORTED_OPS``), in int8 and int16 and with zero and non-zero
  zero points, either is refused by ``node_supported`` with a reason, or becomes a one-node
  model that LiteRT ``allocate_tensors`` and ``invoke`` (and agrees with the reference within
  1 LSB, the per-op tolerance of docs/backends.md);
* a delegate or runtime that fails at prepare or run time falls back to the SDK's kernels with
  a one-line warning and the plan says which part fell back and why (LiteRT and ONNX Runtime);
* a pre-LN transformer encoder compiled for ``raspberry-pi-4`` runs on LiteRT (it crashed in
  ``batch_matmul.cc`` before: an int8 BATCH_MATMUL with a non-zero RHS zero point).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from sdk.backends.reference import ReferenceBackend
from sdk.compile.tflite_writer import SUPPORTED_OPS, node_supported, write_tflite
from sdk.frontends import tflite_format as tf
from sdk.graph.ir import Graph, QuantParams, Tensor, qrange

litert = pytest.importorskip("ai_edge_litert.interpreter")

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "torch"


# ---------------------------------------------------------------------------------------------
# one-node graphs: (op, label) -> Graph, in the style of tests/ops/test_schema.py EXAMPLES


def _act(g: Graph, name: str, shape: tuple[int, ...], dtype: str, scale: float, zp: int) -> str:
    g.add_tensor(Tensor(name, dtype, shape, QuantParams(np.float32(scale), zp)))
    return name


def _zp(dtype: str, nonzero: bool, k: int = 0) -> int:
    return (3 + k if dtype == "int8" else 7 + k) * (1 if k % 2 == 0 else -1) if nonzero else 0


def _weights(g: Graph, name: str, shape: tuple[int, ...], rng: np.random.Generator,
             zp: int = 0) -> np.ndarray:
    w = rng.integers(-127, 128, shape).astype(np.int8)
    s = rng.uniform(0.002, 0.01, shape[0]).astype(np.float32)
    g.add_constant(name, w, QuantParams(s, np.full(shape[0], zp, np.int32), 0))
    return s


def _io(g: Graph, inputs: list[str], outputs: list[str]) -> Graph:
    g.inputs, g.outputs = inputs, outputs
    return g


def _fc(dtype: str, nz: bool) -> Graph:
    g, rng = Graph("fc"), np.random.default_rng(0)
    _act(g, "x", (2, 3, 16), dtype, 0.05, _zp(dtype, nz))
    s_w = _weights(g, "w", (8, 16), rng)
    g.add_constant("b", rng.integers(-300, 300, 8).astype(np.int32))
    _act(g, "y", (2, 3, 8), dtype, 0.3, _zp(dtype, nz, 1))
    m0, sh = tf.fc_multipliers(0.05, s_w, 0.3)
    lo, hi = qrange(dtype)
    g.add_node("QFullyConnected", ["x", "w", "b"], ["y"], x_zp=_zp(dtype, nz), m0=m0, shift=sh,
               out_zp=_zp(dtype, nz, 1), act_min=lo, act_max=hi, dtype=dtype)
    return _io(g, ["x"], ["y"])


def _conv(dtype: str, nz: bool, depthwise: bool = False) -> Graph:
    g, rng = Graph("conv"), np.random.default_rng(1)
    _act(g, "x", (1, 4, 6, 6), dtype, 0.04, _zp(dtype, nz))
    s_w = _weights(g, "w", (4, 1, 3, 3) if depthwise else (8, 4, 3, 3), rng)
    o = 4 if depthwise else 8
    g.add_constant("b", rng.integers(-300, 300, o).astype(np.int32))
    _act(g, "y", (1, o, 6, 6), dtype, 0.2, _zp(dtype, nz, 1))
    m0, sh = tf.conv_multipliers(0.04, s_w, 0.2)
    lo, hi = qrange(dtype)
    g.add_node("QDepthwiseConv2d" if depthwise else "QConv2d", ["x", "w", "b"], ["y"],
               strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=4 if depthwise else 1,
               x_zp=_zp(dtype, nz), m0=m0, shift=sh, out_zp=_zp(dtype, nz, 1), act_min=lo,
               act_max=hi, dtype=dtype)
    return _io(g, ["x"], ["y"])


def _add(dtype: str, nz: bool, dtype_b: str | None = None) -> Graph:
    g = Graph("add")
    dtype_b = dtype_b or dtype
    _act(g, "a", (2, 3, 5), dtype, 0.03, _zp(dtype, nz))
    _act(g, "b", (2, 3, 5), dtype_b, 0.11, _zp(dtype_b, nz, 1))
    _act(g, "y", (2, 3, 5), dtype, 0.09, _zp(dtype, nz, 2))
    lo, hi = qrange(dtype)
    g.add_node("QAdd", ["a", "b"], ["y"], a_zp=_zp(dtype, nz), b_zp=_zp(dtype_b, nz, 1),
               out_zp=_zp(dtype, nz, 2), act_min=lo, act_max=hi, dtype=dtype,
               **tf.add_params(0.03, 0.11, 0.09, dtype))
    return _io(g, ["a", "b"], ["y"])


def _mul(dtype: str, nz: bool) -> Graph:
    g = Graph("mul")
    _act(g, "a", (2, 3, 5), dtype, 0.03, _zp(dtype, nz))
    _act(g, "b", (2, 3, 5), dtype, 0.11, _zp(dtype, nz, 1))
    _act(g, "y", (2, 3, 5), dtype, 0.01, _zp(dtype, nz, 2))
    m0, sh = tf.mul_multiplier(0.03, 0.11, 0.01)
    lo, hi = qrange(dtype)
    g.add_node("QMul", ["a", "b"], ["y"], a_zp=_zp(dtype, nz), b_zp=_zp(dtype, nz, 1), m0=m0,
               shift=sh, out_zp=_zp(dtype, nz, 2), act_min=lo, act_max=hi, dtype=dtype)
    return _io(g, ["a", "b"], ["y"])


def _matmul(dtype: str, nz: bool, dtype_a: str | None = None, rank: int = 4,
            const_b: bool = False, zps: tuple[int, int, int] | None = None) -> Graph:
    g, rng = Graph("matmul"), np.random.default_rng(2)
    dtype_a = dtype_a or dtype
    za, zb, zo = zps or (_zp(dtype_a, nz), _zp(dtype, nz, 1), _zp(dtype, nz, 2))
    batch = (1, 2)[: rank - 2]
    _act(g, "a", (*batch, 3, 5), dtype_a, 0.05, za)
    if const_b:
        g.add_constant("b", rng.integers(-127, 128, (*batch, 5, 4)).astype(dtype),
                       QuantParams(np.float32(0.04), zb))
    else:
        _act(g, "b", (*batch, 5, 4), dtype, 0.04, zb)
    _act(g, "y", (*batch, 3, 4), dtype, 0.1, zo)
    m0, sh = tf.matmul_multiplier(0.05, 0.04, 0.1)
    lo, hi = qrange(dtype)
    g.add_node("QMatMul", ["a", "b"], ["y"], a_zp=za, b_zp=zb, m0=m0, shift=sh, out_zp=zo,
               act_min=lo, act_max=hi, dtype=dtype)
    return _io(g, ["a"] if const_b else ["a", "b"], ["y"])


def _clamp(dtype: str, nz: bool) -> Graph:
    g = Graph("relu")
    z = _zp(dtype, nz)
    _act(g, "x", (2, 3, 5), dtype, 0.05, z)
    _act(g, "y", (2, 3, 5), dtype, 0.05, z)
    lo, hi = tf.activation_range(tf.ACT_RELU, 0.05, z, dtype)
    g.add_node("QClamp", ["x"], ["y"], min=lo, max=hi)
    return _io(g, ["x"], ["y"])


def _requantize(dtype_in: str, dtype_out: str, nz: bool) -> Graph:
    g = Graph("requantize")
    _act(g, "x", (2, 7), dtype_in, 0.01, _zp(dtype_in, nz))
    _act(g, "y", (2, 7), dtype_out, 0.05, _zp(dtype_out, nz, 1))
    m0, sh = tf.conv_multipliers(0.01, np.array([1.0], np.float32), 0.05)
    lo, hi = qrange(dtype_out)
    g.add_node("Requantize", ["x"], ["y"], in_zp=_zp(dtype_in, nz), m0=int(m0[0]), shift=int(sh[0]),
               out_zp=_zp(dtype_out, nz, 1), act_min=lo, act_max=hi, dtype=dtype_out)
    return _io(g, ["x"], ["y"])


def _quantize(dtype: str, nz: bool) -> Graph:
    g = Graph("quantize")
    g.add_tensor(Tensor("x", "float32", (2, 6)))
    _act(g, "y", (2, 6), dtype, 0.05, _zp(dtype, nz))
    g.add_node("QuantizeLinear", ["x"], ["y"], scale=np.float32(0.05), zero_point=_zp(dtype, nz),
               dtype=dtype)
    return _io(g, ["x"], ["y"])


def _dequantize(dtype: str, nz: bool) -> Graph:
    g = Graph("dequantize")
    _act(g, "x", (2, 6), dtype, 0.05, _zp(dtype, nz))
    g.add_tensor(Tensor("y", "float32", (2, 6)))
    g.add_node("DequantizeLinear", ["x"], ["y"], scale=np.float32(0.05), zero_point=_zp(dtype, nz))
    return _io(g, ["x"], ["y"])


def _pool(op: str, dtype: str, nz: bool) -> Graph:
    g = Graph("pool")
    z = _zp(dtype, nz)
    _act(g, "x", (1, 2, 6, 6), dtype, 0.05, z)
    _act(g, "y", (1, 2, 3, 3), dtype, 0.05, z)
    extra = {"x_zp": z} if op == "QAvgPool2d" else {"dilations": [1, 1]}
    g.add_node(op, ["x"], ["y"], kernel=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], **extra)
    return _io(g, ["x"], ["y"])


def _layout(op: str, dtype: str, nz: bool) -> Graph:
    g = Graph(op.lower())
    z = _zp(dtype, nz)
    _act(g, "x", (1, 2, 3, 4), dtype, 0.05, z)
    if op == "Reshape":
        g.add_constant("shape", np.array([2, 12], np.int64))
        _act(g, "y", (2, 12), dtype, 0.05, z)
        g.add_node("Reshape", ["x", "shape"], ["y"])
    elif op == "Flatten":
        _act(g, "y", (1, 24), dtype, 0.05, z)
        g.add_node("Flatten", ["x"], ["y"], axis=1)
    elif op == "Squeeze":
        _act(g, "y", (2, 3, 4), dtype, 0.05, z)
        g.add_node("Squeeze", ["x"], ["y"], axes=[0])
    elif op == "Unsqueeze":
        _act(g, "y", (1, 2, 1, 3, 4), dtype, 0.05, z)
        g.add_node("Unsqueeze", ["x"], ["y"], axes=[2])
    elif op == "Transpose":
        _act(g, "y", (1, 3, 2, 4), dtype, 0.05, z)
        g.add_node("Transpose", ["x"], ["y"], perm=[0, 2, 1, 3])
    elif op == "Concat":
        _act(g, "x2", (1, 2, 3, 4), dtype, 0.05, z)
        _act(g, "y", (1, 2, 3, 8), dtype, 0.05, z)
        g.add_node("Concat", ["x", "x2"], ["y"], axis=3)
        return _io(g, ["x", "x2"], ["y"])
    elif op == "Pad":
        g.add_constant("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
        _act(g, "y", (1, 2, 5, 6), dtype, 0.05, z)
        g.add_node("Pad", ["x", "pads"], ["y"], mode="constant", value=z)
    elif op == "ResizeNearest":
        _act(g, "y", (1, 2, 6, 8), dtype, 0.05, z)
        g.add_node("ResizeNearest", ["x"], ["y"], sizes=[1, 2, 6, 8])
    return _io(g, ["x"], ["y"])


CASES: dict[str, Callable[[], Graph]] = {}
for _dt in ("int8", "int16"):
    for _nz in (False, True):
        _k = f"{_dt}{'-zp' if _nz else ''}"
        CASES |= {
            f"QFullyConnected/{_k}": lambda d=_dt, n=_nz: _fc(d, n),
            f"QConv2d/{_k}": lambda d=_dt, n=_nz: _conv(d, n),
            f"QDepthwiseConv2d/{_k}": lambda d=_dt, n=_nz: _conv(d, n, True),
            f"QAdd/{_k}": lambda d=_dt, n=_nz: _add(d, n),
            f"QMul/{_k}": lambda d=_dt, n=_nz: _mul(d, n),
            f"QMatMul/{_k}": lambda d=_dt, n=_nz: _matmul(d, n),
            f"QClamp/{_k}": lambda d=_dt, n=_nz: _clamp(d, n),
            f"QuantizeLinear/{_k}": lambda d=_dt, n=_nz: _quantize(d, n),
            f"DequantizeLinear/{_k}": lambda d=_dt, n=_nz: _dequantize(d, n),
            f"QMaxPool2d/{_k}": lambda d=_dt, n=_nz: _pool("QMaxPool2d", d, n),
            f"QAvgPool2d/{_k}": lambda d=_dt, n=_nz: _pool("QAvgPool2d", d, n),
        }
        for _op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Pad",
                    "ResizeNearest"):
            CASES[f"{_op}/{_k}"] = lambda o=_op, d=_dt, n=_nz: _layout(o, d, n)
        for _dt_in in ("int8", "int16", "int32"):
            CASES[f"Requantize/{_dt_in}->{_k}"] = (
                lambda i=_dt_in, d=_dt, n=_nz: _requantize(i, d, n))
# the configurations the transformer lowering writes: int16 probabilities x int8 values,
# int16 residual + int8 branch, a constant RHS, rank 2 and rank 3
CASES |= {
    "QMatMul/int16xint8->int8": lambda: _matmul("int8", False, dtype_a="int16"),
    # the encoder's P·V: int16 probabilities (zero point 0) x int8 V (zero point -6)
    "QMatMul/int16xint8-zp->int8": lambda: _matmul("int8", True, dtype_a="int16", zps=(0, -6, -4)),
    "QMatMul/int8-zp-rank2": lambda: _matmul("int8", True, rank=2),
    "QMatMul/int8-zp-rank3": lambda: _matmul("int8", True, rank=3),
    "QMatMul/int8-zp-const-rhs": lambda: _matmul("int8", True, const_b=True),
    "QAdd/int16+int8->int16": lambda: _add("int16", False, dtype_b="int8"),
    "QuantizeLinear/int8-other-scale": lambda: _boundary_mismatch("QuantizeLinear"),
    "DequantizeLinear/int8-other-scale": lambda: _boundary_mismatch("DequantizeLinear"),
}


def _boundary_mismatch(op: str) -> Graph:
    """A boundary node whose own scale is not its integer tensor's: written as QUANTIZE it
    would use the tensor's grid, so the writer must refuse it."""
    g = _quantize("int8", True) if op == "QuantizeLinear" else _dequantize("int8", True)
    g.nodes[0].attrs["scale"] = np.float32(0.07)
    return g


def test_writer_refuses_a_boundary_node_off_its_tensor_grid() -> None:
    for op in ("QuantizeLinear", "DequantizeLinear"):
        g = _boundary_mismatch(op)
        ok, why = node_supported(g, g.nodes[0])
        assert not ok and "differ" in why, why


def test_every_written_op_has_a_case() -> None:
    assert SUPPORTED_OPS <= {k.split("/")[0] for k in CASES}


def _litert_run(graph: Graph, feeds: dict[str, np.ndarray], resolver: str) -> dict[str, np.ndarray]:
    from sdk.backends.litert import LiteRTExecutable
    from sdk.backends.litert.runtime import DelegateChoice

    exe = LiteRTExecutable(graph, write_tflite(graph), DelegateChoice(resolver.lower(), resolver))
    return exe.run(feeds)


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out = {}
    for name in g.inputs:
        t = g.tensor(name)
        if t.dtype == "float32":
            out[name] = rng.normal(0, 2, t.shape).astype(np.float32)
        elif t.dtype == "int32":
            out[name] = rng.integers(-2000, 2000, t.shape).astype(np.int32)
        else:
            info = np.iinfo(t.dtype)
            out[name] = rng.integers(info.min, info.max + 1, t.shape).astype(t.dtype)
    return out


@pytest.mark.parametrize("resolver", ["AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
                                      "BUILTIN_REF"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_written_op_prepares_and_runs_in_litert_or_is_refused(case: str, resolver: str) -> None:
    g = CASES[case]()
    g.validate()
    node = g.nodes[0]
    ok, why = node_supported(g, node)
    if not ok:
        assert why and "\n" not in why, why
        return
    feeds = _feeds(g)
    got = _litert_run(g, feeds, resolver)  # must neither raise at allocate_tensors nor invoke
    want = ReferenceBackend().compile(g, None).run(feeds)
    for name in g.outputs:
        assert got[name].shape == want[name].shape, (got[name].shape, want[name].shape)
        assert got[name].dtype == want[name].dtype, (got[name].dtype, want[name].dtype)
        if got[name].dtype == np.float32:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
        else:
            diff = np.abs(got[name].astype(np.int64) - want[name].astype(np.int64)).max()
            assert diff <= 1, f"{case} on {resolver}: {diff} LSB"


# ---------------------------------------------------------------------------------------------
# a delegate / runtime failing at prepare or run time falls back, in one line


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_litert_failing_at_prepare_falls_back_to_the_reference(monkeypatch, caplog) -> None:
    """Without the writer's LiteRT checks, the encoder's P·V (int16 x int8, RHS zero point
    -6) is written and LiteRT's allocate_tensors raises (batch_matmul.cc): the segment runs
    on the reference kernels, one warning line, the plan says why."""
    import sdk.compile.tflite_writer as tw
    from sdk.backends import compile_for

    g = CASES["QMatMul/int16xint8-zp->int8"]()
    assert not node_supported(g, g.nodes[0])[0]
    monkeypatch.setattr(tw, "_check_litert_prepares", lambda g, n: None)
    with caplog.at_level(logging.WARNING):
        exe = compile_for(g, "litert", "raspberry-pi-4")
    feeds = _feeds(g)
    want = ReferenceBackend().compile(g, None).run(feeds)
    np.testing.assert_array_equal(exe.run(feeds)["y"], want["y"])
    warned = _warnings(caplog)
    assert len(warned) == 1 and "\n" not in warned[0], warned
    assert "failed to prepare" in warned[0] and "batch_matmul" in warned[0], warned
    a = exe.plan.assignments[0]
    assert a.backend == "reference" and "litert failed to prepare" in a.reason
    assert exe.plan.notices and "fell back" in str(exe.plan)
    assert exe.plan.to_json()["notices"] == exe.plan.notices


def test_litert_failing_at_run_time_falls_back_to_the_reference(monkeypatch, caplog) -> None:
    """An int16 MUL with non-zero zero points passes LiteRT's prepare and fails in invoke
    (mul.cc): the first run falls back and returns the reference's answer."""
    import sdk.compile.tflite_writer as tw
    from sdk.backends import compile_for

    g = _mul("int16", True)
    monkeypatch.setattr(tw, "_check_litert_prepares", lambda g, n: None)
    exe = compile_for(g, "litert", "raspberry-pi-4")
    assert exe.plan.segments[0].backend == "litert"
    feeds = _feeds(g)
    with caplog.at_level(logging.WARNING):
        got = exe.run(feeds)
        again = exe.run(feeds)
    want = ReferenceBackend().compile(g, None).run(feeds)
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(again["y"], want["y"])
    warned = _warnings(caplog)
    assert len(warned) == 1 and "failed at run time" in warned[0] and "\n" not in warned[0]
    assert exe.plan.segments[0].backend == "reference" and exe.backend == "litert+reference"


def _delegate_gemms(monkeypatch) -> None:
    """These tests are about ORT failing: its FC must be delegated first, even on CPUs where
    the backend would keep integer GEMMs off ORT (sdk.backends.onnxruntime.cpu_check)."""
    import sdk.backends.onnxruntime as ort_backend
    monkeypatch.setattr(ort_backend, "integer_gemm_hazard", lambda: None)


def test_onnxruntime_session_failure_falls_back_to_the_reference(monkeypatch, caplog) -> None:
    ort = pytest.importorskip("onnxruntime")
    from sdk.backends import compile_for
    from sdk.backends.sample_graphs import fc_graph, random_feeds

    def broken(*args, **kwargs):
        raise ort.capi.onnxruntime_pybind11_state.Fail(
            "[ONNXRuntimeError] : 1 : FAIL : provider could not be created\nmore detail")

    monkeypatch.setattr(ort, "InferenceSession", broken)
    _delegate_gemms(monkeypatch)
    g = fc_graph()
    with caplog.at_level(logging.WARNING):
        exe = compile_for(g, "onnxruntime", "laptop")
    feeds = random_feeds(g)
    np.testing.assert_array_equal(exe.run(feeds)["y"], ReferenceBackend().compile(g, None)
                                  .run(feeds)["y"])
    notice = [w for w in _warnings(caplog) if "fell back" in w]
    assert len(notice) == 1 and "provider could not be created" in notice[0]
    assert "more detail" not in notice[0]
    assert all(a.backend == "reference" for a in exe.plan.assignments)


def test_onnxruntime_run_failure_falls_back_to_the_reference(monkeypatch, caplog) -> None:
    pytest.importorskip("onnxruntime")
    from sdk.backends import compile_for
    from sdk.backends.sample_graphs import fc_graph, random_feeds

    _delegate_gemms(monkeypatch)
    g = fc_graph()
    exe = compile_for(g, "onnxruntime", "laptop")

    def broken_run(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : kernel failed")

    monkeypatch.setattr(exe.parts[0].session, "run", broken_run, raising=False)
    feeds = random_feeds(g)
    with caplog.at_level(logging.WARNING):
        y = exe.run(feeds)["y"]
    np.testing.assert_array_equal(y, ReferenceBackend().compile(g, None).run(feeds)["y"])
    assert any("failed at run time" in w and "kernel failed" in w for w in _warnings(caplog))


# ---------------------------------------------------------------------------------------------
# acceptance: a pre-LN transformer encoder compiled for raspberry-pi-4 runs on LiteRT


def _data(part: str) -> dict[str, np.ndarray]:
    with np.load(FIX / f"encoder_{part}.npz") as z:
        return {k: z[k] for k in z.files}


@cache
def _encoder():
    import sdk

    return sdk.compile_model(FIX / "encoder.onnx", calib=_data("calib"))


REQUANTIZING = {"QFullyConnected", "QConv2d", "QDepthwiseConv2d", "QAdd", "QMul", "QMatMul",
                "Requantize", "QAvgPool2d"}


def test_encoder_segments_on_litert_agree_within_1_lsb_per_requantizing_op() -> None:
    """Each LiteRT segment, fed the reference's own inputs, is within (number of requantizing
    ops in it) LSB of the reference: docs/backends.md's 1 LSB per requantization (XNNPACK
    computes rint(float32(acc)·float32(M)), the SDK rounds twice)."""
    from sdk.backends import compile_for

    g = _encoder().graph
    exe = compile_for(g, "litert", "raspberry-pi-4")
    assert not exe.plan.notices, exe.plan.notices
    on_litert = [k for k, s in enumerate(exe.plan.segments) if s.backend == "litert"]
    assert sum(1 for s in exe.plan.segments if s.backend == "litert"
               for n in s.graph.nodes if n.op in ("QFullyConnected", "QAdd")) >= 12
    test = _data("test")
    for i in range(len(test["expected_hidden"])):
        env = {k: v[i] for k, v in test.items() if not k.startswith("expected_")}
        for k, seg in enumerate(exe.plan.segments):
            feeds = {n: env[n] for n in seg.inputs}
            want = ReferenceBackend().compile(seg.graph, None).run(feeds)
            if k in on_litert:
                got = exe.parts[k].run(feeds)
                bound = sum(n.op in REQUANTIZING for n in seg.graph.nodes)
                for o in seg.outputs:
                    if want[o].dtype.kind == "f":
                        continue  # the float output is compared in LSB below
                    diff = np.abs(got[o].astype(np.int64) - want[o].astype(np.int64)).max()
                    assert diff <= bound, (seg.graph.name, o, diff, bound)
            env.update(want)


def test_pre_ln_encoder_runs_on_litert_for_raspberry_pi_4() -> None:
    """The acceptance case of the reliability issue: no traceback, the plan lists what falls
    back and why, and the output agrees with the reference within 2 LSB of the int8 output
    grid (measured: 1 LSB, on 7.5 % of the elements): a 1-LSB LiteRT difference in the last
    feed-forward projection reaches the output through the int16 residual add and the final
    I-LayerNorm, each rounding once more (≤ 1 LSB) on the reference side."""
    import sdk

    bundle = _encoder()
    sess = sdk.Session(bundle, backend="litert", target="raspberry-pi-4")
    ref = sdk.Session(bundle)
    plan = sess.plan
    assert plan.counts()["litert"] > 0 and not plan.notices
    reasons = {a.op: a.reason for a in plan.fallbacks}
    assert "BATCH_MATMUL" in str(plan) or "QMatMul" in reasons
    assert reasons.get("Shiftmax")
    scale = float(bundle.graph.tensor("hidden_q").quant.scale)
    test = _data("test")
    worst, differ = 0.0, 0
    for i in range(len(test["expected_hidden"])):
        feeds = {k: v[i] for k, v in test.items() if not k.startswith("expected_")}
        y, r = sess.run(feeds)["hidden"], ref.run(feeds)["hidden"]
        lsb = np.abs(y.astype(np.float64) - r.astype(np.float64)) / scale
        worst = max(worst, float(lsb.max()))
        differ += int((lsb > 0.5).sum())
    assert worst <= 2 + 1e-3, worst
    assert differ <= 0.25 * test["expected_hidden"].size, differ


def test_encoder_nodes_on_onnxruntime_agree_within_1_lsb_each() -> None:
    """Every node of the torch encoder that the ONNX Runtime exporter writes, exported alone
    and fed the reference's own inputs, is within 1 LSB. The attention score QMatMul carries
    the 1/√d of the export folded into its multiplier, not in the tensor scales: exported from
    the scales alone it came out 4x too large (24,500 int16 LSB off, saturated)."""
    import onnxruntime as ort

    from sdk.backends.onnxruntime.export import export_qdq, node_supported
    from sdk.backends.partition import extract_subgraph

    g = _encoder().graph
    test = _data("test")
    env = {k: v[0] for k, v in test.items() if not k.startswith("expected_")}
    checked = 0
    for node in g.topological_order():
        sub = extract_subgraph(g, [node], node.name, set(node.outputs))
        feeds = {n: env[n] for n in sub.inputs}
        want = ReferenceBackend().compile(sub, None).run(feeds)
        env.update(want)
        if not node_supported(g, node)[0]:
            continue
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        s = ort.InferenceSession(export_qdq(sub).SerializeToString(), opts,
                                 providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in s.get_outputs()],
                       s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})))
        for o in sub.outputs:
            if want[o].dtype.kind == "f":
                continue
            diff = np.abs(got[o].astype(np.int64) - want[o].astype(np.int64)).max()
            assert diff <= 1, (node.op, node.name, o, diff)
        checked += 1
    assert checked >= 30, checked


def test_pre_ln_encoder_on_onnxruntime_agrees_with_the_reference() -> None:
    """End to end on ONNX Runtime (measured: within 1 LSB of the int8 output grid; 10 LSB
    before the exporter honoured multipliers that fold a constant)."""
    import sdk

    bundle = _encoder()
    sess = sdk.Session(bundle, backend="onnxruntime", target="raspberry-pi-4", integer_io=True)
    ref = sdk.Session(bundle, integer_io=True)
    assert sess.plan.counts()["onnxruntime"] > 0
    test = _data("test")
    worst = 0
    for i in range(len(test["expected_hidden"])):
        feeds = {k: v[i] for k, v in test.items() if not k.startswith("expected_")}
        y, r = sess.run(feeds)["hidden"], ref.run(feeds)["hidden"]
        worst = max(worst, int(np.abs(y.astype(np.int64) - r.astype(np.int64)).max()))
    assert worst <= 2, worst
