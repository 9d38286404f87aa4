"""SIGKILL of the agent at random moments of a deploy: after each restart the active model is
whole and verified — the old one, or the new one only once its health check committed.

The default run makes EDGE_AGENT_KILLS (default 6) kills; the acceptance figure is 50:
``EDGE_AGENT_KILLS=50 .venv/bin/python -m pytest tests/agent/test_kill.py -o addopts="" -q``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import threading
import time

import numpy as np

from sdk.agent.client import prepare_deploy
from sdk.agent.slots import SlotStore
from sdk.errors import DeviceError

from .conftest import AgentProcess


def test_sigkill_during_deploy_leaves_a_whole_verified_model(tmp_path, models):
    kills = int(os.environ.get("EDGE_AGENT_KILLS", "6"))
    rng = random.Random(int(os.environ.get("EDGE_AGENT_KILL_SEED", "15")))
    payload = {i: prepare_deploy(models[f"m{i}"], models["trusted"]) for i in (1, 2)}
    sha = {hashlib.sha256(payload[i][0]).hexdigest(): i for i in (1, 2)}
    buf = io.BytesIO()
    np.savez(buf, x=models["x"])
    x_npz = buf.getvalue()

    a = AgentProcess(tmp_path / "root", "--trust", str(models["trusted"]) + ".pub")
    a.start()
    try:
        a.client().deploy(*payload[1][:3])
        # how long one deploy takes on a freshly started agent: the window the kills land in
        a.kill()
        a.start()
        t0 = time.monotonic()
        a.client().deploy(*payload[2][:3])
        window = time.monotonic() - t0
        active = 2
        outcomes = {"old kept": 0, "new committed": 0, "rolled back from trial": 0}
        last_event = a.client().status()["last_event"]
        for k in range(kills):
            new = 3 - active
            result: dict = {}

            def send(new=new, result=result) -> None:
                try:
                    result["ok"] = a.client().deploy(*payload[new][:3])
                except DeviceError as exc:
                    result["error"] = str(exc)

            th = threading.Thread(target=send)
            th.start()
            time.sleep(rng.uniform(0.0, window * 1.1))
            a.kill()
            th.join(30)
            assert not th.is_alive()
            a.start()
            s = a.client().status()
            # whole and verified, read from the disk by this process too
            assert s["state"] == "committed", s
            assert s["active_slot"] in ("a", "b")
            ok, why = SlotStore(a.root).verify(s["active_slot"])
            assert ok, why
            now = sha[s["model"]["bundle_sha256"]]
            meta = json.loads((a.root / "slots" / s["active_slot"] / "meta.json").read_text())
            if now == new:
                assert meta["committed"] is True and meta["self_test"]["passed"] is True
                outcomes["new committed"] += 1
            else:
                assert now == active
                assert "ok" not in result, "a deploy answered 'committed' but did not stay"
                outcomes["old kept"] += 1
                ev = s["last_event"] or {}
                if ev != last_event and ev.get("kind") == "rollback" and \
                        "stopped during the health check" in ev.get("reason", ""):
                    outcomes["rolled back from trial"] += 1
            last_event = s["last_event"]
            if k % 3 == 0 or k == kills - 1:  # and it runs, giving the host's outputs
                y = a.client().run_npz(x_npz)[0]
                np.testing.assert_array_equal(y["logits"], models[f"y{now}"]["logits"])
            active = now
        print(f"\n{kills} SIGKILLs in a {window:.2f} s deploy window: {outcomes}")
        assert sum(outcomes[k] for k in ("old kept", "new committed")) == kills
    finally:
        a.stop()
