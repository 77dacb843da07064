"""Real HTTP servers for ``echod fetch``'s end-to-end tests, run as subprocesses.

``python -m tests.httpapps KIND DIRECTORY`` binds 127.0.0.1 on a free port,
prints ``listening PORT`` and serves until killed:

- ``stdlib``: Python's http.server, HTTP/1.0; files from DIRECTORY with a
  Content-Length, and ``/close-delimited/NAME`` the same file without one
  (the body ends when the server closes); ``/unavailable/N/KEY[?after=S]``
  answers 503 with ``Retry-After: S`` (1) to its first N requests (counted per path:
  KEY tells one client's tries from another's), then 200 with
  DIRECTORY/index.html;
- ``twisted``: twisted.web; files from DIRECTORY under ``/static/``, and
  ``/chunked?size=N`` N bytes of a fixed pattern written in 10,000-byte
  pieces with no length, so twisted.web sends them chunked.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def pattern(size: int) -> bytes:
    """The bytes C{/chunked?size=N} serves."""
    block = bytes(range(256)) * 40
    return (block * (size // len(block) + 1))[:size]


class CloseDelimitedHandler(SimpleHTTPRequestHandler):
    """http.server's file handler, plus bodies framed only by the close."""

    protocol_version = "HTTP/1.0"

    tries: Counter[str] = Counter()
    tries_lock = threading.Lock()

    def do_GET(self) -> None:
        """Serve /close-delimited/NAME without a Content-Length, and
        /unavailable/N/KEY unavailable N times."""
        if self.path.startswith("/unavailable/"):
            self.unavailable()
            return
        prefix = "/close-delimited/"
        if not self.path.startswith(prefix):
            super().do_GET()
            return
        path = Path(self.directory) / self.path[len(prefix) :]
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(data)

    def unavailable(self) -> None:
        """503 with Retry-After (1, or after=S) to the first N requests for
        this path."""
        with self.tries_lock:
            self.tries[self.path] += 1
            tried = self.tries[self.path]
        path, _, query = self.path.partition("?")
        times = int(path.split("/")[2])
        if tried <= times:
            body = f"unavailable, try {tried}\n".encode()
            self.send_response(503)
            self.send_header("Retry-After", query.removeprefix("after=") or "1")
        else:
            body = (Path(self.directory) / "index.html").read_bytes()
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def serve_stdlib(directory: str) -> None:
    """Run http.server on a free port."""
    handler = partial(CloseDelimitedHandler, directory=directory)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


def serve_twisted(directory: str) -> None:
    """Run twisted.web on a free port."""
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site
    from twisted.web.static import File

    class Chunked(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            size = int(request.args.get(b"size", [b"100000"])[0])
            data = pattern(size)
            for start in range(0, len(data), 10_000):
                request.write(data[start : start + 10_000])
            request.finish()
            return NOT_DONE_YET  # type: ignore[return-value]

    root = Resource()
    root.putChild(b"static", File(directory))
    root.putChild(b"chunked", Chunked())
    site: Any = Site(root)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(f"listening {port.getHost().port}", flush=True)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    kind, directory = sys.argv[1], sys.argv[2]
    {"stdlib": serve_stdlib, "twisted": serve_twisted}[kind](directory)
