"""Whether ONNX Runtime's integer GEMMs give exact sums on this CPU.

On x86 CPUs with AVX2 but without VNNI (AVX512-VNNI or AVX-VNNI), ONNX Runtime's MLAS kernels
multiply u8 by s8 with ``vpmaddubsw``, which adds each pair of products in 16 bits with
saturation: 255 · 127 · 2 = 64 770 does not fit, and the sum is silently clipped. Whether a
model meets such operands depends on its data and on how the work is split across threads,
so the error is data-dependent and not even repeatable from run to run. The SDK's kernels
accumulate exactly in 32 bits. Where the hazard exists, the ONNX Runtime backend leaves the
integer GEMM operators (fully connected, convolutions, matmul) to the SDK's kernels and says
why in the plan; everything else still runs on ONNX Runtime.

Two checks, either of which marks the hazard:

* the CPU's feature flags (Linux ``/proc/cpuinfo``): x86 with ``avx2`` and no ``*vnni``;
* a probe: ORT's ``MatMulInteger`` on 255 × 127 over 64 terms, where every pair sum
  overflows int16, compared with the exact product.

The flags tell without running anything; the probe covers systems that do not expose them
(macOS, Windows) and any other CPU whose ORT kernel saturates.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

GEMM_OPS = frozenset({"QFullyConnected", "QConv2d", "QDepthwiseConv2d", "QMatMul"})


def cpu_flag_hazard(cpuinfo: str | None = None, machine: str | None = None) -> str | None:
    """The reason ORT's u8 x s8 GEMM may saturate on this CPU, from its feature flags, or None.

    ``cpuinfo``: the text of ``/proc/cpuinfo`` (read when None; None where it does not exist).
    ``machine``: ``platform.machine()`` when None."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return None
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if not path.is_file():
            return None
        cpuinfo = path.read_text(errors="replace")
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
            break
    if "avx2" in flags and not any(f.endswith("vnni") for f in flags):
        return ("this CPU has AVX2 without VNNI, where ONNX Runtime's u8 x s8 integer GEMM "
                "adds pairs of products in 16 bits with saturation")
    return None


def ort_matmul_integer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Runtime's CPU ``MatMulInteger`` of u8 ``a`` [m, k] and s8 ``b`` [k, n] (int32)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    graph = helper.make_graph(
        [node], "probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape),
         helper.make_tensor_value_info("b", TensorProto.INT8, b.shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": a, "b": b})[0]


def ort_matmul_integer_exact() -> bool:
    """Whether ONNX Runtime's CPU ``MatMulInteger`` gives the exact 255 x 127 x 64 product."""
    a = np.full((2, 64), 255, np.uint8)
    b = np.full((64, 3), 127, np.int8)
    got = ort_matmul_integer(a, b)
    return bool(np.array_equal(got, a.astype(np.int64) @ b.astype(np.int64)))


_VERDICT: list[str | None] = []


def integer_gemm_hazard() -> str | None:
    """Why ONNX Runtime's integer GEMMs cannot be trusted on this machine, or None.

    Decided once per process; a probe that cannot run at all (ORT itself broken) decides
    nothing and is retried next time, the session that follows reporting the failure."""
    if _VERDICT:
        return _VERDICT[0]
    reason = cpu_flag_hazard()
    if reason is None:
        try:
            exact = ort_matmul_integer_exact()
        except Exception:  # noqa: BLE001 - ORT's own error types; no verdict without a probe
            return None
        if not exact:
            reason = ("ONNX Runtime's MatMulInteger gives a wrong sum for 255 x 127 over 64 "
                      "terms on this CPU (its u8 x s8 kernel saturates)")
    _VERDICT.append(reason)
    return reason
