"""`edge demo seg --serve` watched by a real headless Chromium (Debian's `chromium`): two
screenshots a second apart differ and show the overlay's legend; a second viewer connecting
and leaving does not stop the first; Ctrl-C stops the server cleanly."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sdk.vision.overlay import PALETTE

from .mjpeg_client import MjpegReader

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(tools/bootstrap.sh installs it)")


def _screenshot(url: str, path: Path, profile: Path) -> np.ndarray:
    import cv2

    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}",
                        "--window-size=720,520", f"--screenshot={path}", url],
                       capture_output=True, text=True, timeout=90, check=False)
    assert path.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(path))
    assert img is not None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _has_colour(img: np.ndarray, rgb, tol: int = 12, min_px: int = 20) -> bool:
    d = np.abs(img.astype(np.int32) - np.asarray(rgb, np.int32)).max(axis=-1)
    return int((d <= tol).sum()) >= min_px



def _sigint_default() -> None:
    """In the demo's process: Ctrl-C (SIGINT) as a terminal delivers it. A shell without job
    control starts background jobs with SIGINT ignored, and Python keeps an inherited
    SIG_IGN, so a suite run as such a job would see the demo ignore the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

@pytest.fixture()
def served(seg_bundle, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sdk.cli.main", "demo", "seg", "--serve",
                             "127.0.0.1:0", "--model", str(seg_bundle), "--seconds", "240",
                             "--max-fps", "8", "--size", "240"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT,
                            preexec_fn=_sigint_default)
    url = None
    deadline = time.monotonic() + 180
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("the demo did not start serving:\n" + "".join(lines) + proc.stderr.read())
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_browser_sees_a_live_overlay_and_viewers_come_and_go(served, tmp_path) -> None:
    proc, url = served
    host, port = url.split("//")[1].strip("/").split(":")
    first = MjpegReader(host, int(port))  # viewer 1 stays for the whole test
    assert first.next_frame()[:2] == b"\xff\xd8"

    a = _screenshot(url, tmp_path / "a.png", tmp_path / "profile-a")
    time.sleep(1.0)
    b = _screenshot(url, tmp_path / "b.png", tmp_path / "profile-b")
    assert a.shape == b.shape
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
    assert (diff > 30).sum() > 2000, "the two screenshots a second apart show the same picture"
    for shot in (a, b):
        # the legend's swatches: every class colour of the overlay is on the page
        present = [_has_colour(shot, c) for c in PALETTE[1:]]
        assert sum(present) >= len(present) - 1, present
        # and the frame itself is there (a large non-background area)
        assert (shot.astype(np.int32).sum(-1) > 90).mean() > 0.15

    # viewer 2 comes and goes (the screenshots above did too); viewer 1 keeps getting frames
    second = MjpegReader(host, int(port))
    assert second.next_frame() is not None
    second.close()
    frames = [first.next_frame() for _ in range(4)]
    assert all(f is not None for f in frames)
    assert len(set(frames)) > 1
    stats = json.loads(urllib.request.urlopen(url + "stats.json", timeout=10).read())
    assert stats["frame"] > 2 and stats["integer"] is True and stats["latency_ms"] > 0
    assert stats["viewers"] >= 1
    first.close()

    # Ctrl-C: a clean stop, the port released
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()
