"""Early exit on the microcontroller: one flash image of all stages, in stage order, with an
exit check (firmware opcodes 30-33, ``firmware/src/kernels_exit.c``) after each early stage.
The firmware evaluates the bundle's integer rule there; when it fires it skips every
remaining op and reports the exit in its INVOKE reply.

    packed = pack_exit_image(bundle)
    dev = DeviceExitModel(DeviceClient(url), bundle)    # loads the image if needed
    r = dev.run({"x": x})                                # r.exit, r.label, r.logits, r.ticks
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdk.errors import InputError
from sdk.exits.plan import ExitPlan
from sdk.graph.ir import Graph

#: firmware opcodes of the exit checks (firmware/src/model.c)
OPCODES = {"margin": 30, "entropy": 31, "patience": 32, "gate": 33}


def _plan(bundle: Any) -> ExitPlan:
    plan = ExitPlan.of(bundle)
    if plan is None:
        raise InputError("this bundle has no exits; compile it with --exits")
    return plan


def device_graph(bundle: Any) -> Graph:
    """The stages' nodes one after another (stage order) over the main graph's tensors; its
    outputs are every exit's integer logits (and the gate)."""
    plan = _plan(bundle)
    main = bundle.graph
    g = Graph(f"{main.name}_exits")
    g.metadata = {k: v for k, v in main.metadata.items() if k != "quantized_outputs"}
    for s in plan.stages:
        for n in bundle.entry(s).nodes:
            g.nodes.append(n)
            for t in n.inputs + n.outputs:
                if t and t not in g.tensors:
                    g.add_tensor(main.tensor(t))
    g.inputs = [plan.input]
    g.outputs = [e.logits for e in plan.exits] + ([plan.gate] if plan.gate else [])
    return g


def exit_records(bundle: Any) -> tuple[dict[str, list], dict[str, np.ndarray]]:
    """(tensor -> the exit check record placed after its producer, extra constants): one
    check after the last node of each early stage."""
    from firmware_bridge.op_encoders import OpRecord

    plan = _plan(bundle)
    after: dict[str, list] = {}
    consts: dict[str, np.ndarray] = {}
    for k, (spec, thr) in enumerate(zip(plan.exits[:-1], plan.thresholds)):
        last = bundle.entry(spec.entry).nodes[-1].outputs[0]
        ins, params = [spec.logits], [k, int(thr)]
        if plan.rule == "entropy":
            e, ln = f"exit{k}_exp_table", f"exit{k}_ln_table"
            consts[e] = np.asarray(spec.table.exp, np.int32)
            consts[ln] = np.asarray(spec.table.ln, np.int32)
            ins += [e, ln]
            params += [spec.table.shift, spec.table.s16]
        elif plan.rule == "gate":
            ins = [plan.gate]
        after.setdefault(last, []).append(OpRecord(OPCODES[plan.rule], ins, [], params))
    return after, consts


def pack_exit_image(bundle: Any, packed_kernels: bool = True):
    """The flash image (``firmware_bridge.image.PackedImage``) of an early-exit bundle."""
    from firmware_bridge.image import pack_image

    after, consts = exit_records(bundle)
    return pack_image(device_graph(bundle), packed_kernels=packed_kernels, after=after,
                      constants=consts)


@dataclass
class DeviceExitResult:
    exit: int
    label: int
    logits: np.ndarray   #: the fired exit's integer logits, as the device computed them
    ticks: int           #: device ticks of the invocation (instructions under QEMU -icount)


class DeviceExitModel:
    """An early-exit bundle on a device (``firmware_bridge.client.DeviceClient``)."""

    def __init__(self, client: Any, bundle: Any, packed_kernels: bool = True) -> None:
        from firmware_bridge.session import DeviceModel

        self.plan = _plan(bundle)
        self.packed = pack_exit_image(bundle, packed_kernels)
        self.device = DeviceModel(client, self.packed)

    def run(self, feeds: Mapping[str, Any]) -> DeviceExitResult:
        out = self.device.run({self.plan.input: np.asarray(feeds[self.plan.input],
                                                           np.float32)}, raw=True)
        fired = self.device.last_exit
        k = len(self.plan.exits) - 1 if fired is None else int(fired)
        q = np.asarray(out[self.plan.exits[k].logits]).reshape(-1)
        return DeviceExitResult(k, int(np.argmax(q)), q, int(self.device.last_ticks))
