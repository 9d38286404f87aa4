"""The Cortex-M cycle model on known instruction mixes (sdk.profile.cycles) and the parser of
the QEMU plugin's per-address counts (sdk.profile.qemu_mix.parse_counts)."""

from __future__ import annotations

import pytest

from sdk.errors import TargetError
from sdk.profile.cycles import (
    CORTEX_M4,
    CORTEX_M7,
    InstructionMix,
    classify,
    core_timing,
    estimate_cycles,
    flash_wait_states,
    register_count,
)
from sdk.profile.qemu_mix import parse_counts, read_counts, subtract_counts


@pytest.mark.parametrize("disas, cls", [
    ("ldrsb r1, [r2, #1]!", "load"), ("ldrsb.w r3, [r0, #1]!", "load"),
    ("str r0, [sp, #4]", "store"), ("strb.w r1, [r3], #1", "store"),
    ("smlal r4, sb, r3, r1", "mac"), ("smlad r0, r1, r2, r0", "mac"),
    ("mul r0, r1, r2", "mul"), ("muls r0, r1, r0", "mul"), ("sdiv r0, r1, r2", "div"),
    ("lsls r3, r3, #0x1e", "alu"), ("addeq r0, r1, #1", "alu"), ("eor.w r1, r3, r1", "alu"),
    ("uxtb r3, r3", "alu"), ("it ne", "alu"),
    ("bne #0x5f0", "branch"), ("b.w #0x100", "branch"), ("bl #0x3e70", "branch"),
    ("bx lr", "branch"), ("cbz r0, #0x20", "branch"), ("ldr pc, [sp], #4", "branch"),
    ("push {r4, r5, r6, lr}", "store_multi"), ("pop {r4, pc}", "load_multi"),
    ("ldrd r2, r3, [r0]", "load_multi"), ("stmia r0!, {r1, r2}", "store_multi"),
])
def test_instruction_classes(disas: str, cls: str) -> None:
    assert classify(disas) == cls


def test_register_counts() -> None:
    assert register_count("push {r4, r5, r6, lr}") == 4
    assert register_count("push {r4-r7, lr}") == 5
    assert register_count("ldrd r2, r3, [r0]") == 2
    assert register_count("ldr r0, [r1]") == 1


def _loop_counts(n: int) -> dict[int, list]:
    """A plain int8 MAC loop that ran ``n`` iterations, then one instruction after it, as the
    plugin reports it: address, count, flash reads, 8-byte lines, 32-byte lines, disas."""
    text = "\n".join([
        f"5f0 {n} {n} {n // 8} {n // 32} ldrsb r1, [r2, #1]!",
        f"5f4 {n} 0 0 0 ldrsb r3, [r0, #1]!",
        f"5f8 {n} 0 0 0 cmp r5, r2",
        f"5fa {n} 0 0 0 sub.w r3, r3, r7",
        f"5fe {n} 0 0 0 smlal r4, sb, r3, r1",
        f"602 {n} 0 0 0 bne #0x5f0",
        "604 1 0 0 0 mov r0, r4",
    ])
    return read_counts(text)


def test_parser_counts_taken_branches_and_pipelined_loads() -> None:
    n = 1000
    mix, functions = parse_counts(_loop_counts(n), frozenset(), [(0x5f0, 0x608, "k_fc")])
    assert mix.instructions == 6 * n + 1 and functions == {"k_fc": 6 * n + 1}
    assert mix.counts["load"] == 2 * n and mix.counts["mac"] == n
    assert mix.counts["alu"] == 2 * n + 1 and mix.counts["branch"] == n
    assert mix.taken_branches == n - 1          # the last test falls through
    assert mix.pipelined_ls == n                # the second ldrsb follows the first
    assert mix.flash_reads == n and mix.flash_lines_8 == n // 8


def test_cortex_m4_prices_the_loop_with_its_trm_timings() -> None:
    """Per iteration: LDRSB 2 + LDRSB 1 (pipelined) + CMP 1 + SUB 1 + SMLAL 1 + BNE 1 + refill
    2 when taken = 9 cycles; the fall-through MOV 1; flash: 5 wait states per 8-byte line."""
    n = 1000
    mix, _ = parse_counts(_loop_counts(n), frozenset(), [(0x5f0, 0x608, "k_fc")])
    est = estimate_cycles(mix, CORTEX_M4, 120e6, wait_states=5)
    assert est.core_cycles == 9 * n - 2 + 1
    assert est.flash_stall_cycles == (n // 8) * 5
    assert est.seconds == pytest.approx(est.cycles / 120e6)
    assert not est.estimate_core


def test_cortex_m7_dual_issue_estimate_is_cheaper_and_labelled() -> None:
    n = 1000
    mix, _ = parse_counts(_loop_counts(n), frozenset(), [(0x5f0, 0x608, "k_fc")])
    est = estimate_cycles(mix, CORTEX_M7, 280e6, wait_states=13)
    # loads 2x1, ALU 2x0.5, MAC 1, branch 1 (predicted: no refill) per iteration; MOV 0.5
    assert est.core_cycles == pytest.approx(5 * n + 0.5)
    assert est.flash_stall_cycles == (n // 32) * 13
    assert est.estimate_core


def test_multiple_loads_cost_one_plus_n_and_pop_pc_is_a_taken_branch() -> None:
    text = "100 10 0 0 0 push {r4, r5, r6, lr}\n104 10 0 0 0 pop {r4, r5, r6, pc}"
    mix, _ = parse_counts(read_counts(text), frozenset(), [(0x100, 0x108, "f")])
    assert mix.multi_registers == 80 and mix.taken_branches == 10
    est = estimate_cycles(mix, CORTEX_M4, 1e6)
    assert est.core_cycles == 10 * (1 + 4) + 10 * (1 + 4 + 2)


def test_excluded_functions_and_subtracted_runs() -> None:
    more = read_counts("10 30 0 0 0 adds r0, #1\n20 7 0 0 0 adds r1, #1")
    less = read_counts("10 10 0 0 0 adds r0, #1\n20 7 0 0 0 adds r1, #1")
    diff = subtract_counts(more, less)
    assert list(diff) == [0x10] and diff[0x10][0] == 20
    mix, fn = parse_counts(more, frozenset({"uart_poll"}),
                           [(0x10, 0x14, "kernel"), (0x20, 0x24, "uart_poll")])
    assert mix.instructions == 30 and fn == {"kernel": 30}


def test_flash_wait_states_follow_the_board_figures() -> None:
    assert flash_wait_states(120e6, 160e6, 8) == 5      # STM32L4+ at 120 MHz
    assert flash_wait_states(280e6, 640e6, 32) == 13    # H7A3: two 7-cycle 16-byte reads
    assert flash_wait_states(25e6, 0.0, 8) == 0         # no flash figure: no stalls
    mix = InstructionMix()
    mix.flash_lines_8 = 100.0
    assert estimate_cycles(mix, CORTEX_M4, 120e6, 5).flash_stall_cycles == 500


def test_unknown_core_is_refused() -> None:
    assert core_timing("cortex-m4") is CORTEX_M4
    with pytest.raises(TargetError, match="no cycle model for core 'Cortex-A72'"):
        core_timing("Cortex-A72")
