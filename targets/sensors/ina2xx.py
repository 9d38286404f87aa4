"""INA219 / INA226 current-shunt monitors over I2C (smbus2).

Registers are 16-bit big-endian; they are read as two bytes ``[MSB, LSB]`` with
``read_i2c_block_data`` so no byte swap is needed. Current is computed from the shunt voltage
and the shunt resistor (no calibration register needed): ``I = V_shunt / R_shunt``,
``P = V_bus · I``.

* **INA219**: shunt voltage register 0x01, signed, LSB 10 µV; bus voltage register 0x02,
  bits 15..3 hold the value with LSB 4 mV (bit 1 CNVR, bit 0 OVF = math overflow).
* **INA226**: shunt voltage register 0x01, signed, LSB 2.5 µV; bus voltage register 0x02,
  LSB 1.25 mV; manufacturer ID register 0xFE reads 0x5449 ("TI"), die ID 0xFF reads 0x2260.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from targets.sensors.base import EnergyMeasurement, SensorUnavailable, integrate_power

T = TypeVar("T")

REG_SHUNT_VOLTAGE = 0x01
REG_BUS_VOLTAGE = 0x02
INA226_REG_MANUFACTURER_ID = 0xFE
INA226_MANUFACTURER_ID = 0x5449


def _signed16(raw: int) -> int:
    return raw - 0x10000 if raw & 0x8000 else raw


def word(msb: int, lsb: int) -> int:
    """A register value from its two bytes as they come over the bus."""
    return (msb << 8) | lsb


@dataclass(frozen=True)
class Reading:
    bus_v: float
    shunt_v: float
    current_a: float

    @property
    def power_w(self) -> float:
        return self.bus_v * self.current_a


def ina219_decode(shunt_raw: int, bus_raw: int, shunt_ohms: float) -> Reading:
    if bus_raw & 0x1:
        raise SensorUnavailable("INA219 reports a math overflow (OVF): current or power out "
                                "of range for the configured gain; raise the PGA range")
    shunt_v = _signed16(shunt_raw) * 10e-6
    bus_v = (bus_raw >> 3) * 4e-3
    return Reading(bus_v, shunt_v, shunt_v / shunt_ohms)


def ina226_decode(shunt_raw: int, bus_raw: int, shunt_ohms: float) -> Reading:
    shunt_v = _signed16(shunt_raw) * 2.5e-6
    bus_v = (bus_raw & 0x7FFF) * 1.25e-3
    return Reading(bus_v, shunt_v, shunt_v / shunt_ohms)


DECODERS = {"ina219": ina219_decode, "ina226": ina226_decode}


class Ina2xxMeter:
    """Reads one INA219 or INA226 on a real I2C bus (``/dev/i2c-<bus>``)."""

    def __init__(self, chip: str, bus: int = 1, address: int = 0x40,
                 shunt_ohms: float = 0.1) -> None:
        if chip not in DECODERS:
            raise ValueError(f"chip must be one of {sorted(DECODERS)}, got {chip!r}")
        try:
            from smbus2 import SMBus
            self._bus = SMBus(bus)
        except (OSError, ImportError) as exc:
            raise SensorUnavailable(f"I2C bus /dev/i2c-{bus} cannot be opened: {exc}") from None
        self.chip, self.address, self.shunt_ohms = chip, address, shunt_ohms
        self.name = f"{chip}:i2c-{bus}@0x{address:02x}"
        try:
            if chip == "ina226":
                mid = self._register(INA226_REG_MANUFACTURER_ID)
                if mid != INA226_MANUFACTURER_ID:
                    raise SensorUnavailable(f"device at 0x{address:02x} is not an INA226 "
                                            f"(manufacturer ID 0x{mid:04x})")
            self.read()
        except OSError as exc:
            raise SensorUnavailable(f"no {chip} answers at 0x{address:02x} on i2c-{bus}: "
                                    f"{exc}") from None

    def _register(self, reg: int) -> int:
        msb, lsb = self._bus.read_i2c_block_data(self.address, reg, 2)
        return word(msb, lsb)

    def read(self) -> Reading:
        return DECODERS[self.chip](self._register(REG_SHUNT_VOLTAGE),
                                   self._register(REG_BUS_VOLTAGE), self.shunt_ohms)

    def read_power_w(self) -> float:
        return self.read().power_w

    def measure(self, workload: Callable[[], T]) -> tuple[T, EnergyMeasurement]:
        return integrate_power(self.name, self.read_power_w, workload)
