"""The Linux-board agent: models deployed over HTTP into A/B slots, checked, committed or
rolled back (see docs/architecture.md, README "Raspberry Pi and Jetson").

* :mod:`sdk.agent.server` — ``edge agent``: the aiohttp API, token auth, TLS, deploys;
* :mod:`sdk.agent.slots` — the A/B slot store and its crash recovery;
* :mod:`sdk.agent.selftest` — the health check: reference outputs reproduced on the board;
* :mod:`sdk.agent.signing` — Ed25519 keys and deploy signatures;
* :mod:`sdk.agent.client` — the host side (``edge deploy``, ``edge device ...``);
* :mod:`sdk.agent.export` — Mender / RAUC / SWUpdate artifacts (``edge export``).

Nothing here is imported by ``import sdk``; aiohttp and cryptography load on first use.
"""

from __future__ import annotations

from sdk.agent.client import DeviceClient, prepare_deploy
from sdk.agent.selftest import make_selftest, run_selftest

__all__ = ["DeviceClient", "make_selftest", "prepare_deploy", "run_selftest"]
