"""`edge agent` as a real process on loopback with real HTTP: deploy, status, run, rollback;
every bad deploy refused in one line with the active model untouched; the health check rolls
back; token, TLS, the systemd unit."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import shutil
import stat
import subprocess
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sdk.agent.client import multipart, prepare_deploy
from sdk.agent.signing import sign
from sdk.cli.main import main
from sdk.errors import DeviceError

from .conftest import AgentProcess, deploy


def _edge(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line_error(rc, err):
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _run(a: AgentProcess, models) -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    np.savez(buf, x=models["x"])
    return a.client().run_npz(buf.getvalue())[0]


def _assert_active(a: AgentProcess, models, i: int) -> None:
    """Model m{i} is active, committed, whole, and gives the host's outputs on the board."""
    s = a.client().status()
    assert s["state"] == "committed" and s["deploy_in_progress"] is None
    assert s["model"]["bundle_sha256"] == _sha(models[f"m{i}"]), s
    assert s["model"]["model_name"] == f"cnn{i}"
    y = _run(a, models)
    np.testing.assert_array_equal(y["logits"], models[f"y{i}"]["logits"])


def test_deploy_status_run_rollback_through_the_cli(agent, models, capsys, tmp_path):
    url, tok, key = agent.url, agent.token, models["trusted"]
    rc, out, err = _edge(capsys, "deploy", models["m1"], "--device", url, "--sign", key,
                         "--token", tok)
    assert rc == 0, err
    assert "deployed 'cnn1'" in out and "slot a" in out and "bit-exact" in out
    assert "committed" in out
    _assert_active(agent, models, 1)
    rc, out, err = _edge(capsys, "device", "run", "--device", url, "--token", tok,
                         "--input", models["dir"] / "x.npz", "-o", tmp_path / "y.npz")
    assert rc == 0, err
    with np.load(tmp_path / "y.npz") as z:  # the board's outputs equal the host's, bit for bit
        np.testing.assert_array_equal(z["logits"], models["y1"]["logits"])
    rc, out, err = _edge(capsys, "deploy", models["m2"], "--device", url, "--sign", key,
                         "--token", tok)
    assert rc == 0, err and "slot b" in out
    _assert_active(agent, models, 2)
    rc, out, err = _edge(capsys, "device", "status", "--device", url, "--token", tok)
    assert rc == 0, err
    assert "'cnn2' in slot b" in out and "previous: 'cnn1' in slot a" in out
    rc, out, err = _edge(capsys, "device", "rollback", "--device", url, "--token", tok)
    assert rc == 0 and "'cnn1' in slot a" in out, err
    _assert_active(agent, models, 1)
    rc, out, err = _edge(capsys, "device", "status", "--device", url, "--token", tok)
    assert "rollback" in out and "requested by the host" in out
    rc, out, err = _edge(capsys, "device", "logs", "--device", url, "--token", tok)
    assert rc == 0 and "committed in slot b" in out and "rollback from slot b" in out
    rc, out, err = _edge(capsys, "device", "profile", "--device", url, "--token", tok,
                         "--runs", "5", "--json")
    assert rc == 0, err
    prof = json.loads(out)
    assert prof["runs"] == 5 and prof["latency_ms"]["median"] > 0
    assert prof["energy_mj_per_inference"] is None and "no board profile" in prof["energy_note"]
    # rolling back again returns to the other committed model; a third time works too
    agent.client().rollback()
    _assert_active(agent, models, 2)


def test_the_state_survives_a_restart(agent, models):
    deploy(agent, models["m1"], models["trusted"])
    deploy(agent, models["m2"], models["trusted"])
    agent.stop()
    agent.start()
    _assert_active(agent, models, 2)
    assert agent.client().status()["previous_slot"] == "a"
    assert "new access token" not in agent.output()  # shown once, on the first start only


def _tamper(src: Path, dst: Path) -> None:
    """The same zip with one weight byte changed (manifest and its SHA-256 list unchanged)."""
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    w = bytearray(parts["weights.bin"])
    w[len(w) // 2] ^= 0x5A
    parts["weights.bin"] = bytes(w)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for n, v in parts.items():
            z.writestr(n, v)


def _refused(a, models, fn, status: int, words: str) -> None:
    with pytest.raises(DeviceError) as e:
        fn()
    msg = str(e.value)
    assert f"HTTP {status}" in msg and words in msg, msg
    assert "\n" not in msg
    _assert_active(a, models, 1)


def test_bad_deploys_are_refused_and_leave_the_active_model(agent, models, tmp_path):
    deploy(agent, models["m1"], models["trusted"])
    data, st, sig, _ = prepare_deploy(models["m2"], models["trusted"])
    c = agent.client()
    # bytes changed after signing: the signature no longer verifies
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 1
    _refused(agent, models, lambda: c.deploy(bytes(bad), st, sig), 403, "bad signature")
    # the self-test swapped after signing: same
    st3 = prepare_deploy(models["m3"], None)[1]
    _refused(agent, models, lambda: c.deploy(data, st3, sig), 403, "bad signature")
    # signed by a key the device does not trust; not signed at all
    _refused(agent, models, lambda: deploy(agent, models["m2"], models["other"]), 403,
             "does not verify against any key this device trusts")
    _refused(agent, models, lambda: deploy(agent, models["m2"], None), 403, "not signed")
    # a bundle whose part does not match its SHA-256, even when signed as it is
    _tamper(models["m2"], tmp_path / "tampered.edge")
    tdata = (tmp_path / "tampered.edge").read_bytes()
    tsig = sign(models["trusted"], hashlib.sha256(tdata).hexdigest(),
                hashlib.sha256(st).hexdigest())
    _refused(agent, models, lambda: c.deploy(tdata, st, tsig), 400, "checksum mismatch")
    # a part named to escape the slot directory
    with zipfile.ZipFile(models["m2"]) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, v in parts.items():
            z.writestr(n, v)
        z.writestr("../../evil.txt", b"owned")
    tr = buf.getvalue()
    trsig = sign(models["trusted"], hashlib.sha256(tr).hexdigest(),
                 hashlib.sha256(st).hexdigest())
    _refused(agent, models, lambda: c.deploy(tr, st, trsig), 400, "unsafe name")
    assert not list(agent.root.parent.rglob("evil.txt"))
    # over the size limit (the agent was started with --max-upload-mb 1)
    big = data + b"\0" * (1 << 20)
    _refused(agent, models, lambda: c.deploy(big, st, sig), 413, "over this device's limit")
    # nothing was written into the inactive slot by any of them
    assert not (agent.root / "slots" / "b" / "meta.json").exists()
    assert not list((agent.root / "staging").iterdir())


def test_token_is_required_everywhere_but_the_health_probe(agent, models, capsys):
    mode = stat.S_IMODE((agent.root / "token").stat().st_mode)
    assert mode == 0o600
    assert f"shown only now): {agent.token}" in agent.output()
    with urllib.request.urlopen(agent.url + "/healthz") as r:
        assert json.loads(r.read()) == {"ok": True}
    for method, path in (("GET", "/v1/status"), ("POST", "/v1/deploy"), ("POST", "/v1/rollback"),
                         ("GET", "/v1/logs"), ("POST", "/v1/run"), ("POST", "/v1/profile"),
                         ("GET", "/v1/nope")):
        for header in ({}, {"Authorization": "Bearer " + "x" * 43},
                       {"Authorization": "Basic " + agent.token}):
            req = urllib.request.Request(agent.url + path, method=method, headers=header,
                                         data=b"" if method == "POST" else None)
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req)
            assert e.value.code == 401, (method, path, header)
    rc, _, err = _edge(capsys, "device", "status", "--device", agent.url, "--token", "wrong")
    assert "wrong token" in _one_line_error(rc, err)
    rc, _, err = _edge(capsys, "deploy", models["m1"], "--device", agent.url, "--sign",
                       models["trusted"], "--token", "nope")
    assert "wrong token" in _one_line_error(rc, err)
    assert agent.client().status()["model"] is None  # nothing got in


def test_a_failing_health_check_rolls_back_and_status_says_why(agent, models, capsys, tmp_path):
    deploy(agent, models["m1"], models["trusted"])
    _, st, _, _ = prepare_deploy(models["m2"], None)
    with np.load(io.BytesIO(st)) as z:  # a self-test this board cannot pass
        arrays = {k: z[k] for k in z.files}
    arrays["c1_out0"] = arrays["c1_out0"].copy()
    arrays["c1_out0"].flat[3] = np.int8(arrays["c1_out0"].flat[3] ^ 0x11)
    np.savez(tmp_path / "bad-selftest.npz", **arrays)
    rc, _, err = _edge(capsys, "deploy", models["m2"], "--device", agent.url, "--sign",
                       models["trusted"], "--token", agent.token, "--selftest",
                       tmp_path / "bad-selftest.npz")
    line = _one_line_error(rc, err)
    assert "rolled back to slot a" in line and "case 1" in line and "differs" in line, line
    _assert_active(agent, models, 1)
    rc, out, err = _edge(capsys, "device", "status", "--device", agent.url, "--token",
                         agent.token)
    assert rc == 0, err
    assert "last event: rollback" in out and "'cnn2'" in out
    assert "health check failed: self-test case 1: output 'logits' differs from the " \
           "reference in 1 of 10 values" in out, out
    # the failed slot is no rollback target
    with pytest.raises(DeviceError, match="no previous model"):
        agent.client().rollback()


def _raw_deploy_start(a: AgentProcess, models, i: int):
    """Start a deploy of m{i} by hand and send all but the last 100 bytes of the body."""
    data, st, sig, _ = prepare_deploy(models[f"m{i}"], models["trusted"])
    body, ctype = multipart([("bundle", "m.edge", data), ("selftest", "s.npz", st),
                             ("signature", "s.json", sig)])
    u = urllib.parse.urlsplit(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("POST", "/v1/deploy")
    conn.putheader("Authorization", f"Bearer {a.token}")
    conn.putheader("Content-Type", ctype)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:-100])
    deadline = time.monotonic() + 20
    while a.client().status()["deploy_in_progress"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return conn, body[-100:]


def test_two_concurrent_deploys_the_second_is_refused(agent, models, capsys):
    deploy(agent, models["m1"], models["trusted"])
    conn, rest = _raw_deploy_start(agent, models, 2)
    rc, _, err = _edge(capsys, "deploy", models["m3"], "--device", agent.url, "--sign",
                       models["trusted"], "--token", agent.token)
    line = _one_line_error(rc, err)
    assert "another deploy is in progress" in line and "HTTP 409" in line, line
    with pytest.raises(DeviceError, match="another deploy is in progress"):
        agent.client().rollback()
    s = agent.client().status()
    assert s["model"]["model_name"] == "cnn1" and s["deploy_in_progress"]["phase"] == "receiving"
    conn.send(rest)  # the first one finishes and commits
    r = conn.getresponse()
    assert r.status == 200, r.read()
    _assert_active(agent, models, 2)
    # a deploy whose upload is cut off is dropped; the active model stays, the lock is freed
    conn, _ = _raw_deploy_start(agent, models, 3)
    conn.sock.shutdown(2)
    conn.close()
    deadline = time.monotonic() + 20
    while agent.client().status()["deploy_in_progress"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _assert_active(agent, models, 2)
    deploy(agent, models["m3"], models["trusted"])
    _assert_active(agent, models, 3)


def test_cli_bad_input_is_one_line(agent, models, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_DEVICE_TOKEN", raising=False)
    monkeypatch.delenv("EDGE_DEVICE", raising=False)
    monkeypatch.setenv("EDGE_CONFIG", str(tmp_path / "none.toml"))
    url, key = agent.url, models["trusted"]
    cases = [
        (["deploy", tmp_path / "missing.edge", "--device", url, "--token", "t"], "no such"),
        (["deploy", models["dir"] / "x.npz", "--device", url, "--token", "t"], ".edge bundle"),
        (["deploy", models["m1"], "--token", "t"], "no device given"),
        (["deploy", models["m1"], "--device", "raspberrypi:4910"], "not an http"),
        (["deploy", models["m1"], "--device", url], "no token"),
        (["deploy", models["m1"], "--device", url, "--token", "t", "--sign", key.with_suffix(".x")],
         "no such signing key"),
        (["deploy", models["m1"], "--device", url, "--token", "t", "--sign",
          str(key) + ".pub"], "not an unencrypted PEM"),
        (["device", "status", "--device", "http://127.0.0.1:9", "--token", "t"],
         "cannot reach the agent"),
        (["device", "run", "--device", url, "--token", agent.token, "--input",
          models["dir"] / "x.npz"], "no model is deployed"),
        (["device", "run", "--device", url, "--token", agent.token, "--input",
          tmp_path / "nope.npz"], "no such input file"),
        (["keys", "generate", "-o", key], "exists; pass --force"),
        (["agent", "--trust", "ed25519:abc", "--root", tmp_path / "r"], "not valid base64"),
        (["agent", "--tls-cert", key, "--root", tmp_path / "r"], "--tls-key go together"),
    ]
    for args, words in cases:
        rc, _, err = _edge(capsys, *args)
        assert words in _one_line_error(rc, err), (args, err)
    # config file: the token for this URL
    cfg = tmp_path / "devices.toml"
    cfg.write_text(f'[devices."{url}"]\ntoken = "{agent.token}"\n')
    monkeypatch.setenv("EDGE_CONFIG", str(cfg))
    rc, out, err = _edge(capsys, "device", "status", "--device", url)
    assert rc == 0 and "active: no model" in out, err
    # a run input of the wrong shape, once a model is there
    deploy(agent, models["m1"], models["trusted"])
    np.savez(tmp_path / "bad.npz", x=np.zeros((1, 3, 8, 8), np.float32))
    rc, _, err = _edge(capsys, "device", "run", "--device", url, "--input", tmp_path / "bad.npz")
    assert "shape" in _one_line_error(rc, err)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-agent-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_tls(tmp_path, models, capsys):
    cert, key = _self_signed(tmp_path)
    # this agent also checks and runs models on a delegate backend (LiteRT): within 1 LSB
    a = AgentProcess(tmp_path / "root", "--trust", str(models["trusted"]) + ".pub",
                     "--tls-cert", str(cert), "--tls-key", str(key), "--backend", "litert")
    url = a.start()
    try:
        assert url.startswith("https://127.0.0.1:")
        rc, out, err = _edge(capsys, "deploy", models["m1"], "--device", url, "--sign",
                             models["trusted"], "--token", a.token, "--ca", cert)
        assert rc == 0 and "committed" in out, err
        assert "within 1 LSB on litert" in out, out
        rc, out, err = _edge(capsys, "device", "profile", "--device", url, "--token", a.token,
                             "--ca", cert, "--runs", "3")
        assert rc == 0 and "(litert, 3 runs)" in out, err
        rc, out, err = _edge(capsys, "device", "status", "--device", url, "--token", a.token,
                             "--ca", cert)
        assert rc == 0 and "'cnn1' in slot a" in out, err
        # without the CA the host refuses the self-signed certificate
        rc, _, err = _edge(capsys, "device", "status", "--device", url, "--token", a.token)
        assert "CERTIFICATE_VERIFY_FAILED" in _one_line_error(rc, err)
        # plain HTTP to the TLS port gets nowhere
        with pytest.raises(DeviceError):
            a.client().__class__(url.replace("https", "http"), token=a.token).status()
    finally:
        a.stop()


def test_install_service_writes_the_unit_and_the_token(tmp_path, models, capsys):
    units = tmp_path / "units"
    units.mkdir()
    rc, out, err = _edge(capsys, "agent", "--install-service", "--no-enable", "--systemd-dir",
                         units, "--root", tmp_path / "r", "--port", "4999", "--trust",
                         str(models["trusted"]) + ".pub", "--target", "raspberry-pi-4")
    assert rc == 0, err
    unit = (units / "edge-agent.service").read_text()
    assert "[Service]" in unit and "Restart=always" in unit and "WantedBy=multi-user.target" in unit
    exec_start = next(ln for ln in unit.splitlines() if ln.startswith("ExecStart="))
    assert "-m sdk.cli.main agent --root" in exec_start and "--port 4999" in exec_start
    assert "--target raspberry-pi-4" in exec_start and "@" not in unit
    if shutil.which("systemd-analyze"):  # systemd's own check of the unit file
        r = subprocess.run(["systemd-analyze", "verify", str(units / "edge-agent.service")],
                           capture_output=True, text=True, check=False, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    tok = (tmp_path / "r" / "token").read_text().strip()
    assert f"shown only now): {tok}" in out
    assert stat.S_IMODE((tmp_path / "r" / "token").stat().st_mode) == 0o600
    assert (tmp_path / "r" / "trusted_keys").read_text().startswith("ed25519:")
