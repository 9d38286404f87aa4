"""``edge emulate --target raspberry-pi-4``: the board agent on an emulated arm64 Pi.

Built once and cached (``$EDGE_CACHE`` or ``~/.cache/edge``, under ``raspberry-pi-4/``):

1. ``debootstrap --arch=arm64 --foreign`` unpacks a minimal Debian bookworm (Python 3.11, the
   Pi OS base) into ``rootfs/``; its second stage runs under ``proot -q qemu-aarch64-static``
   (QEMU user-mode emulation, no binfmt or root privileges needed);
2. ``pip download`` fetches the aarch64 wheels of the packages the agent imports, at the exact
   versions installed on this host (numpy, numba, llvmlite, scipy, click, aiohttp and its
   dependencies, cryptography), and a venv in the image (``/opt/edge``) installs them offline;
3. at every start the SDK's own packages (``sdk``, ``targets``) are copied into the image
   (``/opt/edge-sdk``, on the venv's path), so the emulated board runs this checkout.

Then ``python -m sdk.cli.main agent`` runs inside it under QEMU, listening on 127.0.0.1 (proot
shares the host's network), with its state in the image's ``/var/lib/edge-agent`` (kept across
runs; the host reads the token there). Everything on it — Python, NumPy, the Numba JIT and the kernels it compiles — is aarch64
code emulated instruction by instruction; timings measured there are the emulator's, not a
Pi's.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sdk.errors import DeviceError

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# what `import sdk` and the agent need on the board (the rest of the SDK's dependencies are
# for importers, delegates and demos, not for the agent's reference kernels)
AGENT_PACKAGES = ("numpy", "numba", "llvmlite", "scipy", "click", "aiohttp", "aiohappyeyeballs",
                  "aiosignal", "attrs", "frozenlist", "multidict", "propcache", "yarl", "idna",
                  "typing_extensions", "cryptography", "cffi", "pycparser")
READY = ".edge-ready"


def cache_dir() -> Path:
    base = os.environ.get("EDGE_CACHE") or str(Path.home() / ".cache" / "edge")
    return Path(base) / "raspberry-pi-4"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise DeviceError(f"{tool} is not installed; the emulated Pi needs it (Debian: "
                          f"apt-get install {package})")
    return path


def _run(cmd: list[str], log: Path, what: str, env: dict | None = None) -> None:
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    if r.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise DeviceError(f"{what} failed (exit {r.returncode}: {tail[0][:160]}); full log: {log}")


def proot_cmd(rootfs: Path, binds: list[tuple[Path, str]] = ()) -> list[str]:
    cmd = [_need("proot", "proot"), "-0", "-q", _need("qemu-aarch64-static", "qemu-user-static"),
           "-r", str(rootfs), "-b", "/dev", "-b", "/proc", "-b", "/sys", "-w", "/"]
    for host, guest in binds:
        cmd += ["-b", f"{host}:{guest}"]
    return cmd


def build(say=print, force: bool = False) -> Path:
    """The cached arm64 image (built now if missing); returns its rootfs."""
    d = cache_dir()
    rootfs = d / "rootfs"
    if (rootfs / READY).exists() and not force:
        return rootfs
    d.mkdir(parents=True, exist_ok=True)
    log = d / "build.log"
    log.write_text("")
    debootstrap = _need("debootstrap", "debootstrap")
    if force and rootfs.exists():
        shutil.rmtree(rootfs)
    env = dict(os.environ, DEBOOTSTRAP_DIR="/debootstrap")
    if not (rootfs / "usr" / "bin" / "python3").exists() or (rootfs / "debootstrap").exists():
        if rootfs.exists():
            shutil.rmtree(rootfs)
        say(f"emulated Pi: debootstrap arm64 {SUITE} into {rootfs} (once; log {log})")
        _run([debootstrap, "--arch=arm64", "--foreign", "--variant=minbase",
              "--include=python3,python3-venv,ca-certificates", SUITE, str(rootfs), MIRROR],
             log, "debootstrap (first stage)")
        proc = rootfs / "proc"
        if proc.is_symlink():  # debootstrap links it to the host's /proc; proot binds it
            proc.unlink()
            proc.mkdir()
        say("emulated Pi: debootstrap second stage under qemu-aarch64 (several minutes)")
        _run([*proot_cmd(rootfs), "/debootstrap/debootstrap", "--second-stage"], log,
             "debootstrap (second stage)", env=env)
    wheels = d / "wheels"
    wheels.mkdir(exist_ok=True)
    pins = [f"{p}=={md.version(p)}" for p in AGENT_PACKAGES]
    say(f"emulated Pi: aarch64 wheels of {len(pins)} packages into {wheels}")
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi",
          "abi3", "--abi", "none", "--platform", "manylinux_2_28_aarch64", "--platform",
          "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64", "--platform",
          "any", "-d", str(wheels), *pins], log, "pip download (aarch64 wheels)")
    say("emulated Pi: venv /opt/edge with those wheels (under qemu-aarch64)")
    guest_wheels = rootfs / "wheels"
    if guest_wheels.exists():
        shutil.rmtree(guest_wheels)
    shutil.copytree(wheels, guest_wheels)
    whls = sorted(f"/wheels/{p.name}" for p in guest_wheels.glob("*.whl"))
    # pip itself comes from the image's own ensurepip wheel (python3-venv)
    _run([*proot_cmd(rootfs), "/usr/bin/python3", "-m", "venv", "/opt/edge"], log,
         "python3 -m venv")
    _run([*proot_cmd(rootfs), "/opt/edge/bin/python", "-m", "pip", "install", "-q",
          "--no-compile", "--no-index", "--no-deps", *whls], log, "pip install (in the image)")
    shutil.rmtree(guest_wheels)
    (rootfs / READY).write_text(f"built {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return rootfs


def sync_sdk(rootfs: Path) -> None:
    """Copy this checkout's ``sdk`` and ``targets`` packages into the image."""
    import sdk
    import targets

    dst = rootfs / "opt" / "edge-sdk"
    dst.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for mod in (sdk, targets):
        src = Path(mod.__file__).parent
        if (dst / src.name).exists():
            shutil.rmtree(dst / src.name)
        shutil.copytree(src, dst / src.name, ignore=ignore)
    site = next((rootfs / "opt" / "edge" / "lib").glob("python3*/site-packages"))
    (site / "edge-sdk.pth").write_text("/opt/edge-sdk\n")


def agent_command(rootfs: Path, agent_args: list[str]) -> tuple[list[str], Path]:
    """The command line that runs the agent in the image, and the host dir of its root."""
    root = rootfs / "var" / "lib" / "edge-agent"  # the host reads the token and URL here
    root.mkdir(parents=True, exist_ok=True)
    (rootfs / "var" / "cache" / "numba").mkdir(parents=True, exist_ok=True)
    cmd = [*proot_cmd(rootfs),
           "/usr/bin/env", "NUMBA_CACHE_DIR=/var/cache/numba", "PYTHONUNBUFFERED=1",
           "HOME=/root", "/opt/edge/bin/python", "-m", "sdk.cli.main", "agent",
           "--root", "/var/lib/edge-agent", *agent_args]
    return cmd, root


def start(port: int = 0, say=print, timeout: float = 900.0, detach: bool = False
          ) -> tuple[subprocess.Popen, str, Path]:
    """Build (once) and start the emulated Pi's agent; returns (process, URL, agent root).
    The agent accepts unsigned deploys (a bench board on loopback) and needs its token."""
    rootfs = build(say=say)
    sync_sdk(rootfs)
    # the first health check JIT-compiles the Numba kernels for aarch64 under emulation
    # (minutes; cached in the image's /var/cache/numba after that)
    cmd, root = agent_command(rootfs, ["--host", "127.0.0.1", "--port", str(port),
                                       "--allow-unsigned", "--health-timeout", "3600"])
    url_file = root / "agent.url"
    url_file.unlink(missing_ok=True)
    out = open(cache_dir() / "agent.log", "ab")  # noqa: SIM115 (the agent process keeps it)
    # its own process group: proot and the emulated processes it traces stop together
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    t0 = time.monotonic()
    while not url_file.exists():
        if proc.poll() is not None:
            raise DeviceError(f"the emulated Pi's agent exited with {proc.returncode}; see "
                              f"{cache_dir() / 'agent.log'}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise DeviceError(f"the emulated Pi's agent did not start in {timeout:.0f} s; see "
                              f"{cache_dir() / 'agent.log'}")
        time.sleep(0.2)
    say(f"emulated Raspberry Pi 4 (arm64 Debian {SUITE} under qemu-aarch64 user-mode): agent "
        f"started in {time.monotonic() - t0:.1f} s")
    return proc, url_file.read_text().strip(), root


def stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop the emulated agent: SIGTERM to its process group, SIGKILL after ``grace`` s."""
    import signal

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def emulate_cli(port: int | None, model: str | None, print_url: bool, say=print) -> None:
    """What ``edge emulate --target raspberry-pi-4`` does."""
    proc, url, root = start(port or 0, say=say, detach=print_url)
    say(f"agent: {url}")
    say(f"token: {root / 'token'} (edge deploy MODEL.edge --device {url} --token "
        f"\"$(cat {root / 'token'})\")")
    try:
        if model:
            from sdk.agent.client import DeviceClient, prepare_deploy

            data, st, _, name = prepare_deploy(model)
            token = (root / "token").read_text().strip()
            res = DeviceClient(url, token=token).deploy(data, st, None)
            say(f"deployed {name!r}: slot {res['slot']}, health check "
                f"{res['self_test']['reason']}, committed")
        if print_url:
            say(f"the emulated Pi keeps running (process group {proc.pid}); stop it with "
                f"kill -- -{proc.pid}")
            return
        say("press Ctrl-C to stop")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if not print_url:
            stop(proc)
