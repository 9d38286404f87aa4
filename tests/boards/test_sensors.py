"""Power-sensor readers against fixture trees laid out like the real sysfs files and against
the Pi 5 firmware's command output; INA219/INA226 register decoding against datasheet values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from targets import load_target
from targets.sensors import SensorUnavailable, open_meter
from targets.sensors.ina2xx import Ina2xxMeter, ina219_decode, ina226_decode, word
from targets.sensors.ina3221 import Ina3221Meter, hwmon_rails, iio_rails
from targets.sensors.mcu import energy_from_cycles
from targets.sensors.pi5_pmic import parse_pmic_read_adc, total_power_w
from targets.sensors.rapl import RaplMeter, energy_delta_uj, find_domains

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture
def rapl_root(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    shutil.copytree(FIX / "sys/class/powercap", root)
    return root


def test_rapl_finds_package_domains_only(rapl_root: Path) -> None:
    domains = find_domains(rapl_root)
    assert [d.name for d in domains] == ["package-0"]
    assert domains[0].max_energy_range_uj == 262143328850


def test_rapl_energy_of_a_workload(rapl_root: Path) -> None:
    meter = RaplMeter(rapl_root)
    counter = rapl_root / "intel-rapl:0/energy_uj"

    def workload() -> str:
        counter.write_text("73923973011\n")      # +2.5 J while the workload ran
        return "done"

    result, m = meter.measure(workload)
    assert result == "done" and m.energy_j == pytest.approx(2.5)
    assert m.sensor == "rapl:package-0"


def test_rapl_counter_wrap_around(rapl_root: Path) -> None:
    assert energy_delta_uj(262143328000, 150, 262143328850) == 1000
    meter = RaplMeter(rapl_root)
    counter = rapl_root / "intel-rapl:0/energy_uj"
    counter.write_text("262143000000\n")

    def workload() -> None:
        counter.write_text("671150\n")           # wrapped: 328850 + 671150 uJ = 1.0 J

    _, m = meter.measure(workload)
    assert m.energy_j == pytest.approx(1.0)


def test_rapl_absent_or_root_only_is_reported_not_guessed(tmp_path: Path, rapl_root: Path) -> None:
    with pytest.raises(SensorUnavailable, match="no RAPL domains"):
        find_domains(tmp_path / "empty")
    import os
    if os.geteuid() == 0:
        pytest.skip("root can read any file; the permission case needs a normal user")
    (rapl_root / "intel-rapl:0/energy_uj").chmod(0)
    with pytest.raises(SensorUnavailable, match="not readable"):
        find_domains(rapl_root)


def test_rapl_on_this_machine_reads_for_real_or_says_no_sensor() -> None:
    meter, why = open_meter(load_target("laptop"))
    if meter is None:
        assert why.startswith("rapl: ") and ("no RAPL" in why or "not readable" in why)
        return
    _, m = meter.measure(lambda: sum(i * i for i in range(200_000)))
    assert m.energy_j > 0 and m.seconds > 0


def test_jetson_hwmon_rails() -> None:
    d = FIX / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    rails = hwmon_rails(d)
    assert rails == pytest.approx({"VDD_IN": 5048 * 1216 / 1e6,
                                   "VDD_CPU_GPU_CV": 5040 * 327 / 1e6,
                                   "VDD_SOC": 5048 * 400 / 1e6})


def test_jetson_old_iio_rails() -> None:
    rails = iio_rails(FIX / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0")
    assert rails == pytest.approx({"POM_5V_IN": 2.488, "POM_5V_GPU": 0.039, "POM_5V_CPU": 0.398})


def test_jetson_meter_integrates_vdd_in() -> None:
    meter = Ina3221Meter(str(FIX / "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"),
                         str(FIX / "sys/bus/i2c/drivers/ina3221x/*/iio:device*"))
    import time
    _, m = meter.measure(lambda: time.sleep(0.05))
    assert m.mean_power_w == pytest.approx(5048 * 1216 / 1e6, rel=1e-9)
    with pytest.raises(SensorUnavailable, match="no rail 'VDD_GPU'"):
        Ina3221Meter(str(FIX / "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"), rail="VDD_GPU")


def test_jetson_falls_back_to_iio_driver() -> None:
    meter = Ina3221Meter(str(FIX / "nothing/hwmon*"),
                         str(FIX / "sys/bus/i2c/drivers/ina3221x/*/iio:device*"), "POM_5V_IN")
    assert meter.read_power_w() == pytest.approx(2.488)


def test_pi5_pmic_output_parsing() -> None:
    text = (FIX / "vcgencmd_pmic_read_adc.txt").read_text()
    rails = parse_pmic_read_adc(text)
    assert "EXT5V" not in rails and "BATT" not in rails and len(rails) == 12
    assert rails["VDD_CORE"] == (0.6934, 0.720871)
    expected = sum(a * v for a, v in rails.values())
    assert total_power_w(text) == pytest.approx(expected)
    assert 0.5 < expected < 2.0                 # an idle Pi 5's PMIC rails


def test_pi5_meter_without_vcgencmd_says_why() -> None:
    from targets.sensors.pi5_pmic import Pi5PmicMeter
    if shutil.which("vcgencmd"):
        pytest.skip("this machine has vcgencmd")
    with pytest.raises(SensorUnavailable, match="not installed"):
        Pi5PmicMeter()


def test_ina219_register_decoding() -> None:
    # datasheet examples: shunt register 0x7D00 = +320 mV, 0x8300 = -320 mV (PGA /8, 10 uV LSB)
    assert ina219_decode(0x7D00, 0x0002, 0.1).shunt_v == pytest.approx(0.320)
    assert ina219_decode(0x8300, 0x0002, 0.1).shunt_v == pytest.approx(-0.320)
    # bus 5.1 V (1275 x 4 mV in bits 15..3, CNVR set), 48.2 mV over 0.1 ohm
    r = ina219_decode(word(0x12, 0xD4), word(0x27, 0xDA), 0.1)
    assert (r.bus_v, r.current_a) == (pytest.approx(5.1), pytest.approx(0.482))
    assert r.power_w == pytest.approx(5.1 * 0.482)
    with pytest.raises(SensorUnavailable, match="overflow"):
        ina219_decode(0x7D00, 0x27DB, 0.1)


def test_ina226_register_decoding() -> None:
    # 12 mV over 10 mohm (4800 x 2.5 uV) at 5.05 V (4040 x 1.25 mV)
    r = ina226_decode(0x12C0, 0x0FC8, 0.01)
    assert (r.bus_v, r.current_a) == (pytest.approx(5.05), pytest.approx(1.2))
    assert ina226_decode(0xFFFF, 0x0FC8, 0.01).shunt_v == pytest.approx(-2.5e-6)


def test_ina_on_a_machine_without_i2c_is_unavailable() -> None:
    if Path("/dev/i2c-1").exists():
        pytest.skip("this machine has an I2C bus")
    with pytest.raises(SensorUnavailable, match="i2c-1"):
        Ina2xxMeter("ina219", 1, 0x40, 0.1)


def test_mcu_energy_from_cycle_count() -> None:
    t = load_target("stm32h7")
    m = energy_from_cycles(4_800_000, t)          # 10 ms at 480 MHz
    assert m.seconds == pytest.approx(0.01)
    assert m.energy_j == pytest.approx(0.01 * t.power.active_w)
