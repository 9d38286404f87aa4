"""LiteRT / TFLite backend: the integer graph written as a .tflite and run by LiteRT with the
target's delegates (XNNPACK by default, the Edge TPU, external delegates by path).

Numerics (measured, see tests/backends): LiteRT 2.3's BUILTIN_REF kernels round the
requantization once (``sign(acc)·floor(|acc·M| + 0.5)``) and XNNPACK computes
``rint(float32(acc)·float32(M))``, so against the SDK's double-rounding reference they agree
within 1 LSB per requantization, not bit for bit. TFLite Micro agrees bit for bit.

Honesty: the writer refuses what LiteRT's kernels reject (``node_supported``), and a model
LiteRT still cannot prepare (``allocate_tensors``) or run (``invoke``) raises a one-line
EdgeError; an external delegate failing at prepare time is retried on LiteRT's CPU kernels,
and the partitioner moves a failing segment to the reference kernels (``Plan.notices``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sdk.backends.base import Backend, Executable
from sdk.backends.litert.runtime import (
    BUILTIN,
    DelegateChoice,
    choose_delegate,
    interpreter_module,
    log,
)
from sdk.compile.tflite_writer import TFLiteModel, node_supported, write_tflite
from sdk.errors import EdgeError, InputError
from sdk.frontends.tflite_format import NCHW_TO_NHWC, NHWC_TO_NCHW
from sdk.graph.ir import Graph, Node


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def target_delegates(target: Any) -> list[str]:
    """The delegate order a target asks for (``xnnpack`` when it names none)."""
    if target is None:
        return ["xnnpack"]
    if isinstance(target, Mapping):
        names = target.get("delegates", ["xnnpack"])
    elif isinstance(target, str):
        from targets import load_target
        names = load_target(target).delegates
    else:
        names = getattr(target, "delegates", ("xnnpack",))
    return list(names) or ["xnnpack"]


class LiteRTExecutable(Executable):
    """A .tflite model in a LiteRT interpreter; feeds and outputs in the IR's layout."""

    def __init__(self, graph: Graph, model: TFLiteModel, choice: DelegateChoice,
                 num_threads: int | None = None) -> None:
        self.graph = graph
        self.model = model
        try:
            self.interpreter = self._prepare(choice, num_threads)
        except (RuntimeError, ValueError) as exc:
            if choice.delegate is None:
                raise EdgeError(f"LiteRT ({choice.name}) cannot prepare {graph.name!r}: "
                                f"{_first_line(exc)}") from None
            # an external delegate that fails at prepare time: LiteRT's own CPU kernels next
            log.warning("LiteRT delegate %r failed to prepare %r (%s); using the CPU kernels",
                        choice.name, graph.name, _first_line(exc))
            choice = DelegateChoice("cpu", BUILTIN["cpu"], None,
                                    [*choice.skipped, (choice.name, _first_line(exc))])
            try:
                self.interpreter = self._prepare(choice, num_threads)
            except (RuntimeError, ValueError) as exc2:
                raise EdgeError(f"LiteRT (cpu) cannot prepare {graph.name!r}: "
                                f"{_first_line(exc2)}") from None
        self.choice = choice
        self.backend = f"litert[{choice.name}]"
        self._in = [d["index"] for d in self.interpreter.get_input_details()]
        self._out = [d["index"] for d in self.interpreter.get_output_details()]
        self._in_dtype = [d["dtype"] for d in self.interpreter.get_input_details()]

    def _prepare(self, choice: DelegateChoice, num_threads: int | None) -> Any:
        """An interpreter with ``choice``'s delegate, tensors allocated (raises as LiteRT does)."""
        mod = interpreter_module()
        resolver = getattr(mod.OpResolverType, choice.resolver)
        delegates = [choice.delegate] if choice.delegate is not None else None
        it = mod.Interpreter(model_content=self.model.data, experimental_delegates=delegates,
                             num_threads=num_threads, experimental_op_resolver_type=resolver)
        it.allocate_tensors()
        return it

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        it = self.interpreter
        for name, idx, dt in zip(self.model.inputs, self._in, self._in_dtype):
            if name not in feeds:
                raise InputError(f"missing input {name!r}; the model needs {self.model.inputs}")
            x = np.asarray(feeds[name])
            if name in self.model.nhwc:
                x = x.transpose(NCHW_TO_NHWC)
            it.set_tensor(idx, np.ascontiguousarray(x, dtype=dt))
        try:
            it.invoke()
        except (RuntimeError, ValueError) as exc:
            raise EdgeError(f"LiteRT ({self.choice.name}) failed to run {self.graph.name!r}: "
                            f"{_first_line(exc)}") from None
        out = {}
        for name, idx in zip(self.model.outputs, self._out):
            y = it.get_tensor(idx)
            out[name] = y.transpose(NHWC_TO_NCHW).copy() if name in self.model.nhwc else y.copy()
        return out


class LiteRTBackend(Backend):
    """LiteRT with a delegate list (``delegates=`` overrides the target's order)."""

    name = "litert"

    def __init__(self, delegates: list[str] | None = None, num_threads: int | None = None) -> None:
        self.delegates = delegates
        self.num_threads = num_threads

    def available(self) -> tuple[bool, str]:
        try:
            interpreter_module()
        except EdgeError as exc:  # no LiteRT: the message says what to install
            return False, str(exc)
        return True, ""

    def supports(self, node: Node, target: Any, graph: Graph) -> tuple[bool, str]:
        ok, why = node_supported(graph, node)
        return ok, (f"the .tflite writer refuses it: {why}" if why else "")

    def compile(self, subgraph: Graph, target: Any) -> LiteRTExecutable:
        names = self.delegates if self.delegates is not None else target_delegates(target)
        return LiteRTExecutable(subgraph, write_tflite(subgraph), choose_delegate(names),
                                self.num_threads)


def _litert_ref() -> LiteRTBackend:
    """LiteRT with its BUILTIN_REF kernels (no delegate)."""
    b = LiteRTBackend(delegates=["reference"])
    b.name = "litert-ref"
    return b


def _litert_cpu() -> LiteRTBackend:
    """LiteRT's optimized built-in kernels without the default XNNPACK delegate."""
    b = LiteRTBackend(delegates=["cpu"])
    b.name = "litert-cpu"
    return b
