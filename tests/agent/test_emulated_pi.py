"""The emulated arm64 Raspberry Pi (`edge emulate --target raspberry-pi-4`): the agent runs
under qemu-aarch64 user-mode emulation in a cached debootstrap image; a compiled model deployed
there passes its bit-exact health check (the host's NumPy reference outputs reproduced by the
aarch64 Numba kernels) and returns the same integers as the x86 host.

Building the image takes many minutes and needs the network once (Debian mirror, PyPI), and
the first health check JIT-compiles the kernels under emulation (minutes), so this test is
opt-in: ``EDGE_EMULATED_PI=1 .venv/bin/python -m pytest tests/agent/test_emulated_pi.py
-o addopts="" -q -s`` (it builds the image if ``edge emulate --target raspberry-pi-4`` has
not yet). Otherwise it is skipped, saying so.
"""

from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pytest

import sdk
from sdk.agent import emulated_pi
from sdk.agent.client import DeviceClient, prepare_deploy

pytestmark = [
    pytest.mark.skipif(os.environ.get("EDGE_EMULATED_PI") != "1",
                       reason="opt-in (minutes under emulation): set EDGE_EMULATED_PI=1"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("proot", "qemu-aarch64-static")),
                       reason="proot / qemu-user-static not installed"),
    pytest.mark.slow,
]


def test_the_emulated_pi_gives_the_hosts_integers(models):
    proc, url, root = emulated_pi.start(port=0, timeout=1800)
    try:
        c = DeviceClient(url, token=(root / "token").read_text().strip(), timeout=1800)
        data, st, _, _ = prepare_deploy(models["m1"])
        t0 = time.monotonic()
        res = c.deploy(data, st, None)
        deploy_s = time.monotonic() - t0
        assert res["committed"] and res["self_test"]["passed"], res
        assert "bit-exact" in res["self_test"]["reason"]
        # integer inputs over the full range: the same integers out as on this x86 host
        host = sdk.Session(str(models["m1"]), integer_io=True)
        rng = np.random.default_rng(3)
        x = rng.integers(-128, 128, (1, 3, 16, 16)).astype(np.int8)
        want = host.run({"x": x})
        buf = io.BytesIO()
        np.savez(buf, x=x)
        got, _ = c.run_npz(buf.getvalue(), integer=True)
        assert got["logits"].dtype == want["logits"].dtype
        np.testing.assert_array_equal(got["logits"], want["logits"])
        prof = c.profile(5)
        print(f"\nemulated Pi (qemu-aarch64 user-mode, NOT a Pi's speed): deploy + health check "
              f"{deploy_s:.1f} s; one inference of a 16x16 CNN: median "
              f"{prof['latency_ms']['median']:.2f} ms under emulation")
    finally:
        emulated_pi.stop(proc)
    assert proc.returncode is not None
