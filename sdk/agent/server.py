"""The board agent's HTTP API (aiohttp).

Every endpoint needs ``Authorization: Bearer <token>`` except ``GET /healthz``:

* ``GET  /healthz`` — liveness probe: {"ok": true} and nothing about the model;
* ``GET  /v1/status`` — active slot, model, its signer, the pointer state, the last event (a
  rollback and why), whether a deploy runs now;
* ``POST /v1/deploy`` — multipart parts ``bundle`` (the .edge file), ``selftest`` (.npz) and
  ``signature`` (JSON); one at a time (a second gets 409);
* ``POST /v1/rollback`` — make the previous committed slot active again;
* ``GET  /v1/logs?lines=N`` — the tail of the agent's log;
* ``POST /v1/run?integer=1`` — an .npz of inputs in, an .npz of outputs back;
* ``POST /v1/profile?runs=N`` — latency on the board, and energy when a power sensor of the
  board's profile (``--target``) answers;
* ``POST /v1/demo`` (start ``{"kind": "seg"|"kws", "params": {...}}``, one at a time: a second
  gets 409), ``GET /v1/demo?since=N`` (state, stats, detections), ``POST /v1/demo/stop``,
  ``POST /v1/demo/ticket`` — a demo running on the board (:mod:`sdk.agent.demo`);
* ``GET /view/`` and what it loads — the running demo's browser view, opened with the token or
  a view ticket (:class:`sdk.agent.demo.ViewTickets`), never without either.

A deploy, in order: size limits (Content-Length, then every part while it streams into
``staging/``), the signature over the SHA-256 of the bundle and the self-test (against the
device's trusted keys), :func:`sdk.load_bundle` on the staged file (zip names, format, each
part's SHA-256), then install into the inactive slot, switch in state ``trial``, run the
self-test on this board's kernels, and commit — or roll back, keeping the reason.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import logging.handlers
import os
import secrets
import shutil
import ssl
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

import sdk
from sdk.agent import selftest as st
from sdk.agent import signing
from sdk.agent.slots import SlotStore, sha256_file, write_atomic
from sdk.errors import EdgeError

DEFAULT_PORT = 4910
DEFAULT_MAX_UPLOAD_MB = 256
HEALTH_TIMEOUT_S = 300.0
CHUNK = 1 << 16
VIEW_COOKIE = "edge_view"
MJPEG_BOUNDARY = "edgeframe"
log = logging.getLogger("edge.agent")


@dataclass
class AgentConfig:
    root: Path
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    allow_unsigned: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    backend: str = "reference"
    tolerance: int | None = None
    target: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20
    health_timeout_s: float = HEALTH_TIMEOUT_S
    trusted: list[bytes] = field(default_factory=list)


def default_root() -> Path:
    env = os.environ.get("EDGE_AGENT_ROOT")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/edge-agent")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edge-agent"


# -- token and trusted keys ----------------------------------------------------------------
def ensure_token(root: Path) -> tuple[str, bool]:
    """(token, made now). The token file is created 0600 and never rewritten."""
    p = root / "token"
    if p.exists():
        if p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)
        tok = p.read_text().strip()
        if len(tok) >= 32:
            return tok, False
        p.unlink()  # empty or cut short by a crash while it was first written
    tok = secrets.token_urlsafe(32)
    tmp = root / ".token.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (tok + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    return tok, True


def trusted_keys_path(root: Path) -> Path:
    return root / "trusted_keys"


def load_trusted(root: Path) -> list[bytes]:
    p = trusted_keys_path(root)
    if not p.exists():
        return []
    return [signing.parse_public_key(ln) for ln in p.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def add_trusted(root: Path, keys: list[str]) -> list[bytes]:
    """Parse ``keys`` (lines or .pub files) and add them to the device's trusted keys file."""
    have = load_trusted(root)
    for k in keys:
        raw = signing.parse_public_key(k)
        if raw not in have:
            have.append(raw)
    text = "".join(signing.public_text(r) + "\n" for r in have)
    write_atomic(trusted_keys_path(root), text.encode())
    return have


# -- errors --------------------------------------------------------------------------------
class Refusal(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json(status, dict(extra, error=" ".join(message.split())))


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = SlotStore(config.root)
        self.token, self.new_token = ensure_token(config.root)
        self.deploying: dict[str, Any] | None = None
        self.started = time.time()
        self.runs = ThreadPoolExecutor(1, thread_name_prefix="edge-run")
        self.checks = ThreadPoolExecutor(2, thread_name_prefix="edge-check")
        self._sessions: dict[tuple, Any] = {}
        from sdk.agent.demo import ViewTickets

        self.demo: Any = None
        self.demo_starting = False
        self.tickets = ViewTickets()
        self.closing = False
        self.pointer, done = self.store.recover()
        for line in done:
            log.warning("start: %s", line)
        log.info("start: active slot %s (%s)", self.pointer.get("active"),
                 self._model_name(self.pointer.get("active")))

    def _model_name(self, slot: str | None) -> str | None:
        meta = self.store.meta(slot) if slot else None
        return meta.get("model_name") if meta else None

    # -- app -------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth],
                              client_max_size=self.config.max_upload_bytes)
        app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/v1/status", self.status),
            web.post("/v1/deploy", self.deploy),
            web.post("/v1/rollback", self.rollback),
            web.get("/v1/logs", self.logs),
            web.post("/v1/run", self.run),
            web.post("/v1/profile", self.profile),
            web.post("/v1/demo", self.demo_start),
            web.get("/v1/demo", self.demo_status),
            web.post("/v1/demo/stop", self.demo_stop),
            web.post("/v1/demo/ticket", self.demo_ticket),
            web.get("/view", self.view_redirect),
            web.get("/view/", self.view_page),
            web.get("/view/stats.json", self.view_stats),
            web.get("/view/frame.jpg", self.view_frame),
            web.get("/view/stream.mjpg", self.view_stream),
            web.get("/view/events", self.view_events),
        ])
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        try:
            return await handler(request)
        except Refusal as exc:
            return _error(exc.status, str(exc), **exc.extra)
        except OSError as exc:  # disk full, permissions: the active model is untouched
            log.error("%s %s failed: %s", request.method, request.path, exc)
            return _error(500, f"the agent could not complete {request.path} ({exc}); the "
                               "active model is unchanged; see `edge device logs`")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(exc.status, f"{exc.reason}: {request.method} {request.path}")

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if request.path == "/healthz" and request.method == "GET":
            return await handler(request)
        h = request.headers.get("Authorization", "")
        if (request.path == "/view" or request.path.startswith("/view/")) and \
                not h.startswith("Bearer "):
            return await self._view_auth(request, handler)
        if not h.startswith("Bearer ") or not h[7:].strip():
            return _error(401, "missing token: pass --token, set EDGE_DEVICE_TOKEN or add it "
                               "to ~/.config/edge/devices.toml (the token is in the agent's "
                               "root, file 'token')")
        if not hmac.compare_digest(h[7:].strip().encode("utf-8", "surrogateescape"),
                                   self.token.encode()):
            log.warning("refused a request with a wrong token from %s", request.remote)
            return _error(401, "wrong token: use the token the agent printed on its first "
                               "start (its root, file 'token')")
        return await handler(request)

    # -- endpoints -------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"ok": True})

    def _slot_summary(self, slot: str) -> dict[str, Any] | None:
        meta = self.store.meta(slot)
        if meta is None:
            return None
        return {k: meta.get(k) for k in ("model_name", "signed_by", "installed_at",
                                         "committed", "committed_at", "self_test")
                } | {"bundle_sha256": meta.get("sha256", {}).get("model.edge")}

    async def status(self, request: web.Request) -> web.Response:
        ptr = self.store.pointer()
        active = ptr.get("active")
        return _json(200, {
            "agent": "edge", "sdk_version": sdk.__version__, "backend": self.config.backend,
            "target": self.config.target, "uptime_s": round(time.time() - self.started, 1),
            "active_slot": active, "previous_slot": ptr.get("previous"),
            "state": ptr.get("state"),
            "model": self._slot_summary(active) if active else None,
            "slots": {s: self._slot_summary(s) for s in ("a", "b")},
            "last_event": ptr.get("event"),
            "deploy_in_progress": self.deploying,
            "demo": ({k: self.demo.describe()[k] for k in ("kind", "state", "since", "model",
                                                             "source")}
                     if self.demo is not None else None),
            "signing": ("required" if self.config.trusted else
                        "not required (--allow-unsigned)" if self.config.allow_unsigned else
                        "required, but no key is trusted yet (start with --trust KEY.pub)"),
        })

    async def logs(self, request: web.Request) -> web.Response:
        try:
            n = int(request.query.get("lines", "200"))
        except ValueError:
            raise Refusal(400, "lines must be an integer") from None
        n = max(1, min(n, 10000))
        p = self.config.root / "agent.log"
        lines = p.read_text(errors="replace").splitlines()[-n:] if p.exists() else []
        return web.Response(text="\n".join(lines) + ("\n" if lines else ""))

    def _begin(self, what: str) -> None:
        if self.deploying is not None:
            d = self.deploying
            raise Refusal(409, f"another {d['what']} is in progress on this device (since "
                               f"{d['since']}, phase {d['phase']}); wait for it to finish and "
                               f"try again", in_progress=d)
        self.deploying = {"what": what, "since": time.strftime("%H:%M:%S"),
                          "phase": "starting"}

    async def _receive(self, request: web.Request, stage: Path) -> dict[str, Path]:
        limit = self.config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refusal(413, f"the upload is {request.content_length:,} bytes, over this "
                               f"device's limit of {limit:,} (agent --max-upload-mb)")
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError, KeyError) as exc:
            raise Refusal(400, f"a deploy is a multipart/form-data upload ({exc}); use "
                               "`edge deploy`") from None
        limits = {"bundle": limit, "selftest": st.MAX_SELFTEST_BYTES,
                  "signature": signing.MAX_SIGNATURE_BYTES}
        files = {"bundle": "model.edge", "selftest": "selftest.npz",
                 "signature": "signature.json"}
        got: dict[str, Path] = {}
        total = 0
        while True:
            part = await _multipart_step(reader.next())
            if part is None:
                break
            name = part.name
            if name not in files:
                raise Refusal(400, f"unknown deploy part {str(name)[:40]!r}; the parts are "
                                   f"{sorted(files)}")
            if name in got:
                raise Refusal(400, f"deploy part {name!r} appears twice")
            dst = stage / files[name]  # a fixed name: the client's file name is never used
            size = 0
            with open(dst, "wb") as f:  # noqa: ASYNC230 (local disk, 64 KiB chunks)
                while True:
                    chunk = await _multipart_step(part.read_chunk(CHUNK))
                    if not chunk:
                        break
                    size += len(chunk)
                    total += len(chunk)
                    if size > limits[name] or total > limit:
                        raise Refusal(413, f"deploy part {name!r} is over this device's limit "
                                           f"of {min(limits[name], limit):,} bytes (agent "
                                           "--max-upload-mb)")
                    f.write(chunk)
            got[name] = dst
        for need in ("bundle", "selftest"):
            if need not in got:
                raise Refusal(400, f"the deploy has no {need!r} part; use `edge deploy` (it "
                                   "computes the self-test)")
        return got

    async def _in_thread(self, fn, *args, pool=None):
        return await asyncio.get_running_loop().run_in_executor(pool or self.checks, fn, *args)

    async def deploy(self, request: web.Request) -> web.Response:
        self._begin("deploy")
        stage = self.store.staging / secrets.token_hex(8)
        stage.mkdir()
        try:
            self.deploying["phase"] = "receiving"
            got = await self._receive(request, stage)
            self.deploying["phase"] = "verifying"
            bsha = await self._in_thread(sha256_file, got["bundle"])
            ssha = await self._in_thread(sha256_file, got["selftest"])
            signer = await self._check_signature(got, bsha, ssha)
            try:
                bundle = await self._in_thread(sdk.load_bundle, got["bundle"])
            except EdgeError as exc:  # the board's staging path means nothing to the host
                why = str(exc).replace(str(got["bundle"]), "the uploaded bundle")
                raise Refusal(400, f"bundle refused: {why}") from None
            try:
                await self._in_thread(st.read_selftest, got["selftest"])
            except EdgeError as exc:
                raise Refusal(400, f"self-test refused: {exc}") from None
            return await self._install(got, bundle.name, bsha, signer)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            self.deploying = None

    async def _check_signature(self, got: dict[str, Path], bsha: str, ssha: str) -> str | None:
        doc = got["signature"].read_bytes() if "signature" in got else b""
        if not self.config.trusted:
            if self.config.allow_unsigned:
                return None
            raise Refusal(403, "this device trusts no signing key, so it takes no deploy; "
                               "start the agent with --trust KEY.pub (from `edge keys "
                               "generate`), or --allow-unsigned on a bench board")
        try:
            return signing.verify(doc, self.config.trusted, bsha, ssha)
        except signing.SignatureError as exc:
            log.warning("deploy refused: %s", exc)
            raise Refusal(403, str(exc)) from None

    async def _install(self, got: dict[str, Path], name: str, bsha: str,
                       signer: str | None) -> web.Response:
        store = self.store
        ptr = store.pointer()
        cur = ptr.get("active")
        slot = store.inactive()
        self.deploying.update(phase="installing", model_name=name, slot=slot)
        log.info("deploy %r (sha256 %s, signed by %s) into slot %s", name, bsha[:16],
                 signer or "nobody", slot)
        if ptr.get("previous") is not None:  # the slot about to be overwritten
            store.set_pointer(cur, None, "committed", ptr.get("event"))
        files = {"model.edge": got["bundle"], "selftest.npz": got["selftest"]}
        if "signature" in got:
            files["signature.json"] = got["signature"]
        await self._in_thread(store.install, slot, files,
                              {"model_name": name, "signed_by": signer, "committed": False})
        store.set_pointer(slot, cur, "trial", {"kind": "trial", "at": _now(), "slot": slot,
                                               "model_name": name})
        self.deploying["phase"] = "health check"
        d = store.slot_path(slot)
        try:
            result = await asyncio.wait_for(
                self._in_thread(st.run_selftest, d / "model.edge", d / "selftest.npz",
                                self.config.backend, self.config.tolerance, self.config.target),
                self.config.health_timeout_s)
        except TimeoutError:
            result = st.SelfTestResult(False, 0, f"the self-test did not finish in "
                                       f"{self.config.health_timeout_s:.0f} s", 0.0, 0)
        if result.passed:
            await self._in_thread(store.mark_committed, slot)
            meta = store.meta(slot) or {}
            await self._in_thread(write_atomic, d / "meta.json",
                                  json.dumps(dict(meta, self_test=result.to_json()),
                                             indent=1).encode())
            event = {"kind": "deploy", "at": _now(), "slot": slot, "model_name": name,
                     "committed": True, "self_test": result.to_json()}
            self.pointer = store.set_pointer(slot, cur, "committed", event)
            self._sessions.clear()
            log.info("deploy %r committed in slot %s (%s)", name, slot, result.reason)
            return _json(200, {"committed": True, "slot": slot, "model_name": name,
                               "bundle_sha256": bsha, "signed_by": signer,
                               "self_test": result.to_json()})
        reason = f"health check failed: {result.reason}"
        event = {"kind": "rollback", "at": _now(), "failed_slot": slot, "to_slot": cur,
                 "model_name": name, "reason": reason, "self_test": result.to_json()}
        self.pointer = store.set_pointer(cur, None, "committed", event)
        log.warning("deploy %r rolled back to slot %s: %s", name, cur, reason)
        raise Refusal(422, f"deploy of {name!r} rolled back to slot {cur or '(none)'}: "
                           f"{reason}", rolled_back=True, reason=reason, slot=cur)

    async def rollback(self, request: web.Request) -> web.Response:
        self._begin("rollback")
        try:
            ptr = self.store.pointer()
            cur, prev = ptr.get("active"), ptr.get("previous")
            if prev is None:
                raise Refusal(409, "no previous model to roll back to (it was replaced by a "
                                   "later deploy, failed its health check, or none was ever "
                                   "deployed); deploy the model you want instead")
            ok, why = await self._in_thread(self.store.verify, prev)
            if not ok:
                raise Refusal(409, f"cannot roll back: the previous slot is not whole ({why})")
            name = self._model_name(prev)
            event = {"kind": "rollback", "at": _now(), "from_slot": cur, "to_slot": prev,
                     "model_name": name, "reason": "requested by the host (edge device "
                                                   "rollback)"}
            self.pointer = self.store.set_pointer(prev, cur, "committed", event)
            self._sessions.clear()
            log.info("rollback from slot %s to slot %s (%r), requested", cur, prev, name)
            return _json(200, {"rolled_back": True, "slot": prev, "model_name": name})
        finally:
            self.deploying = None

    # -- running the active model ----------------------------------------------------------
    def _session(self, integer: bool):
        ptr = self.store.pointer()
        slot = ptr.get("active")
        if slot is None:
            raise Refusal(409, "no model is deployed on this device; run `edge deploy` first")
        meta = self.store.meta(slot) or {}
        key = (slot, meta.get("sha256", {}).get("model.edge"), integer)
        if key not in self._sessions:
            backend = self.config.backend
            exact = backend in st.EXACT_BACKENDS  # the SDK's kernels; else a delegate backend
            self._sessions[key] = sdk.Session(
                str(self.store.slot_path(slot) / "model.edge"), integer_io=integer,
                fast=backend != "reference-numpy", backend=None if exact else backend,
                target=None if exact else self.config.target)
        return self._sessions[key]

    async def _read_body(self, request: web.Request, stage: Path) -> Path:
        limit = self.config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refusal(413, f"the input is {request.content_length:,} bytes, over this "
                               f"device's limit of {limit:,} (agent --max-upload-mb)")
        p = stage / "input.npz"
        size = 0
        with open(p, "wb") as f:  # noqa: ASYNC230 (local disk, 64 KiB chunks)
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise Refusal(413, f"the input is over this device's limit of {limit:,} "
                                       "bytes (agent --max-upload-mb)")
                f.write(chunk)
        return p

    async def run(self, request: web.Request) -> web.Response:
        integer = request.query.get("integer", "0") in ("1", "true", "yes")
        stage = self.store.staging / ("run-" + secrets.token_hex(8))
        stage.mkdir()
        try:
            p = await self._read_body(request, stage)
            return await self._in_thread(self._run_file, p, integer, pool=self.runs)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _run_file(self, path: Path, integer: bool) -> web.Response:
        from sdk.cli.arrays import load_arrays

        sess = self._session(integer)
        try:
            feeds = load_arrays(path, sess.input_names)
            for info in sess.inputs:
                a = feeds[info.name]
                if a.dtype.kind == "f" and info.dtype == "float32":
                    feeds[info.name] = a.astype(np.float32)
            t0 = time.perf_counter()
            out = sess.run(feeds)
            ms = (time.perf_counter() - t0) * 1e3
        except EdgeError as exc:
            raise Refusal(400, str(exc)) from None
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in out.items()})
        return web.Response(body=buf.getvalue(), content_type="application/octet-stream",
                            headers={"X-Edge-Latency-Ms": f"{ms:.3f}"})

    async def profile(self, request: web.Request) -> web.Response:
        try:
            runs = int(request.query.get("runs", "20"))
        except ValueError:
            raise Refusal(400, "runs must be an integer") from None
        if not 1 <= runs <= 10000:
            raise Refusal(400, f"runs {runs} is outside 1..10000")
        return _json(200, await self._in_thread(self._profile, runs, pool=self.runs))

    def _profile(self, runs: int) -> dict[str, Any]:
        sess = self._session(True)
        slot = self.store.pointer()["active"]
        _, cases = st.read_selftest(self.store.slot_path(slot) / "selftest.npz")
        feeds = cases[0][0]
        sess.run(feeds)  # warm-up (kernel caches)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        res: dict[str, Any] = {
            "model_name": self._model_name(slot), "backend": self.config.backend,
            "runs": runs, "latency_ms": {"median": statistics.median(times),
                                         "p90": times[min(runs - 1, int(0.9 * runs))],
                                         "min": times[0], "mean": statistics.fmean(times)},
            "energy_mj_per_inference": None}
        if not self.config.target:
            res["energy_note"] = "no board profile given (start the agent with --target NAME)"
            return res
        from targets import load_target
        from targets.sensors import open_meter

        meter, why = open_meter(load_target(self.config.target))
        if meter is None:
            res["energy_note"] = f"no power sensor answered: {why}"
            return res

        def work() -> None:
            for _ in range(runs):
                sess.run(feeds)

        _, m = meter.measure(work)
        res.update(energy_mj_per_inference=m.energy_j / runs * 1e3, energy_sensor=m.sensor,
                   mean_power_w=m.mean_power_w)
        return res


    # -- demos on the board (sdk.agent.demo) ------------------------------------------------
    def _demo_ctx(self) -> dict[str, Any]:
        slot = self.store.pointer().get("active")
        return {"backend": self.config.backend, "target": self.config.target,
                "active_model": self.store.slot_path(slot) / "model.edge" if slot else None,
                "active_name": self._model_name(slot) if slot else None}

    async def _view_auth(self, request: web.Request, handler):
        """``/view/``: a live view ticket in ``?ticket=`` or the ``edge_view`` cookie."""
        demo = self.demo
        given = request.query.get("ticket")
        ticket = given or request.cookies.get(VIEW_COOKIE)
        if demo is None or not self.tickets.check(ticket, demo.id):
            if ticket:
                log.warning("refused a view request with a wrong or expired ticket from %s",
                            request.remote)
            return _error(401, "this view needs a ticket: open the URL that `edge demo seg|kws "
                               "--device URL` printed (a ticket lasts while its demo runs, at "
                               "most 1 h), or send the agent's token")
        resp = await handler(request)
        if given and request.path == "/view/":
            resp.set_cookie(VIEW_COOKIE, given, path="/view", httponly=True,
                            samesite="Strict", secure=request.secure,
                            max_age=int(self.tickets.ttl_s))
        return resp

    async def demo_start(self, request: web.Request) -> web.Response:
        from sdk.agent.demo import DemoRefusal, make_demo

        try:
            body = await request.json()
        except ValueError:
            raise Refusal(400, 'a demo start takes a JSON body {"kind": "seg"|"kws", '
                               '"params": {...}}') from None
        cur = self.demo
        if self.demo_starting:
            raise Refusal(409, "another demo is starting on this board; wait for it, then stop "
                               "it first")
        if cur is not None and cur.alive:
            raise Refusal(409, f"a {cur.kind} demo is already running on this board (since "
                               f"{cur.since}: {cur.model_name}, source {cur.source_name}); "
                               "stop it first (Ctrl-C in the `edge demo ... --device` that "
                               "started it; if that host is gone, the demo stops by itself "
                               f"{cur.lease_s:g} s after its last status request)",
                               running=cur.describe())
        self.demo_starting = True
        demo = None
        try:
            demo = make_demo(body, self._demo_ctx())
            await asyncio.get_running_loop().run_in_executor(None, demo.prepare)
            if cur is not None:
                self.tickets.revoke(cur.id)
            self.demo = demo
            demo.start()
        except DemoRefusal as exc:
            if demo is not None:
                demo.close()
            log.warning("demo refused: %s", exc)
            raise Refusal(exc.status, str(exc), **exc.extra) from None
        except EdgeError as exc:
            if demo is not None:
                demo.close()
            raise Refusal(400, f"the demo cannot start on this board: {exc}") from None
        finally:
            self.demo_starting = False
        ticket, expires = self.tickets.issue(demo.id)
        log.info("demo %s started: %s, source %s", demo.kind, demo.model_name,
                 demo.source_name)
        return _json(200, {"demo": demo.describe(), "ticket": ticket,
                           "ticket_expires_at": _now_at(expires),
                           "view_path": f"/view/?ticket={ticket}"})

    def _demo_query(self, request: web.Request) -> int:
        try:
            return int(request.query.get("since", "0"))
        except ValueError:
            raise Refusal(400, "since must be an integer") from None

    async def demo_status(self, request: web.Request) -> web.Response:
        since = self._demo_query(request)
        demo = self.demo
        if demo is not None:
            demo.touch()  # the host follows it: its lease goes on
        return _json(200, {"demo": demo.describe(since) if demo is not None else None})

    async def demo_stop(self, request: web.Request) -> web.Response:
        want = None
        if request.can_read_body:
            try:
                want = (await request.json() or {}).get("id")
            except (ValueError, AttributeError):
                raise Refusal(400, 'a demo stop takes no body or {"id": "..."}') from None
        demo = self.demo
        if demo is None:
            raise Refusal(409, "no demo runs on this board")
        if want is not None and want != demo.id:
            raise Refusal(409, f"the demo on this board is another one (a {demo.kind} demo "
                               f"since {demo.since}); not stopped")
        self.tickets.revoke(demo.id)
        await asyncio.get_running_loop().run_in_executor(None, demo.stop)
        self.demo = None
        log.info("demo %s stopped (%s)", demo.kind, demo.reason)
        return _json(200, {"demo": demo.describe(0)})

    async def demo_ticket(self, request: web.Request) -> web.Response:
        demo = self.demo
        if demo is None or not demo.alive:
            raise Refusal(409, "no demo runs on this board; start one with `edge demo seg|kws "
                               "--device URL`")
        ticket, expires = self.tickets.issue(demo.id)
        return _json(200, {"ticket": ticket, "ticket_expires_at": _now_at(expires),
                           "view_path": f"/view/?ticket={ticket}"})

    def _view_demo(self, kind: str | None = None):
        demo = self.demo
        if demo is None:
            raise Refusal(404, "no demo runs on this board")
        if kind is not None and demo.kind != kind:
            raise Refusal(404, f"the {demo.kind} demo has no {kind} view")
        return demo

    async def view_redirect(self, request: web.Request) -> web.Response:
        q = ("?" + request.query_string) if request.query_string else ""
        return web.Response(status=302, headers={"Location": "/view/" + q})

    async def view_page(self, request: web.Request) -> web.Response:
        from sdk.agent.demo import view_page

        return web.Response(text=view_page(self._view_demo()), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def view_stats(self, request: web.Request) -> web.Response:
        demo = self._view_demo()
        d = demo.describe(max(0, demo.n_events - 20))
        d.pop("params", None)
        return web.json_response(d, headers={"Cache-Control": "no-store"})

    async def view_frame(self, request: web.Request) -> web.Response:
        _, jpeg = self._view_demo("seg").latest()
        if jpeg is None:
            raise Refusal(503, "no frame yet")
        return web.Response(body=jpeg, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})

    async def view_stream(self, request: web.Request) -> web.StreamResponse:
        """The annotated frames as MJPEG (multipart/x-mixed-replace), until the demo stops."""
        demo = self._view_demo("seg")
        resp = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            "Cache-Control": "no-store", "Connection": "close"})
        await resp.prepare(request)
        seq = 0
        try:
            while self.demo is demo and not self.closing:
                s, jpeg = demo.latest()
                if s == seq or jpeg is None:
                    if not demo.alive:
                        break
                    await asyncio.sleep(0.02)
                    continue
                seq = s
                await resp.write(f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg +
                                 b"\r\n")
        except ConnectionError:
            return resp  # this viewer left
        return resp

    async def view_events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``detection`` for each new event, ``stats`` twice a second."""
        from sdk.agent.demo import sse

        demo = self._view_demo()
        try:  # a reconnecting browser resumes after the last detection it saw
            seen = max(0, int(request.headers.get("Last-Event-ID", "0") or 0))
        except ValueError:
            seen = 0
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        last = 0.0
        try:
            while self.demo is demo and not self.closing:
                alive = demo.alive
                d = demo.describe(seen)
                for ev in d.pop("events"):
                    await resp.write(sse("detection", ev, ev["n"]))
                    seen = ev["n"]
                d.pop("params", None)
                if not alive:  # every detection is out: the page closes its EventSource
                    await resp.write(sse("end", d))
                    break
                if time.monotonic() - last >= 0.5:
                    await resp.write(sse("stats", d))
                    last = time.monotonic()
                await asyncio.sleep(0.05)
        except ConnectionError:
            return resp
        return resp

    def stop_demo(self) -> None:
        self.closing = True
        if self.demo is not None:
            self.demo.stop()


def _now_at(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))



def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def setup_logging(root: Path) -> None:
    log.setLevel(logging.INFO)
    if not any(isinstance(h, logging.handlers.RotatingFileHandler) for h in log.handlers):
        fh = logging.handlers.RotatingFileHandler(root / "agent.log", maxBytes=1 << 20,
                                                  backupCount=3)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(fh)
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("edge agent: %(message)s"))
        log.addHandler(sh)


def tls_context(config: AgentConfig) -> ssl.SSLContext | None:
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise EdgeError("TLS needs both --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise EdgeError(f"cannot load the TLS certificate/key ({exc}); check --tls-cert and "
                        "--tls-key") from None
    return ctx


async def serve(config: AgentConfig, announce=print) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    import signal

    config.root.mkdir(parents=True, exist_ok=True)
    setup_logging(config.root)
    ctx = tls_context(config)
    agent = Agent(config)
    if agent.new_token:
        announce(f"edge agent: new access token (stored in {config.root / 'token'}, mode 0600; "
                 f"shown only now): {agent.token}")
    runner = web.AppRunner(agent.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=ctx)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise EdgeError(f"cannot listen on {config.host}:{config.port} ({exc.strerror}); "
                        "choose another --port") from None
    host, port = runner.addresses[0][:2]
    url = f"{'https' if ctx else 'http'}://{host}:{port}"
    write_atomic(config.root / "agent.url", url.encode())
    announce(f"edge agent: listening on {url} (root {config.root})")
    log.info("listening on %s", url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await loop.run_in_executor(None, agent.stop_demo)  # frees the camera / microphone
    await runner.cleanup()
    agent.runs.shutdown(wait=False)
    agent.checks.shutdown(wait=False)


async def _multipart_step(awaitable):
    """One read of a multipart upload; a body that is not well-formed multipart (a boundary
    cut short, a part past the end) is a 400 refusal, not a server error."""
    from aiohttp.http_exceptions import HttpProcessingError

    try:
        return await awaitable
    except (ValueError, AssertionError, KeyError, UnicodeDecodeError,
            HttpProcessingError) as exc:
        raise Refusal(400, f"the deploy upload is not well-formed multipart/form-data "
                           f"({str(exc)[:80]}); use `edge deploy`") from None
