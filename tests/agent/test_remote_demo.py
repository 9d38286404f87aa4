"""`edge demo seg|kws --device URL`: the demo runs ON the board (a real `edge agent` process on
127.0.0.1, real HTTP), from a source resolved on the board, and the board serves the browser
view. A video file written by OpenCV is the board's camera and a real headless Chromium opens
the board-served view; an espeak-ng sentence WAV on the board gives keyword detections through
the API and the view's Server-Sent Events, the same ones the host's own demo finds in that WAV;
the view refuses without a ticket; a second demo gets 409; a bad source is one line and a
non-zero exit; stopping closes the board's source."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sdk.cli.main import main
from sdk.errors import DeviceError

from .conftest import ROOT, AgentProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")



def _sigint_default() -> None:
    """In the demo's process: Ctrl-C (SIGINT) as a terminal delivers it. A shell without job
    control starts background jobs with SIGINT ignored, and Python keeps an inherited
    SIG_IGN, so a suite run as such a job would see the demo ignore the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """One agent for the module. It shares the program and model cache ($EDGE_CACHE_DIR or
    ~/.cache/edge) with the test process, as a board's agent keeps its own between demos."""
    a = AgentProcess(tmp_path_factory.mktemp("board") / "root", "--allow-unsigned")
    a.start()
    yield a
    a.stop()


def _edge(capsys, *args):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line_error(rc, err) -> str:
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _get(url: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(4096)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _open_files(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.add(os.readlink(fd))
        except OSError:
            pass
    return out


def _video(path: Path, n: int = 24, size: int = 240) -> Path:
    import cv2

    import sdk

    images, _ = sdk.vision.make_scenes(n, seed=5, split="test", size=size)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (size, size))
    assert w.isOpened()
    for im in images:
        w.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    w.release()
    return path


def _screenshot(url: str, path: Path, profile: Path) -> np.ndarray:
    import cv2

    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
                        "--window-size=720,560", f"--screenshot={path}", url],
                       capture_output=True, text=True, timeout=90, check=False)
    assert path.is_file(), r.stderr[-2000:]
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _has_colour(img: np.ndarray, rgb, tol: int = 12, min_px: int = 20) -> bool:
    d = np.abs(img.astype(np.int32) - np.asarray(rgb, np.int32)).max(axis=-1)
    return int((d <= tol).sum()) >= min_px


def _read_until(proc: subprocess.Popen, pattern: str, lines: list[str], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    proc.kill()
    pytest.fail(f"no line matching {pattern!r}:\n" + "".join(lines) + proc.stderr.read())


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(tools/bootstrap.sh installs it)")
def test_seg_demo_runs_on_the_board_and_the_board_serves_the_view(board, tmp_path, capsys):
    from sdk.vision.overlay import PALETTE

    cam = _video(tmp_path / "board_camera.avi")  # the board's "camera": a file on the board
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("EDGE_DEVICE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "sdk.cli.main", "demo", "seg", "--device",
                             board.url, "--token", board.token, "--source", str(cam), "--loop",
                             "--max-fps", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT,
                            preexec_fn=_sigint_default)
    lines: list[str] = []
    try:
        m = _read_until(proc, r"view: (http://127\.0\.0\.1:\d+/view/\?ticket=(\S+)) ", lines)
        view, ticket = m.group(1), m.group(2)
        assert view.startswith(board.url + "/view/")
        assert "seg_vit_mask" in "".join(lines) and str(cam) in "".join(lines)
        # status lines stream to the host: frame, fps, latency and the labels seen
        m = _read_until(proc, r"frame\s+\d+\s+([\d.]+) fps\s+latency\s+([\d.]+) ms\s+(\w+) \d+%",
                        lines)
        assert float(m.group(2)) > 0

        # the board has the "camera" open while the demo runs
        assert str(cam) in _open_files(board.proc.pid)

        # the view and everything under it: the ticket or the token, nothing else
        base = board.url + "/view/"
        for path in ("", "stream.mjpg", "stats.json", "frame.jpg", "events"):
            assert _get(base + path)[0] == 401, path
            assert _get(base + path + "?ticket=" + "x" * 43)[0] == 401, path
            forged = ticket[:-1] + ("B" if ticket.endswith("A") else "A")
            assert _get(base + path, {"Cookie": "edge_view=" + forged})[0] == 401
        assert _get(board.url + "/view")[0] == 401
        # a ticket opens the view only, never the API
        assert _get(board.url + "/v1/status?ticket=" + ticket)[0] == 401
        assert _get(board.url + "/v1/demo", {"Cookie": "edge_view=" + ticket})[0] == 401
        code, body = _get(base + "frame.jpg?ticket=" + ticket)
        assert code == 200 and body[:2] == b"\xff\xd8"
        code, body = _get(base + "stats.json",
                          {"Authorization": "Bearer " + board.token})
        stats = json.loads(body)
        assert code == 200 and stats["kind"] == "seg" and stats["state"] == "running"
        assert stats["stats"]["frame"] >= 1 and stats["stats"]["integer"] is True

        # a real browser: the page sets the ticket as a cookie and its stream plays
        a = _screenshot(view, tmp_path / "a.png", tmp_path / "profile-a")
        time.sleep(1.0)
        b = _screenshot(view, tmp_path / "b.png", tmp_path / "profile-b")
        assert a.shape == b.shape
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
        assert (diff > 30).sum() > 2000, "two screenshots a second apart show the same picture"
        for shot in (a, b):
            present = [_has_colour(shot, c) for c in PALETTE[1:]]  # the overlay's legend
            assert sum(present) >= len(present) - 1, present
            assert (shot.astype(np.int32).sum(-1) > 90).mean() > 0.15  # the frame is there

        assert board.client().status()["demo"]["kind"] == "seg"  # edge device status --json
        rc, out, err = _edge(capsys, "device", "status", "--device", board.url, "--token",
                             board.token)
        assert rc == 0, err
        assert "demo: seg running" in out, out
        # one demo at a time: a second start is refused with 409 naming the running one
        with pytest.raises(DeviceError, match=r"a seg demo is already running.*HTTP 409"):
            board.client().demo_start("kws", {})
        rc, out, err = _edge(capsys, "demo", "kws", "--device", board.url, "--token",
                             board.token, "--source", "words")
        line = _one_line_error(rc, err)
        assert "seg demo is already running" in line and "409" in line

        # Ctrl-C on the host stops the demo on the board and frees its camera
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "stopped on the board" in out
        assert board.client().demo_status() is None
        assert str(cam) not in _open_files(board.proc.pid)
        assert _get(view)[0] == 401  # the ticket died with its demo
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
            try:
                board.client().demo_stop()
            except DeviceError:
                pass


def test_kws_demo_on_the_board_reports_detections(board, tmp_path):
    from sdk.audio import write_wav
    from sdk.cli.kws_demo import DEMO_SENTENCES, KwsDemoOptions, run_kws_demo, speak_sentences

    audio, _ = speak_sentences(DEMO_SENTENCES[:5], "en-us+m3")
    wav = tmp_path / "sentences.wav"  # a file on the board
    write_wav(wav, audio)
    c = board.client()
    # this test reads the view's events instead of following the demo with status requests:
    # a long lease, so a loaded machine does not end the demo under it
    r = c.demo_start("kws", {"source": str(wav), "fast": True, "lease_s": 600})
    demo = r["demo"]
    assert demo["kind"] == "kws" and demo["state"] == "running"
    assert str(wav) in demo["source"] and "kws_lmuformer" in demo["model"]

    # the board's view streams the detections as Server-Sent Events (opened with the ticket)
    sse, kind = [], ""
    with urllib.request.urlopen(board.url + r["view_path"].replace("/view/", "/view/events"),
                                timeout=120) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "detection":
                sse.append(json.loads(line[6:]))
                break
    assert sse and sse[0]["keyword"] in ("yes", "no", "up", "down", "left", "right", "on",
                                         "off", "stop", "go")

    deadline = time.monotonic() + 120
    while (d := c.demo_status())["state"] == "running":
        assert time.monotonic() < deadline, d
        time.sleep(0.5)
    assert d["state"] == "finished", d
    assert d["stats"]["audio_s"] == pytest.approx(len(audio) / 16000, abs=0.11)
    if CHROMIUM is not None:  # the board's kws page in a real browser lists every detection
        r2 = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                             "--virtual-time-budget=5000", "--dump-dom",
                             board.url + r["view_path"]],
                            capture_output=True, text=True, timeout=90, check=False)
        shown = re.findall(r'<div class="det">([\d.]+) s  (\w+)  ([\d.]+)</div>', r2.stdout)
        assert [(kw, float(t)) for t, kw, _ in reversed(shown)] == \
            [(e["keyword"], round(e["time_s"], 2)) for e in c.demo_status()["events"]], \
            r2.stdout[-3000:]
        assert "finished" in r2.stdout
    final = c.demo_stop(d["id"])
    assert final["state"] == "finished" and c.demo_status() is None
    board_events = [(e["keyword"], e["time_s"]) for e in final["events"]]
    assert len(board_events) >= 1 and sse[0]["keyword"] == board_events[0][0]

    # the host's own demo finds the same detections in the same WAV
    host = run_kws_demo(KwsDemoOptions(wav=str(wav), fast=True), echo=lambda *a, **k: None)
    assert [(e.keyword, round(e.time_s, 3)) for e in host.events] == board_events


def test_bad_sources_and_options_are_one_line_refusals(board, capsys, tmp_path):
    url, tok = board.url, board.token
    rc, _, err = _edge(capsys, "demo", "seg", "--device", url, "--token", tok, "--source", "7")
    line = _one_line_error(rc, err)
    assert "camera 7" in line and "on the board" in line and "sources" in line
    rc, _, err = _edge(capsys, "demo", "seg", "--device", url, "--token", tok, "--source",
                         tmp_path / "no-such.avi")
    line = _one_line_error(rc, err)
    assert "no such file" in line and "on the board" in line
    rc, _, err = _edge(capsys, "demo", "kws", "--device", url, "--token", tok, "--source",
                         tmp_path / "no-such.wav")
    line = _one_line_error(rc, err)
    assert "no such file on the board" in line
    rc, _, err = _edge(capsys, "demo", "kws", "--device", url, "--token", tok, "--source",
                         "mic:no-such-microphone")
    assert "not found on the board" in _one_line_error(rc, err)
    rc, _, err = _edge(capsys, "demo", "seg", "--device", url, "--token", tok, "--serve",
                         "127.0.0.1:0")
    assert "--serve is not available with --device" in _one_line_error(rc, err)
    rc, _, err = _edge(capsys, "demo", "kws", "--device", url, "--token", tok, "--wav",
                         tmp_path / "x.wav")
    assert "--wav is not available with --device" in _one_line_error(rc, err)
    rc, _, err = _edge(capsys, "demo", "kws", "--source", "mic")
    assert "--source goes with --device" in _one_line_error(rc, err)
    rc, _, err = _edge(capsys, "demo", "seg", "--device", url, "--token", "wrong")
    assert "wrong token" in _one_line_error(rc, err)
    # nothing was left running or half-started on the board
    assert board.client().demo_status() is None
    with pytest.raises(DeviceError, match="no demo runs"):
        board.client().demo_ticket()


def test_a_demo_whose_host_is_gone_stops_by_itself(board):
    """The host follows its demo with status requests; without them for lease_s seconds the
    board stops the demo and closes its source (a killed host does not hold the camera)."""
    c = board.client()
    r = c.demo_start("seg", {"source": "generator", "size": 96, "lease_s": 2})
    stats = board.url + "/view/stats.json?ticket=" + r["ticket"]  # a viewer renews nothing
    deadline = time.monotonic() + 60
    while True:
        code, body = _get(stats)
        assert code == 200, body
        d = json.loads(body)
        if d["state"] != "running":
            break
        assert time.monotonic() < deadline, d
        time.sleep(0.3)
    assert d["state"] == "stopped" and "host stopped following" in d["reason"], d
    assert d["uptime_s"] >= 2.0
    # the next start is not refused; the lease also refuses nonsense
    with pytest.raises(DeviceError, match="lease_s 0.1 is outside"):
        c.demo_start("seg", {"source": "generator", "lease_s": 0.1})
    assert c.demo_stop(d["id"])["state"] == "stopped"
    assert c.demo_status() is None
