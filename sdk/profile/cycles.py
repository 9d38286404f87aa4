"""Cortex-M cycle model: an executed-instruction mix (from QEMU, :mod:`sdk.profile.qemu_mix`)
priced in core cycles, plus flash wait states from the board's clock and flash figures.

QEMU counts instructions, not cycles: it models neither the pipeline nor memory latency.
This module turns the per-instruction execution counts into modelled cycles:

``cycles = Σ_class count_class · cost_class(core) + taken_branches · refill(core)
+ pipelined_ls · (-1 on Cortex-M4) + flash_line_fetches · wait_states``

* **Cortex-M4** costs are the *Processor instruction timings* of the Cortex-M4 Technical
  Reference Manual (Arm DDI 0439): data processing, MUL/MLA and the DSP / long multiplies
  (SMULL, SMLAL, SMLAD, SMLALD ...) 1 cycle; LDR/STR single 2 cycles, 1 when it follows
  another load/store single (address and data phases pipeline); LDM/STM/PUSH 1+N
  (N registers), POP/LDM with PC 1+N+P; LDRD/STRD 1+N with N=2; SDIV/UDIV 2-12 (we charge
  7, the middle); branches 1, taken 1+P where P, the pipeline refill, is 1-3 (we charge 2).
* **Cortex-M7**: Arm publishes no per-instruction table for the M7. Its manual describes a
  6-stage dual-issue pipeline with one load/store pipe, one MAC pipe, two ALUs and a branch
  predictor; the model charges issue slots: data processing ½ cycle (two per cycle), a
  multiply/MAC 1 (one MAC pipe), a load/store 1, LDM/STM/PUSH/POP ½+N/2 (64-bit path),
  SDIV 7, a taken branch 1 (predicted; no refill charged). This is an *estimate* of
  throughput, labelled as such wherever it is used.
* **Flash wait states**: reads of weights from flash (counted by the QEMU plugin per
  flash line: a read that leaves the line of the previous flash read is a line fetch)
  cost ``wait_states`` extra cycles per line fetch. ``wait_states = ceil(clock ·
  line_bytes / flash_bandwidth) - 1`` from the board TOML's ``clock_hz`` and
  ``flash_bandwidth_bytes_per_s`` (e.g. an STM32L4+ at 120 MHz: 64-bit lines, 5 wait
  states → 160 MB/s). On the M4 the line is the 8-byte flash word (ART prefetch buffer);
  on the M7 the 32-byte L1 D-cache line (a miss per line of streamed weights; reuse in the
  16 KB D-cache is not modelled, so streaming weights are an upper bound there).
  Instruction fetch is assumed to hit the ART / I-cache (kernel loops are small).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sdk.errors import TargetError

CLASSES = ("alu", "mul", "mac", "div", "load", "store", "load_multi", "store_multi",
           "branch", "other")

# Thumb-2 mnemonics by class (condition codes, .w/.n and the flag-setting s are stripped)
_ALU = {"add", "adds", "adc", "adcs", "sub", "subs", "sbc", "rsb", "mov", "movs", "movw",
        "movt", "mvn", "cmp", "cmn", "tst", "teq", "and", "orr", "orn", "eor", "bic", "lsl",
        "lsr", "asr", "ror", "rrx", "uxtb", "uxth", "sxtb", "sxth", "uxtab", "uxtah", "sxtab",
        "sxtah", "ubfx", "sbfx", "bfi", "bfc", "clz", "rev", "rev16", "revsh", "rbit", "adr",
        "neg", "ssat", "usat", "ssat16", "usat16", "sel", "it", "nop", "addw", "subw",
        "uxtb16", "sxtb16", "uxtab16", "sxtab16", "pkhbt", "pkhtb", "qadd", "qsub", "qadd16",
        "qsub16", "qadd8", "qsub8", "sadd16", "ssub16", "sadd8", "ssub8", "uadd8", "usub8",
        "uadd16", "usub16", "shadd16", "uqadd8", "uqsub8", "qdadd", "qdsub", "usad8",
        "usada8", "tbb_", "dmb", "dsb", "isb", "cpsid", "cpsie", "mrs", "msr", "wfi", "wfe",
        "sev", "bkpt", "svc", "udf"}
_MUL = {"mul", "mla", "mls", "smulbb", "smulbt", "smultb", "smultt", "smulwb", "smulwt",
        "smmul", "smmulr"}
_MAC = {"smull", "umull", "smlal", "umlal", "umaal", "smlad", "smladx", "smlsd", "smlsdx",
        "smlald", "smlaldx", "smlsld", "smlsldx", "smuad", "smuadx", "smusd", "smusdx",
        "smlabb", "smlabt", "smlatb", "smlatt", "smlawb", "smlawt", "smlalbb", "smlalbt",
        "smlaltb", "smlaltt", "smmla", "smmlar", "smmls", "smmlsr"}
_DIV = {"sdiv", "udiv"}
_LOAD = {"ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrex", "ldrexb", "ldrexh", "ldrt",
         "ldrbt", "ldrht", "ldrsbt", "ldrsht", "pld", "vldr"}
_STORE = {"str", "strb", "strh", "strex", "strexb", "strexh", "strt", "strbt", "strht",
          "vstr"}
_LOAD_MULTI = {"ldm", "ldmia", "ldmdb", "ldmfd", "pop", "ldrd", "vldm", "vpop"}
_STORE_MULTI = {"stm", "stmia", "stmdb", "stmea", "push", "strd", "vstm", "vpush"}
_BRANCH = {"b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"}
_COND = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt",
         "gt", "le", "al")


def mnemonic(disas: str) -> str:
    """The base mnemonic of one disassembled Thumb-2 instruction (``"ldrsb.w r1, [r2]"`` →
    ``ldrsb``; ``"bne #0x5f0"`` → ``b``; ``"addeq r0, r1"`` → ``add``)."""
    word = disas.strip().split(None, 1)[0].lower() if disas.strip() else ""
    word = word.split(".", 1)[0]
    if word in _BRANCH or word in _ALU or word in _MUL or word in _MAC or word in _DIV \
            or word in _LOAD or word in _STORE or word in _LOAD_MULTI or word in _STORE_MULTI:
        return word
    for cond in _COND:                       # conditional forms: bne, ldrge, movne, addeq ...
        if word.endswith(cond) and len(word) > len(cond):
            base = word[: -len(cond)]
            if base in _BRANCH or _known(base) or _known(base.rstrip("s")):
                return base if _known(base) or base in _BRANCH else base.rstrip("s")
    if word.endswith("s") and _known(word[:-1]):     # flag-setting forms: lsls, muls, ands
        return word[:-1]
    return word


def _known(word: str) -> bool:
    return any(word in s for s in (_ALU, _MUL, _MAC, _DIV, _LOAD, _STORE, _LOAD_MULTI,
                                   _STORE_MULTI, _BRANCH))


def classify(disas: str) -> str:
    """The cost class (one of :data:`CLASSES`) of one disassembled instruction."""
    m = mnemonic(disas)
    for cls, names in (("branch", _BRANCH), ("mac", _MAC), ("mul", _MUL), ("div", _DIV),
                       ("load_multi", _LOAD_MULTI), ("store_multi", _STORE_MULTI),
                       ("load", _LOAD), ("store", _STORE), ("alu", _ALU)):
        if m in names:
            if cls == "load" and _writes_pc(disas):
                return "branch"              # ldr pc, [...]: a jump
            return cls
    return "other"


def _writes_pc(disas: str) -> bool:
    ops = disas.split(None, 1)[1] if " " in disas.strip() else ""
    return ops.replace(" ", "").lower().startswith("pc,")


def register_count(disas: str) -> int:
    """Registers moved by a multiple load/store (``push {r4, r5, lr}`` → 3, ``ldrd`` → 2)."""
    m = mnemonic(disas)
    if m in ("ldrd", "strd"):
        return 2
    braces = re.search(r"\{([^}]*)\}", disas)
    if not braces:
        return 1
    n = 0
    for part in braces.group(1).split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (re.sub(r"\D", "", p) for p in part.split("-", 1))
            n += int(hi) - int(lo) + 1 if lo and hi else 1
        elif part:
            n += 1
    return n


@dataclass
class InstructionMix:
    """Executed instructions by cost class, with the counts the timing rules need."""

    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0.0))
    multi_registers: float = 0.0        # Σ registers moved by LDM/STM/PUSH/POP/LDRD/STRD
    pops_to_pc: float = 0.0             # POP/LDM that load PC (a taken branch)
    taken_branches: float = 0.0         # branches that were taken (incl. bl, bx, pop pc)
    pipelined_ls: float = 0.0           # load/store singles right after a load/store single
    flash_reads: float = 0.0            # loads from the flash window
    flash_lines_8: float = 0.0          # ... that left the previous flash read's 8-byte line
    flash_lines_32: float = 0.0         # ... its 32-byte line

    @property
    def instructions(self) -> float:
        return sum(self.counts.values())

    def scaled(self, k: float) -> InstructionMix:
        """This mix times ``k`` (e.g. 1/runs for one inference)."""
        return InstructionMix({c: v * k for c, v in self.counts.items()},
                              self.multi_registers * k, self.pops_to_pc * k,
                              self.taken_branches * k, self.pipelined_ls * k,
                              self.flash_reads * k, self.flash_lines_8 * k,
                              self.flash_lines_32 * k)

    def to_json(self) -> dict:
        return {"instructions": self.instructions, "classes": dict(self.counts),
                "multi_registers": self.multi_registers, "pops_to_pc": self.pops_to_pc,
                "taken_branches": self.taken_branches, "pipelined_ls": self.pipelined_ls,
                "flash_reads": self.flash_reads, "flash_lines_8": self.flash_lines_8,
                "flash_lines_32": self.flash_lines_32}


@dataclass(frozen=True)
class CoreTiming:
    """Per-class cycle costs of one core (see the module docstring for the sources)."""

    core: str
    source: str
    cost: Mapping[str, float]
    per_register: float          # LDM/STM/PUSH/POP: cycles per register moved
    taken_branch_extra: float    # pipeline refill P on a taken branch
    pipelined_ls_saving: float   # cycles saved by a load/store single after one
    flash_line_bytes: int        # what one flash wait-state fetch brings in
    estimate: bool               # True: no published per-instruction table


CORTEX_M4 = CoreTiming(
    core="Cortex-M4",
    source=("Arm Cortex-M4 TRM (DDI 0439) 'Processor instruction timings': ALU/MUL/DSP MAC "
            "1, LDR/STR 2 (1 when pipelined after a load/store), LDM/STM 1+N, SDIV 2-12 "
            "(7 charged), taken branch 1+P (P=2 charged)"),
    cost={"alu": 1, "mul": 1, "mac": 1, "div": 7, "load": 2, "store": 2, "load_multi": 1,
          "store_multi": 1, "branch": 1, "other": 1},
    per_register=1.0, taken_branch_extra=2.0, pipelined_ls_saving=1.0, flash_line_bytes=8,
    estimate=False)

CORTEX_M7 = CoreTiming(
    core="Cortex-M7",
    source=("estimate from the Cortex-M7 TRM's pipeline description (dual issue, one "
            "load/store and one MAC pipe, branch prediction); Arm publishes no per-"
            "instruction cycle table for the M7"),
    cost={"alu": 0.5, "mul": 1, "mac": 1, "div": 7, "load": 1, "store": 1, "load_multi": 0.5,
          "store_multi": 0.5, "branch": 1, "other": 1},
    per_register=0.5, taken_branch_extra=0.0, pipelined_ls_saving=0.0, flash_line_bytes=32,
    estimate=True)

CORES = {"cortex-m4": CORTEX_M4, "cortex-m7": CORTEX_M7}


def core_timing(core: str) -> CoreTiming:
    """The timing table for a core name as board TOMLs spell it (``Cortex-M4``)."""
    try:
        return CORES[core.lower()]
    except KeyError:
        raise TargetError(f"no cycle model for core {core!r}; cycle models exist for "
                          f"{sorted(t.core for t in CORES.values())}") from None


def flash_wait_states(clock_hz: float, flash_bandwidth_bytes_per_s: float,
                      line_bytes: int) -> int:
    """Wait states per flash line fetch implied by the board's figures: one line every
    ``line_bytes / bandwidth`` seconds is ``ceil(clock · line / bandwidth)`` cycles, of which
    one is the access itself. 0 when the board gives no flash bandwidth."""
    if flash_bandwidth_bytes_per_s <= 0:
        return 0
    return max(0, math.ceil(clock_hz * line_bytes / flash_bandwidth_bytes_per_s - 1e-9) - 1)


@dataclass
class CycleEstimate:
    core: str
    clock_hz: float
    wait_states: int
    core_cycles: float           # pipeline cycles without flash stalls
    flash_stall_cycles: float
    estimate_core: bool
    by_class: dict[str, float]

    @property
    def cycles(self) -> float:
        return self.core_cycles + self.flash_stall_cycles

    @property
    def seconds(self) -> float:
        return self.cycles / self.clock_hz

    def to_json(self) -> dict:
        return {"core": self.core, "clock_hz": self.clock_hz, "wait_states": self.wait_states,
                "core_cycles": self.core_cycles, "flash_stall_cycles": self.flash_stall_cycles,
                "cycles": self.cycles, "seconds": self.seconds,
                "core_timing_is_estimate": self.estimate_core, "by_class": self.by_class}


def estimate_cycles(mix: InstructionMix, timing: CoreTiming, clock_hz: float,
                    wait_states: int = 0) -> CycleEstimate:
    """Modelled cycles of ``mix`` on ``timing``'s core at ``clock_hz`` with ``wait_states``
    per flash line fetch."""
    by_class = {c: mix.counts.get(c, 0.0) * timing.cost[c] for c in CLASSES}
    by_class["load_multi"] += mix.multi_registers * timing.per_register  # the N of 1+N
    by_class["branch"] += mix.taken_branches * timing.taken_branch_extra
    by_class["load"] -= mix.pipelined_ls * timing.pipelined_ls_saving
    core_cycles = sum(by_class.values())
    lines = mix.flash_lines_8 if timing.flash_line_bytes <= 8 else mix.flash_lines_32
    return CycleEstimate(timing.core, clock_hz, wait_states, core_cycles, lines * wait_states,
                         timing.estimate, by_class)


def estimate_for_target(mix: InstructionMix, target) -> CycleEstimate:
    """:func:`estimate_cycles` with the core, clock and flash wait states of a board
    (:class:`targets.Target`)."""
    timing = core_timing(target.cpu.core)
    ws = flash_wait_states(target.cpu.clock_hz, target.memory.flash_bandwidth_bytes_per_s,
                           timing.flash_line_bytes)
    return estimate_cycles(mix, timing, target.cpu.clock_hz, ws)
