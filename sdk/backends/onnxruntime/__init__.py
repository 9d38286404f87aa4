"""ONNX Runtime backend: the integer graph exported as an ONNX QDQ model and run with the
target's execution providers in order; providers this onnxruntime build lacks are dropped
with a log line, and the one actually used is logged and kept on the Executable.

Tolerance: ORT requantizes with a float multiply rounded half to even (not the SDK's
double rounding), so outputs agree within 1 LSB per requantizing op.

A session that cannot be created with the target's providers is retried on the CPU provider;
one that cannot be created at all, or a run that fails, raises a one-line EdgeError and the
partitioner moves that segment to the reference kernels (``Plan.notices``).

On x86 CPUs whose ORT integer GEMM saturates (AVX2 without VNNI, see ``cpu_check``), the
integer GEMM operators are refused and run on the SDK's kernels; the plan says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.backends.base import Backend, Executable
from sdk.backends.onnxruntime.cpu_check import GEMM_OPS, integer_gemm_hazard
from sdk.backends.onnxruntime.export import export_qdq, node_supported
from sdk.errors import EdgeError, InputError
from sdk.graph.ir import Graph, Node

log = logging.getLogger("sdk.backends.onnxruntime")

# target delegate name -> ONNX Runtime execution provider
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider", "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider", "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider", "rocm": "ROCMExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


_DROPPED: set[str] = set()


def _ort() -> Any:
    try:
        import onnxruntime
        return onnxruntime
    except ImportError:
        raise EdgeError("onnxruntime is not installed; run `pip install onnxruntime`") from None


def choose_providers(delegates: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(providers to request, skipped notes): the target's order mapped to ORT names, those
    missing from this build dropped, CPU always last."""
    available = set(_ort().get_available_providers())
    chosen: list[str] = []
    skipped: list[str] = []
    for d in delegates:
        ep = PROVIDERS.get(d.lower(), d if d.endswith("ExecutionProvider") else None)
        if ep is None:
            skipped.append(f"{d!r} is not an ONNX Runtime execution provider")
        elif ep not in available:
            skipped.append(f"{ep} is not in this onnxruntime build "
                           f"(available: {', '.join(sorted(available))})")
        elif ep not in chosen:
            chosen.append(ep)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen, skipped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _target_delegates(target: Any) -> list[str]:
    from sdk.backends.litert import target_delegates
    return target_delegates(target)


class OrtExecutable(Executable):
    """An ONNX Runtime InferenceSession over the exported QDQ model."""

    def __init__(self, graph: Graph, providers: list[str], threads: int | None = None) -> None:
        ort = _ort()
        self.graph = graph
        self.model = export_qdq(graph)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        data = self.model.SerializeToString()
        try:
            self.session = ort.InferenceSession(data, opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph/... types
            if providers == ["CPUExecutionProvider"]:
                raise EdgeError(f"ONNX Runtime cannot create a session for {graph.name!r}: "
                                f"{_first_line(exc)}") from None
            log.warning("ONNX Runtime with %s failed to create a session for %r (%s); "
                        "retrying on CPUExecutionProvider", ", ".join(providers), graph.name,
                        _first_line(exc))
            try:
                self.session = ort.InferenceSession(data, opts,
                                                    providers=["CPUExecutionProvider"])
            except Exception as exc2:  # noqa: BLE001 - as above
                raise EdgeError(f"ONNX Runtime cannot create a session for {graph.name!r}: "
                                f"{_first_line(exc2)}") from None
        self.provider = self.session.get_providers()[0]
        self.backend = f"onnxruntime[{self.provider}]"
        log.info("ONNX Runtime runs %r with %s", graph.name, self.provider)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.graph.inputs if n not in feeds]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model needs {self.graph.inputs}")
        ins = {n: np.ascontiguousarray(feeds[n], self.graph.tensor(n).dtype)
               for n in self.graph.inputs}
        try:
            outs = self.session.run(list(self.graph.outputs), ins)
        except Exception as exc:  # noqa: BLE001 - ORT's own error types
            raise EdgeError(f"ONNX Runtime ({self.provider}) failed to run {self.graph.name!r}: "
                            f"{_first_line(exc)}") from None
        return dict(zip(self.graph.outputs, outs))


class OrtBackend(Backend):
    """ONNX Runtime with the target's execution providers (``providers=`` overrides)."""

    name = "onnxruntime"

    def __init__(self, providers: list[str] | None = None, threads: int | None = None) -> None:
        self.providers = providers
        self.threads = threads

    def available(self) -> tuple[bool, str]:
        try:
            _ort()
        except EdgeError as exc:
            return False, str(exc)
        return True, ""

    def supports(self, node: Node, target: Any, graph: Graph) -> tuple[bool, str]:
        ok, why = node_supported(graph, node)
        if not ok:
            return False, f"the ONNX exporter refuses it: {why}"
        if node.op in GEMM_OPS:
            hazard = integer_gemm_hazard()
            if hazard is not None:
                return False, f"{hazard}; the SDK's exact kernels run it"
        return True, ""

    def compile(self, subgraph: Graph, target: Any) -> OrtExecutable:
        wanted = self.providers if self.providers is not None else _target_delegates(target)
        providers, skipped = choose_providers(wanted)
        for note in skipped:
            if note not in _DROPPED:  # once per process, not once per partition segment
                _DROPPED.add(note)
                log.warning("ONNX Runtime: dropping %s", note)
        return OrtExecutable(subgraph, providers, self.threads)
