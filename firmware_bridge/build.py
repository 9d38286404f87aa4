"""Build the firmware with make: the host build (gcc) and the Cortex-M4 build (arm-none-eabi-gcc).

Artefacts go to ``firmware_bridge/firmware/build/`` (git-ignored). make rebuilds only when a
source changed, so calling :func:`build_firmware` before every use is cheap.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from sdk.errors import DeviceError

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
BUILD_DIR = FIRMWARE_DIR / "build"
ARTEFACTS = {"host": BUILD_DIR / "host" / "edge-fw-host",
             "m4": BUILD_DIR / "m4" / "edge-fw-m4.elf"}
COMPILERS = {"host": "gcc", "m4": "arm-none-eabi-gcc"}


def toolchain_missing(kind: str) -> str | None:
    """Why ``kind`` cannot be built here, or None when it can."""
    for tool in ("make", COMPILERS[kind]):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (tools/bootstrap.sh installs it)"
    return None


def build_firmware(kind: str = "host") -> Path:
    """Build ``kind`` ('host' or 'm4') if needed and return the artefact's path."""
    if kind not in ARTEFACTS:
        raise DeviceError(f"unknown firmware build {kind!r}; use 'host' or 'm4'")
    why = toolchain_missing(kind)
    if why:
        raise DeviceError(f"cannot build the {kind} firmware: {why}")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test processes share one build
        proc = subprocess.run(["make", "-s", kind, f"BUILD={BUILD_DIR}"], cwd=FIRMWARE_DIR,
                              capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DeviceError(f"firmware build '{kind}' failed: " + " | ".join(tail))
    return ARTEFACTS[kind]
