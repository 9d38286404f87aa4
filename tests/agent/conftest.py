"""The board agent as a real process on 127.0.0.1 (port 0: the kernel picks a free one, the
agent writes its URL to ROOT/agent.url), and the models and keys the tests deploy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.agent.client import DeviceClient, prepare_deploy
from sdk.agent.signing import generate_key
from sdk.backends.sample_graphs import cnn_graph

ROOT = Path(__file__).resolve().parents[2]


def agent_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("EDGE_DEVICE_TOKEN", None)
    return env


class AgentProcess:
    """``edge agent`` started with ``python -m sdk.cli.main agent`` in its own process."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root, self.args = root, list(args)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self, timeout: float = 60.0) -> str:
        url_file = self.root / "agent.url"
        url_file.unlink(missing_ok=True)
        self.starts += 1
        with open(self.root.parent / f"{self.root.name}-agent-{self.starts}.out", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sdk.cli.main", "agent", "--root", str(self.root),
                 "--host", "127.0.0.1", "--port", "0", *self.args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=agent_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}: {self.output()}")
            if url_file.exists():
                self.url = url_file.read_text().strip()
                if self.url.startswith("http://"):
                    with urllib.request.urlopen(self.url + "/healthz", timeout=10) as r:
                        assert r.status == 200
                return self.url
            time.sleep(0.02)
        raise RuntimeError(f"agent did not start in {timeout} s: {self.output()}")

    def output(self) -> str:
        p = self.root.parent / f"{self.root.name}-agent-{self.starts}.out"
        return p.read_text(errors="replace") if p.exists() else ""

    @property
    def token(self) -> str:
        return (self.root / "token").read_text().strip()

    def client(self, token: str | None = "", **kw) -> DeviceClient:
        return DeviceClient(self.url, token=self.token if token == "" else token, **kw)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Three small integer CNNs (different weights), two signing keys, an input file, and the
    outputs each model gives for it on this host."""
    d = tmp_path_factory.mktemp("agent-models")
    out = {"dir": d}
    x = np.random.default_rng(7).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    np.savez(d / "x.npz", x=x)
    out["x"] = x
    for i, seed in enumerate((11, 12, 13), 1):
        b = sdk.Bundle.from_graph(cnn_graph(seed=seed, hw=16, width=8))
        b.manifest["model_name"] = f"cnn{i}"
        p = b.save(d / f"m{i}.edge")
        out[f"m{i}"] = p
        out[f"y{i}"] = sdk.Session(str(p)).run({"x": x})
    for k in ("trusted", "other"):
        out[k] = generate_key(d / f"{k}.key")[0]
    return out


@pytest.fixture
def agent(tmp_path, models):
    """A fresh agent that trusts the key 'trusted', uploads up to 1 MiB; stopped after."""
    a = AgentProcess(tmp_path / "root", "--trust", str(models["trusted"]) + ".pub",
                     "--max-upload-mb", "1")
    a.start()
    yield a
    a.stop()


def deploy(a: AgentProcess, model: Path, key: Path | None, **kw) -> dict:
    data, st, sig, _ = prepare_deploy(model, key)
    return a.client(**kw).deploy(data, st, sig)
