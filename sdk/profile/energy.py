"""Modelled energy: op counts × energy per op + bytes moved × energy per byte + static power × time.

``E = Σ_class count_class · e_class + Σ_level bytes_level · e_level + P_static · t``

Per-op energies come from an :class:`EnergyTable` (picojoules). The default is Horowitz's
45 nm table (ISSCC 2014) as EcoFormer uses it. Composite operations are built from its
primitives:

=============  ===============================  ================================
count          integer graph                    float graph
=============  ===============================  ================================
MAC            int8 multiply + int32 add        fp32 multiply + fp32 add
accumulate     int32 add                        fp32 add
add            int32 add                        fp32 add
mul            int8 multiply                    fp32 multiply
requant        int32 multiply + int32 add       (none)
other          int32 add                        fp32 add
=============  ===============================  ================================

so an fp32 graph costs ``multiplies · 3.7 pJ + additions · 0.9 pJ`` exactly as in EcoFormer's
accounting (a MAC is one multiply and one addition).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sdk.errors import TargetError
from sdk.profile.opcount import OpCount

PJ = 1e-12


@dataclass(frozen=True)
class EnergyTable:
    """Energy per primitive operation and per byte of memory traffic, in picojoules."""

    name: str
    source: str
    pj: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        try:
            return self.pj[key]
        except KeyError:
            raise TargetError(f"energy table {self.name!r} has no entry {key!r}; add it under "
                              "[energy.pj] in the target's TOML") from None

    def with_overrides(self, overrides: dict[str, float], board: str) -> EnergyTable:
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(self.pj))
        if unknown:
            raise TargetError(f"target {board!r}: [energy.pj] has unknown keys {unknown}; "
                              f"known keys: {sorted(self.pj)}")
        return EnergyTable(f"{self.name} + {board} overrides", self.source,
                           {**self.pj, **overrides})


HOROWITZ_45NM = EnergyTable(
    name="horowitz-45nm",
    source=("M. Horowitz, 'Computing's energy problem', ISSCC 2014, 45 nm, as used by "
            "EcoFormer. fp32 mul 3.7, fp32 add 0.9, int32 mul 3.1, int32 add 0.1 pJ, 8 KB "
            "cache 64-bit access 10 pJ are from the table; int8 add 0.03, int8 mul 0.2, fp16 "
            "add 0.4, fp16 mul 1.1 pJ and DRAM 1.3 nJ / 64 bit are commonly cited from it, "
            "not verified; flash uses the SRAM figure (not in the table)"),
    pj={
        "fp32_mul": 3.7, "fp32_add": 0.9, "fp16_mul": 1.1, "fp16_add": 0.4,
        "int32_mul": 3.1, "int32_add": 0.1, "int8_mul": 0.2, "int8_add": 0.03,
        "sram_byte": 10.0 / 8,          # 8 KB cache, 64-bit access ≈ 10 pJ
        "dram_byte": 1300.0 / 8,        # 1.3 nJ per 64-bit access (low end of 1.3-2.6 nJ)
        "flash_byte": 10.0 / 8,
    },
)

TABLES: dict[str, EnergyTable] = {HOROWITZ_45NM.name: HOROWITZ_45NM}


def table_for(name: str, overrides: dict[str, float] | None = None,
              board: str = "") -> EnergyTable:
    """A named table, with a board's ``[energy.pj]`` overrides applied."""
    if name not in TABLES:
        raise TargetError(f"energy table {name!r} is unknown; known tables: {sorted(TABLES)}")
    return TABLES[name].with_overrides(overrides or {}, board)


def compute_energy_pj(c: OpCount, table: EnergyTable, arithmetic: str | None = None) -> float:
    """Arithmetic energy of one node; ``arithmetic`` ("int"/"fp32") overrides the node's own,
    e.g. to price an integer layer as if it ran in fp32."""
    a = arithmetic or c.arithmetic
    if a == "fp32":
        mul, add = table["fp32_mul"], table["fp32_add"]
        return (c.macs * (mul + add) + c.accumulates * add + c.adds * add + c.muls * mul
                + c.other * add)
    if a == "int":
        add = table["int32_add"]
        return (c.macs * (table["int8_mul"] + add) + c.accumulates * add + c.adds * add
                + c.muls * table["int8_mul"] + c.requants * (table["int32_mul"] + add)
                + c.other * add)
    raise ValueError(f"arithmetic must be 'int' or 'fp32', got {a!r}")


def memory_energy_pj(c: OpCount, table: EnergyTable, weights_in: str,
                     activations_in: str) -> float:
    """Traffic energy: weight bytes at the weight memory's cost, activation bytes at the
    activation memory's cost."""
    return (c.weight_bytes * table[f"{weights_in}_byte"]
            + (c.activation_read_bytes + c.activation_write_bytes)
            * table[f"{activations_in}_byte"])
