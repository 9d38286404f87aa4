"""Power and energy sensors. :func:`open_meter` returns a working meter for a target on this
machine, or None with the reason ("no sensor"), never an invented number."""

from __future__ import annotations

from targets.model import PowerSensor, Target
from targets.sensors.base import EnergyMeasurement, EnergyMeter, SensorUnavailable

__all__ = ["EnergyMeasurement", "EnergyMeter", "SensorUnavailable", "open_meter",
           "open_sensor"]


def open_sensor(sensor: PowerSensor) -> EnergyMeter:
    """A meter for one sensor entry of a target profile; raises SensorUnavailable."""
    p = sensor.params
    if sensor.kind == "rapl":
        from targets.sensors.rapl import DEFAULT_ROOT, RaplMeter
        return RaplMeter(p.get("root", DEFAULT_ROOT), p.get("domain", "package"))
    if sensor.kind == "ina3221":
        from targets.sensors.ina3221 import Ina3221Meter
        return Ina3221Meter(p["hwmon_glob"], p.get("iio_glob", ""), p.get("rail", "VDD_IN"))
    if sensor.kind == "pi5-pmic":
        from targets.sensors.pi5_pmic import Pi5PmicMeter
        return Pi5PmicMeter(p.get("command", ("vcgencmd", "pmic_read_adc")))
    if sensor.kind in ("ina219", "ina226"):
        from targets.sensors.ina2xx import Ina2xxMeter
        return Ina2xxMeter(sensor.kind, p.get("bus", 1), p.get("address", 0x40),
                           p.get("shunt_ohms", 0.1))
    raise SensorUnavailable(f"{sensor.kind} energy comes from the device's cycle count "
                            "(see targets.sensors.mcu), not from a host-side meter")


def open_meter(target: Target) -> tuple[EnergyMeter | None, str]:
    """The first sensor of ``target`` that works here, or (None, why none did)."""
    reasons = []
    for s in target.power_sensors:
        try:
            return open_sensor(s), ""
        except SensorUnavailable as exc:
            reasons.append(f"{s.kind}: {exc}")
    return None, "; ".join(reasons) or f"target {target.name!r} lists no power sensor"
