"""Generic partitioning: each node goes to the chosen backend if it supports it, otherwise to
the reference backend, and the :class:`Plan` says which node ran where and why.

Nodes are taken in topological order and consecutive nodes on the same backend form one
segment; each segment becomes a sub-graph compiled by its backend. At run time the segments
run in order and hand tensors to each other by name.

A backend that accepted a segment but then fails to prepare it (LiteRT ``allocate_tensors``,
an ONNX Runtime session that cannot be created) or to run it (``invoke`` raising) does not
end the run with a traceback: that segment is recompiled on the reference kernels, one
warning line (logger ``sdk.backends.partition``) says which segment fell back and why, and
the :class:`Plan` records it (each node's ``reason``, ``Plan.notices``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.backends.base import Backend, Executable, Profile, get_backend
from sdk.backends.reference import ReferenceBackend
from sdk.errors import InputError, UnsupportedOpError
from sdk.graph.ir import Graph, Node

log = logging.getLogger(__name__)
REFERENCE = "reference"  # the name the fallback backend runs under


@dataclass
class Assignment:
    """Where one node runs, and why it fell back when it did."""

    node: str
    op: str
    backend: str
    reason: str = ""  # empty when the node runs on the requested backend


@dataclass
class Segment:
    """A run of consecutive nodes on one backend, as a self-contained sub-graph."""

    backend: str
    graph: Graph

    @property
    def inputs(self) -> list[str]:
        return self.graph.inputs

    @property
    def outputs(self) -> list[str]:
        return self.graph.outputs


@dataclass
class Plan:
    """The partition of a graph for one backend and target."""

    graph: str
    backend: str
    target: str
    assignments: list[Assignment]
    segments: list[Segment] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # prepare/run-time fallbacks, one line each

    def fall_back(self, k: int, reason: str) -> str:
        """Move segment ``k`` to the reference backend because its backend failed (``reason``);
        returns the one-line notice (also kept in ``notices``)."""
        seg = self.segments[k]
        names = {n.name for n in seg.graph.nodes}
        for a in self.assignments:
            if a.node in names:
                a.backend, a.reason = REFERENCE, reason
        failed, seg.backend = seg.backend, REFERENCE
        notice = (f"segment {k} ({len(names)} node(s)) fell back from {failed} to the "
                  f"reference kernels: {reason}")
        self.notices.append(notice)
        return notice

    @property
    def fallbacks(self) -> list[Assignment]:
        return [a for a in self.assignments if a.backend != self.backend]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.assignments:
            out[a.backend] = out.get(a.backend, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"graph": self.graph, "backend": self.backend, "target": self.target,
                "nodes": [a.__dict__ for a in self.assignments],
                "segments": [{"backend": s.backend, "nodes": [n.name for n in s.graph.nodes],
                              "inputs": s.inputs, "outputs": s.outputs} for s in self.segments],
                "notices": list(self.notices)}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def __str__(self) -> str:
        counts = ", ".join(f"{n} node(s) on {b}" for b, n in self.counts().items())
        head = (f"plan for {self.graph!r} on target {self.target!r}, backend "
                f"{self.backend!r}: {counts}, {len(self.segments)} segment(s)")
        lines = [head]
        width = max((len(a.node) for a in self.assignments), default=4)
        for k, seg in enumerate(self.segments):
            lines.append(f"  segment {k} [{seg.backend}]  in: {', '.join(seg.inputs)}"
                         f"  out: {', '.join(seg.outputs)}")
            by_name = {a.node: a for a in self.assignments}
            for n in seg.graph.nodes:
                a = by_name[n.name]
                why = f"  <- fallback: {a.reason}" if a.reason else ""
                lines.append(f"    {a.node:<{width}}  {a.op:<18} {a.backend}{why}")
        lines += [f"  notice: {n}" for n in self.notices]
        return "\n".join(lines)


def _target_name(target: Any) -> str:
    if target is None:
        return "laptop"
    if isinstance(target, str):
        return target
    if isinstance(target, Mapping):
        return str(target.get("name", "?"))
    return str(getattr(target, "name", target))


def extract_subgraph(graph: Graph, nodes: list[Node], name: str,
                     needed_outside: set[str]) -> Graph:
    """The nodes as a self-contained Graph: inputs are what they read from outside (not
    constants), outputs what they produce that ``needed_outside`` (or the graph) wants."""
    sub = Graph(name)
    sub.metadata = dict(graph.metadata)
    produced = {o for n in nodes for o in n.outputs if o}
    for n in nodes:
        for t in n.inputs + n.outputs:
            if t and t not in sub.tensors:
                sub.add_tensor(graph.tensor(t))
                if t not in produced and not graph.tensor(t).is_constant and t not in sub.inputs:
                    sub.inputs.append(t)
        sub.nodes.append(n)
    sub.outputs = [o for n in nodes for o in n.outputs
                   if o and (o in needed_outside or o in graph.outputs)]
    return sub


def partition(graph: Graph, backend: str | Backend, target: Any = None) -> Plan:
    """Assign every node to ``backend`` or, where it refuses, to the reference backend."""
    be = get_backend(backend)
    ref = ReferenceBackend()
    ok, why_not = be.available()
    order = graph.topological_order()
    assignments: list[Assignment] = []
    for node in order:
        if ok:
            good, reason = be.supports(node, target, graph)
        else:
            good, reason = False, why_not
        if good:
            assignments.append(Assignment(node.name, node.op, be.name))
            continue
        ref_ok, ref_reason = ref.supports(node, target, graph)
        if not ref_ok:
            raise UnsupportedOpError([node.op], f"backend {be.name!r} ({reason}) and the "
                                     "reference backend", ref_reason)
        assignments.append(Assignment(node.name, node.op, ref.name, reason))
    plan = Plan(graph.name, be.name, _target_name(target), assignments)
    # consecutive nodes on one backend form a segment
    runs: list[tuple[str, list[Node]]] = []
    for node, a in zip(order, assignments):
        if runs and runs[-1][0] == a.backend:
            runs[-1][1].append(node)
        else:
            runs.append((a.backend, [node]))
    for k, (bname, nodes) in enumerate(runs):
        outside = {i for _, later in runs[k + 1:] for n in later for i in n.inputs if i}
        plan.segments.append(Segment(bname, extract_subgraph(graph, nodes, f"{graph.name}_seg{k}",
                                                             outside)))
    return plan


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class PartitionedExecutable(Executable):
    """Runs a Plan's segments in order, each on its own backend's Executable.

    A segment whose backend raises while running is rerun (and from then on run) on the
    reference kernels; the plan and a warning say so."""

    def __init__(self, graph: Graph, plan: Plan, parts: list[Executable],
                 target: Any = None) -> None:
        self.graph = graph
        self.plan = plan
        self.parts = parts
        self.target = target
        self._update_name()

    def _update_name(self) -> None:
        plan = self.plan
        self.backend = plan.backend if not plan.fallbacks else f"{plan.backend}+reference"

    def _run_part(self, k: int, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        seg, exe = self.plan.segments[k], self.parts[k]
        if seg.backend == REFERENCE:
            return exe.run(feeds)
        try:
            return exe.run(feeds)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a delegate/runtime failing at run time
            reason = f"{exe.backend} failed at run time ({_one_line(exc)})"
            log.warning(self.plan.fall_back(k, reason))
            self.parts[k] = ReferenceBackend().compile(seg.graph, self.target)
            self._update_name()
            return self.parts[k].run(feeds)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(feeds)
        for k, seg in enumerate(self.plan.segments):
            env.update(self._run_part(k, {i: env[i] for i in seg.inputs}))
        return {o: env[o] for o in self.graph.outputs}

    def profile(self, feeds: Mapping[str, np.ndarray], repeats: int = 10,
                warmup: int = 1) -> Profile:
        prof = super().profile(feeds, repeats, warmup)
        env: dict[str, np.ndarray] = dict(feeds)
        per = []
        for k, seg in enumerate(self.plan.segments):
            seg_feeds = {i: env[i] for i in seg.inputs}
            env.update(self._run_part(k, seg_feeds))
            p = self.parts[k].profile(seg_feeds, repeats, warmup)
            per.append({"backend": seg.backend, "nodes": len(seg.graph.nodes),
                        "median_s": p.median_s})
        prof.detail["segments"] = per
        return prof


def _compile_segment(plan: Plan, k: int, be: Backend, target: Any) -> Executable:
    """Compile segment ``k`` on ``be``; when ``be`` (not the reference) fails to prepare it,
    compile it on the reference kernels and record the fallback."""
    seg = plan.segments[k]
    if be.name == REFERENCE or seg.backend == REFERENCE:
        return (be if seg.backend == be.name else ReferenceBackend()).compile(seg.graph, target)
    try:
        return be.compile(seg.graph, target)
    except Exception as exc:  # noqa: BLE001 - LiteRT allocate_tensors, ORT session creation
        log.warning(plan.fall_back(k, f"{be.name} failed to prepare it ({_one_line(exc)})"))
        return ReferenceBackend().compile(seg.graph, target)


def compile_plan(graph: Graph, plan: Plan, target: Any = None,
                 backend_options: Mapping[str, Any] | None = None) -> PartitionedExecutable:
    """Compile each segment of ``plan`` on its backend (the reference where one fails)."""
    opts = dict(backend_options or {})
    parts = []
    for k, seg in enumerate(plan.segments):
        be = get_backend(seg.backend, **(opts if seg.backend == plan.backend else {}))
        parts.append(_compile_segment(plan, k, be, target))
    return PartitionedExecutable(graph, plan, parts, target)


def compile_for(graph: Graph, backend: str | Backend = "reference", target: Any = None,
                **backend_options: Any) -> PartitionedExecutable:
    """Partition ``graph`` for ``backend`` and compile it: the one call a Session needs.

    A segment the backend cannot prepare runs on the reference kernels instead (one warning;
    ``exe.plan`` says which and why).

    >>> exe = compile_for(graph, "litert", "raspberry-pi-4"); print(exe.plan)
    """
    be = get_backend(backend, **backend_options) if isinstance(backend, str) else backend
    plan = partition(graph, be, target)
    parts = []
    for k, seg in enumerate(plan.segments):
        parts.append(_compile_segment(plan, k, be if seg.backend == be.name else ReferenceBackend(),
                                      target))
    return PartitionedExecutable(graph, plan, parts, target)
