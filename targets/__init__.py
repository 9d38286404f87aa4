"""Board profiles: one TOML file per board, loaded into a :class:`Target`.

>>> from targets import load_target
>>> load_target("stm32h7").memory.ram_bytes
1048576
"""

from targets.loader import ENV_VAR, list_targets, load_target, parse_target, skipped_targets
from targets.model import Accelerator, Cpu, Memory, Power, PowerSensor, Target

__all__ = [
           "ENV_VAR",
           "Accelerator",
           "Cpu",
           "Memory",
           "Power",
           "PowerSensor",
           "Target",
           "list_targets",
           "load_target",
           "parse_target",
           "skipped_targets",
]
