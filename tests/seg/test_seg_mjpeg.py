"""The MJPEG server over real sockets: several viewers, one leaving, a clean stop."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

from sdk.vision.mjpeg import MjpegServer
from sdk.vision.overlay import encode_jpeg

from .mjpeg_client import MjpegReader


@pytest.fixture()
def server():
    srv = MjpegServer("127.0.0.1", 0, title="test").start()
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            img = np.full((24, 32, 3), (i * 37) % 256, np.uint8)
            srv.publish(encode_jpeg(img), {"frame": i})
            i += 1
            time.sleep(0.02)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    yield srv
    stop.set()
    t.join(2)
    srv.stop()


def test_page_stats_and_frame(server) -> None:
    page = urllib.request.urlopen(server.url, timeout=5).read().decode()
    assert '<img id="view" src="/stream.mjpg"' in page
    jpeg = urllib.request.urlopen(server.url + "frame.jpg", timeout=5).read()  # waits for one
    assert jpeg[:2] == b"\xff\xd8"
    stats = json.loads(urllib.request.urlopen(server.url + "stats.json", timeout=5).read())
    assert stats["frame"] >= 0 and "viewers" in stats
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(server.url + "nothing", timeout=5)


def test_a_second_viewer_leaving_does_not_stop_the_first(server) -> None:
    a = MjpegReader(server.host, server.port)
    first = [a.next_frame() for _ in range(3)]
    assert all(f and f[:2] == b"\xff\xd8" for f in first)
    b = MjpegReader(server.host, server.port)
    assert b.next_frame() is not None
    deadline = time.monotonic() + 5
    while server.viewers < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.viewers == 2
    b.close()  # the second viewer goes away mid-stream
    frames = [a.next_frame() for _ in range(10)]
    assert all(f is not None for f in frames), "the first viewer's stream stopped"
    assert len({f for f in frames}) > 1, "the first viewer sees no new frames"
    deadline = time.monotonic() + 5
    while server.viewers != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.viewers == 1
    a.close()


def test_stop_ends_streams_and_frees_the_port() -> None:
    srv = MjpegServer("127.0.0.1", 0).start()
    srv.publish(encode_jpeg(np.zeros((8, 8, 3), np.uint8)), {})
    a = MjpegReader(srv.host, srv.port)
    assert a.next_frame() is not None
    t = time.monotonic()
    srv.stop()
    assert time.monotonic() - t < 4
    assert a.next_frame() is None  # the viewer sees the end of the stream
    a.close()
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=1).close()
