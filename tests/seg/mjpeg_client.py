"""A minimal multipart/x-mixed-replace reader for the tests (what a browser's <img> does)."""

from __future__ import annotations

import http.client


class MjpegReader:
    def __init__(self, host: str, port: int, path: str = "/stream.mjpg", timeout: float = 10.0):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.conn.request("GET", path)
        self.resp = self.conn.getresponse()
        ctype = self.resp.getheader("Content-Type", "")
        assert self.resp.status == 200, self.resp.status
        assert ctype.startswith("multipart/x-mixed-replace"), ctype
        self.boundary = ctype.split("boundary=")[1].strip()

    def next_frame(self) -> bytes | None:
        """The next JPEG, or None when the stream ended."""
        fp = self.resp.fp
        line = fp.readline()
        while line in (b"\r\n", b"\n"):
            line = fp.readline()
        if not line:
            return None
        assert line.strip() == f"--{self.boundary}".encode(), line
        length = None
        while True:
            h = fp.readline()
            if not h:
                return None
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        assert length is not None
        data = fp.read(length)
        return data if len(data) == length else None

    def close(self) -> None:
        self.resp.close()  # the response's file holds the socket open otherwise
        self.conn.close()
