"""``edge agent --install-service``: the systemd unit shipped with the package
(``sdk/agent/edge-agent.service``), filled in with this Python and the agent's options."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from sdk.errors import DeviceError

UNIT_NAME = "edge-agent.service"


def unit_text(agent_args: list[str], root: Path) -> str:
    template = resources.files("sdk.agent").joinpath(UNIT_NAME).read_text()
    cmd = [sys.executable, "-m", "sdk.cli.main", "agent", *agent_args]
    return (template.replace("@EXEC_START@", " ".join(shlex.quote(c) for c in cmd))
            .replace("@ROOT@", str(root)))


def install_service(agent_args: list[str], root: Path, systemd_dir: Path,
                    enable: bool = True) -> tuple[Path, str]:
    """Write the unit into ``systemd_dir``; with ``enable`` also ``systemctl enable --now``.
    Returns (unit path, what was done)."""
    if not systemd_dir.is_dir():
        raise DeviceError(f"{systemd_dir} is not a directory; is this a systemd system? "
                          "(pass --systemd-dir)")
    unit = systemd_dir / UNIT_NAME
    try:
        unit.write_text(unit_text(agent_args, root))
    except PermissionError:
        raise DeviceError(f"cannot write {unit}: permission denied; run it with sudo") from None
    if not enable:
        return unit, "written (not enabled: --no-enable)"
    if shutil.which("systemctl") is None:
        return unit, "written; systemctl is not on PATH, so enable it yourself"
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", UNIT_NAME]):
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise DeviceError(f"{' '.join(cmd)} failed: {msg[-1] if msg else r.returncode}")
    return unit, "enabled and started (systemctl enable --now edge-agent)"


MENDER_MODULES = Path("/usr/share/mender/modules/v3")


def install_mender_module(modules_dir: Path = MENDER_MODULES) -> Path | None:
    """Copy the ``edge-model`` Mender Update Module into ``modules_dir`` when Mender is
    installed there (the directory exists); None otherwise."""
    if not modules_dir.is_dir():
        return None
    dst = modules_dir / "edge-model"
    dst.write_bytes(resources.files("sdk.agent").joinpath("mender-edge-model").read_bytes())
    dst.chmod(0o755)
    return dst
