"""Exit plans: which stage entries an early-exit bundle runs, each exit's integer logits, rule
and threshold, as stored in the bundle manifest (``manifest["exits"]``).

An early-exit model is one integer graph with several classifier outputs (``exit_1`` ...
``exit_K``, the last being the full model) and, for the ``gate`` rule, a gating output.
:func:`split_stages` cuts it into stage entry graphs over the same weights: stage k holds the
nodes exit k needs that no earlier exit needed, and outputs exit k's integer logits plus the
tensors later stages read (the cached intermediates the next stage resumes from).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sdk.errors import GraphError, InputError
from sdk.exits.rules import RULES, EntropyTable
from sdk.graph.ir import Graph, Node

STAGE_PREFIX = "stage_"


@dataclass
class ExitSpec:
    """One exit: the stage entry that computes it, its integer logits tensor (and their
    quantization), the MACs spent when the input leaves here (every stage up to this one),
    and the threshold (None for the last exit, which always fires)."""

    name: str
    entry: str
    logits: str
    scale: float
    zero_point: int
    macs: int
    threshold: int | None = None
    table: EntropyTable | None = None

    def to_json(self) -> dict[str, Any]:
        d = {"name": self.name, "entry": self.entry, "logits": self.logits,
             "scale": self.scale, "zero_point": self.zero_point, "macs": self.macs,
             "threshold": self.threshold}
        if self.table is not None:
            d["table"] = self.table.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExitSpec:
        return cls(str(d["name"]), str(d["entry"]), str(d["logits"]), float(d["scale"]),
                   int(d["zero_point"]), int(d["macs"]),
                   None if d.get("threshold") is None else int(d["threshold"]),
                   EntropyTable.from_json(d["table"]) if d.get("table") else None)


@dataclass
class ExitPlan:
    """The exits of a bundle (``manifest["exits"]``): the rule, the stage entries in order,
    the exits, the gating tensor (``gate`` rule), the MACs of the model without exits (its
    last exit's path only) and the calibration summary (curve and chosen point)."""

    rule: str
    stages: list[str]
    exits: list[ExitSpec]
    input: str
    full_macs: int
    gate: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def thresholds(self) -> list[int]:
        return [int(e.threshold) for e in self.exits[:-1]]

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "stages": list(self.stages),
                "exits": [e.to_json() for e in self.exits], "input": self.input,
                "full_macs": self.full_macs, "gate": self.gate,
                "calibration": self.calibration}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExitPlan:
        return cls(str(d["rule"]), [str(s) for s in d["stages"]],
                   [ExitSpec.from_json(e) for e in d["exits"]], str(d["input"]),
                   int(d["full_macs"]), d.get("gate"), dict(d.get("calibration", {})))

    @classmethod
    def of(cls, bundle: Any) -> ExitPlan | None:
        """The bundle's exit plan, or None for a bundle without exits."""
        d = getattr(bundle, "manifest", {}).get("exits")
        return None if d is None else cls.from_json(d)


def check_manifest_exits(d: Any, entries: set[str], fail: Any) -> None:
    """Type- and consistency-check a manifest's ``exits`` field (for :func:`load_bundle`);
    ``fail(field, what)`` builds the ModelFormatError."""
    if not isinstance(d, dict):
        raise fail("exits", "is not an object")
    if d.get("rule") not in RULES:
        raise fail("exits.rule", f"is {d.get('rule')!r}, not one of {', '.join(RULES)}")
    stages = d.get("stages")
    if not isinstance(stages, list) or not stages or any(
            not isinstance(s, str) or s not in entries for s in stages):
        raise fail("exits.stages", "must list the bundle's stage entries")
    for key, types in (("input", str), ("full_macs", int), ("calibration", dict)):
        v = d.get(key, {} if key == "calibration" else None)
        if not isinstance(v, types) or isinstance(v, bool):
            raise fail(f"exits.{key}", "is missing or of the wrong type")
    exits = d.get("exits")
    if not isinstance(exits, list) or len(exits) < 2:
        raise fail("exits.exits", "must list at least two exits")
    for i, e in enumerate(exits):
        if not isinstance(e, dict) or not isinstance(e.get("entry"), str) or \
                e.get("entry") not in stages or not isinstance(e.get("name"), str):
            raise fail(f"exits.exits[{i}]", "must name one of the stage entries")
        for key, types in (("logits", str), ("macs", int), ("zero_point", int),
                           ("scale", (int, float))):
            if not isinstance(e.get(key), types) or isinstance(e.get(key), bool):
                raise fail(f"exits.exits[{i}].{key}", "is missing or of the wrong type")
        last = i == len(exits) - 1
        t = e.get("threshold")
        if (t is not None and (not isinstance(t, int) or isinstance(t, bool))) or (
                t is None and not last):
            raise fail(f"exits.exits[{i}].threshold", "must be an integer (null only for the "
                       "last exit)")
        if d["rule"] == "entropy" and not last:
            tab = e.get("table")
            try:
                EntropyTable.from_json(tab)
                ok = len(tab["exp"]) > 0 and len(tab["ln"]) > 0 and 0 <= tab["shift"] < 62
            except (KeyError, TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise fail(f"exits.exits[{i}].table", "is not an entropy table")
    if d["rule"] == "gate" and not isinstance(d.get("gate"), str):
        raise fail("exits.gate", "must name the gating tensor")


def ancestors(tensor: str, producers: dict[str, Node]) -> set[int]:
    """ids of the nodes ``tensor`` depends on (its producer included)."""
    seen: set[int] = set()
    todo = [tensor]
    while todo:
        node = producers.get(todo.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        todo.extend(i for i in node.inputs if i)
    return seen


def subgraph(graph: Graph, nodes: Sequence[Node], name: str, outputs: set[str]) -> Graph:
    """``nodes`` (in order) as a graph of their own over the same tensors and weights: its
    inputs are the non-constant tensors they read and do not produce, its outputs
    ``outputs``."""
    sub = Graph(name)
    sub.metadata = dict(graph.metadata)
    produced = {o for n in nodes for o in n.outputs if o}
    for n in nodes:
        for t in n.inputs + n.outputs:
            if t and t not in sub.tensors:
                sub.add_tensor(graph.tensor(t))
                if t not in produced and not graph.tensor(t).is_constant:
                    sub.inputs.append(t)
        sub.nodes.append(n)
    sub.outputs = [o for n in nodes for o in n.outputs if o in outputs]
    return sub


def integer_tensor(graph: Graph, output: str) -> str:
    """The integer tensor behind a graph output (before its DequantizeLinear)."""
    if output in graph.metadata.get("quantized_outputs", {}):
        return graph.metadata["quantized_outputs"][output]
    p = graph.producers().get(output)
    if p is not None and p.op == "DequantizeLinear":
        return p.inputs[0]
    if output not in graph.tensors:
        raise InputError(f"graph {graph.name!r} has no output {output!r}; its outputs are "
                         f"{graph.outputs}")
    return output


def split_stages(graph: Graph, exits: Sequence[str], gate: str | None = None
                 ) -> dict[str, Graph]:
    """Cut ``graph`` into stage entry graphs, one per exit (integer tensor names, in order):
    ``stage_k`` holds the nodes exit k needs that no earlier stage holds and outputs exit k's
    logits plus whatever later stages read from it. The ``gate`` tensor's own nodes join the
    earliest stage after which all they read is available."""
    producers = graph.producers()
    order = graph.topological_order()
    stages: list[set[int]] = []
    done: set[int] = set()
    for k, t in enumerate(exits):
        if t not in producers:
            raise GraphError(f"exit tensor {t!r} is not computed by graph {graph.name!r}")
        own = ancestors(t, producers) - done
        if not own:
            raise GraphError(f"exit {k + 1} ({t!r}) adds no computation after the exits "
                             "before it; list the exits in the order the model computes them")
        stages.append(own)
        done |= own
    if gate is not None:
        if gate not in producers:
            raise GraphError(f"gate tensor {gate!r} is not computed by graph {graph.name!r}")
        anc = ancestors(gate, producers)
        own = anc - done
        upto: set[int] = set()
        for k, st in enumerate(stages):
            upto |= st
            if (anc - own) <= upto:
                stages[k] |= own
                break
    stage_of = {nid: k for k, st in enumerate(stages) for nid in st}
    needed: list[set[str]] = [set() for _ in stages]  # tensors each stage must output
    for k, st in enumerate(stages):
        for n in order:
            if id(n) not in st:
                continue
            for i in n.inputs:
                p = producers.get(i) if i else None
                if p is not None and stage_of.get(id(p), k) < k:
                    needed[stage_of[id(p)]].add(i)
    out: dict[str, Graph] = {}
    for k, st in enumerate(stages):
        name = f"{STAGE_PREFIX}{k + 1}"
        want = needed[k] | {exits[k]} | ({gate} if gate in producers and
                                         stage_of.get(id(producers[gate])) == k else set())
        sub = subgraph(graph, [n for n in order if id(n) in st], name, want)
        sub.outputs = [exits[k]] + ([gate] if gate in want else []) + sorted(
            needed[k] - {exits[k], gate})
        sub.metadata = {k2: v for k2, v in graph.metadata.items()
                        if k2 != "quantized_outputs"}
        out[name] = sub
    return out
