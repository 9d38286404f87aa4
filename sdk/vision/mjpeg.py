"""A small MJPEG server for headless live views (standard library only).

The page at ``/`` shows ``/stream.mjpg`` in a plain ``<img>`` (``multipart/x-mixed-replace``,
one JPEG per part, as picamera2's examples and Edge Impulse's Linux runner serve live views)
and polls ``/stats.json``; ``/frame.jpg`` is the latest frame alone. Every viewer has its own
handler thread that waits for the next frame; a viewer that disconnects ends only its own
thread. :meth:`MjpegServer.stop` wakes every waiting viewer, closes the socket and joins the
serving thread.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOUNDARY = "edgeframe"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ background:#111; color:#ddd; font-family:sans-serif; margin:12px; }}
#view {{ image-rendering: pixelated; max-width: 100%; border:1px solid #444; }}
#stats {{ font-family: monospace; margin-top: 8px; white-space: pre; }}
</style></head>
<body>
<h3>{title}</h3>
<img id="view" src="/stream.mjpg" alt="live segmentation">
<div id="stats">waiting for stats…</div>
<script>
async function poll() {{
  try {{
    const r = await fetch('/stats.json', {{cache: 'no-store'}});
    const s = await r.json();
    document.getElementById('stats').textContent =
      `frame ${{s.frame}}  latency ${{(s.latency_ms ?? 0).toFixed(1)}} ms  ` +
      `fps ${{(s.fps ?? 0).toFixed(1)}}  energy ${{(s.energy_uj ?? 0).toFixed(1)}} uJ/frame` +
      `  viewers ${{s.viewers}}\\n` + `backend ${{s.backend}}  source ${{s.source}}`;
  }} catch (e) {{}}
  setTimeout(poll, 500);
}}
poll();
</script>
</body></html>
"""


class MjpegServer:
    """``publish(jpeg, stats)`` from the producer; viewers at ``http://host:port/``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080,
                 title: str = "edge demo seg") -> None:
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._stats: dict[str, Any] = {}
        self._stopping = False
        self._viewers = 0
        self.frames_sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8",
                               PAGE.format(title=title).encode())
                elif path == "/stats.json":
                    self._send(200, "application/json", json.dumps(server.stats()).encode())
                elif path == "/frame.jpg":
                    jpeg = server.wait_frame(0, timeout=5.0)[1]
                    if jpeg is None:
                        self._send(503, "text/plain", b"no frame yet\n")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif path == "/stream.mjpg":
                    server._stream(self)
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, int(port)), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg-server",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> MjpegServer:
        self._thread.start()
        return self

    def publish(self, jpeg: bytes, stats: dict[str, Any] | None = None) -> None:
        with self._cond:
            self._jpeg = jpeg
            self._seq += 1
            if stats is not None:
                self._stats = dict(stats)
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {**self._stats, "viewers": self._viewers, "frames_sent": self.frames_sent}

    @property
    def viewers(self) -> int:
        with self._cond:
            return self._viewers

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """The first frame with sequence number > ``after`` (or the latest, if none comes
        within ``timeout``); ``(seq, None)`` when stopping or nothing was published."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq <= after and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stopping:
                return self._seq, None
            return self._seq, self._jpeg

    def _stream(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        h.send_header("Cache-Control", "no-store")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        with self._cond:
            self._viewers += 1
        seq = 0
        try:
            while True:
                seq, jpeg = self.wait_frame(seq, timeout=1.0)
                if jpeg is None:
                    if self._stopping:
                        break
                    continue
                h.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                              f"Content-Length: {len(jpeg)}\r\n\r\n".encode())
                h.wfile.write(jpeg)
                h.wfile.write(b"\r\n")
                h.wfile.flush()
                with self._cond:
                    self.frames_sent += 1
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError,
                OSError):
            pass  # this viewer left; the others go on
        finally:
            with self._cond:
                self._viewers -= 1

    def stop(self, timeout: float = 5.0) -> None:
        """Wake every viewer, stop serving, close the socket."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join(timeout)
        self.httpd.server_close()

    def __enter__(self) -> MjpegServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
