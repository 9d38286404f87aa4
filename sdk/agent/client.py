"""The host's side of the board agent's API (urllib only, no extra dependency).

The token comes from, in order: the ``token`` argument (``--token``), the environment
variable ``EDGE_DEVICE_TOKEN``, or the config file ``~/.config/edge/devices.toml``
(``$EDGE_CONFIG`` overrides the path)::

    [devices."http://raspberrypi.local:4910"]
    token = "..."
    ca = "/path/to/agent-cert.pem"      # optional, for an agent with a self-signed TLS cert

Every failure is a one-line :class:`~sdk.errors.DeviceError`.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import ssl
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import DeviceError, InputError

TOKEN_ENV = "EDGE_DEVICE_TOKEN"
DEVICE_ENV = "EDGE_DEVICE"
CA_ENV = "EDGE_DEVICE_CA"


def config_path() -> Path:
    env = os.environ.get("EDGE_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edge" / "devices.toml"


def _device_config(url: str) -> dict[str, Any]:
    p = config_path()
    if not p.is_file():
        return {}
    try:
        doc = tomllib.loads(p.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p} is not valid TOML ({exc}); fix or remove it") from None
    devices = doc.get("devices", {})
    entry = devices.get(url) or devices.get(url.rstrip("/")) or {}
    return entry if isinstance(entry, dict) else {}


def normalize_url(url: str | None) -> str:
    url = url or os.environ.get(DEVICE_ENV)
    if not url:
        raise InputError("no device given: pass --device URL (e.g. http://raspberrypi.local:4910) "
                         f"or set {DEVICE_ENV}")
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise InputError(f"--device {url!r} is not an http:// or https:// URL of an edge agent "
                         "(e.g. http://raspberrypi.local:4910)")
    return url.rstrip("/")


class DeviceClient:
    def __init__(self, url: str | None, token: str | None = None, ca: str | None = None,
                 timeout: float = 600.0) -> None:
        self.url = normalize_url(url)
        cfg = _device_config(self.url)
        self.token = token or os.environ.get(TOKEN_ENV) or cfg.get("token")
        ca = ca or os.environ.get(CA_ENV) or cfg.get("ca")
        self.timeout = timeout
        self.ctx = None
        if self.url.startswith("https://"):
            try:
                self.ctx = ssl.create_default_context(cafile=ca) if ca else \
                    ssl.create_default_context()
            except (OSError, ssl.SSLError) as exc:
                raise InputError(f"cannot load the CA file {ca!r} ({exc}); pass --ca with the "
                                 "agent's certificate") from None

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str | None = None, auth: bool = True) -> tuple[bytes, dict]:
        headers = {"Accept": "application/json"}
        if auth:
            if not self.token:
                raise InputError(f"no token for {self.url}: pass --token, set {TOKEN_ENV}, or "
                                 f"add it to {config_path()}")
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as r:
                return r.read(), dict(r.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                msg = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                msg = raw.decode(errors="replace").strip()[:200] or exc.reason
            raise DeviceError(f"{self.url}: {msg} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:
            raise DeviceError(f"cannot reach the agent at {self.url} ({exc.reason}); check the "
                              "URL and that `edge agent` runs there") from None
        except (OSError, TimeoutError) as exc:
            raise DeviceError(f"the connection to {self.url} failed ({exc}); check that "
                              "`edge agent` runs there") from None

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        raw, _ = self._request(method, path, **kw)
        try:
            return json.loads(raw)
        except ValueError:
            raise DeviceError(f"{self.url} answered something that is not JSON; is it an edge "
                              "agent?") from None

    # -- API -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._json("GET", "/healthz", auth=False)

    def status(self) -> dict[str, Any]:
        return self._json("GET", "/v1/status")

    def rollback(self) -> dict[str, Any]:
        return self._json("POST", "/v1/rollback")

    def logs(self, lines: int = 200) -> str:
        return self._request("GET", f"/v1/logs?lines={int(lines)}")[0].decode(errors="replace")

    def profile(self, runs: int = 20) -> dict[str, Any]:
        return self._json("POST", f"/v1/profile?runs={int(runs)}")

    def run_npz(self, npz: bytes, integer: bool = False) -> tuple[dict[str, np.ndarray], float]:
        raw, headers = self._request("POST", "/v1/run?integer=" + ("1" if integer else "0"),
                                     body=npz, content_type="application/octet-stream")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        ms = float(headers.get("X-Edge-Latency-Ms", "nan"))
        return out, ms

    # -- demos on the board (sdk.agent.demo) -----------------------------------------------
    def demo_start(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Start ``kind`` ("seg"/"kws") on the board: ``{"demo", "ticket", "view_path"}``."""
        body = json.dumps({"kind": kind, "params": params}).encode()
        return self._json("POST", "/v1/demo", body=body, content_type="application/json")

    def demo_status(self, since: int = 0) -> dict[str, Any] | None:
        return self._json("GET", f"/v1/demo?since={int(since)}")["demo"]

    def demo_stop(self, demo_id: str | None = None) -> dict[str, Any]:
        body = json.dumps({"id": demo_id} if demo_id else {}).encode()
        return self._json("POST", "/v1/demo/stop", body=body,
                          content_type="application/json")["demo"]

    def demo_ticket(self) -> dict[str, Any]:
        return self._json("POST", "/v1/demo/ticket")

    def deploy(self, bundle: bytes, selftest: bytes, signature: bytes | None) -> dict[str, Any]:
        parts = [("bundle", "model.edge", bundle), ("selftest", "selftest.npz", selftest)]
        if signature is not None:
            parts.append(("signature", "signature.json", signature))
        body, ctype = multipart(parts)
        return self._json("POST", "/v1/deploy", body=body, content_type=ctype)


def multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name, bytes) parts, and its Content-Type."""
    boundary = "edge-" + secrets.token_hex(16)
    out = io.BytesIO()
    for name, filename, data in parts:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                  .encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def prepare_deploy(model: str | os.PathLike, sign_key: str | os.PathLike | None = None,
                   selftest: str | os.PathLike | None = None, cases: int = 3
                   ) -> tuple[bytes, bytes, bytes | None, str]:
    """What ``edge deploy`` sends: (bundle bytes, self-test bytes, signature or None, model
    name). The bundle is verified here first; the self-test is computed on the NumPy
    reference unless one is given."""
    import hashlib

    from sdk.agent.selftest import make_selftest, read_selftest
    from sdk.compile.bundle import load_bundle

    path = Path(model)
    if path.suffix.lower() != ".edge":
        raise InputError(f"{path}: edge deploy takes a compiled .edge bundle (make one with "
                         "`edge compile`)")
    bundle = load_bundle(path)  # one-line ModelFormatError for a bad file
    data = path.read_bytes()
    if selftest is not None:
        read_selftest(selftest)
        st_bytes = Path(selftest).read_bytes()
    else:
        st_bytes = make_selftest(bundle, cases=cases)
    sig = None
    if sign_key is not None:
        from sdk.agent.signing import sign

        sig = sign(sign_key, hashlib.sha256(data).hexdigest(),
                   hashlib.sha256(st_bytes).hexdigest())
    return data, st_bytes, sig, bundle.name
