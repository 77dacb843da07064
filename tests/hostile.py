"""A deliberately hostile HTTP server: each path breaks the protocol its own way.

It runs in a thread of the test process, on 127.0.0.1 and a free port, reads
the request head, and answers by the request path (see L{SCENARIOS}). Every
endless answer stops when the client goes away or after C{LIMIT_SECONDS}, so
no test can hang on it.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LIMIT_SECONDS = 30.0


def _endless(conn: socket.socket, first: bytes, piece: bytes) -> None:
    conn.sendall(first)
    deadline = time.monotonic() + LIMIT_SECONDS
    while time.monotonic() < deadline:
        conn.sendall(piece)


def _send(data: bytes) -> Callable[[socket.socket], None]:
    return lambda conn: conn.sendall(data)


def _reset_mid_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    time.sleep(0.2)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _never_answers(conn: socket.socket) -> None:
    conn.settimeout(LIMIT_SECONDS)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass


def _stall_mid_body(conn: socket.socket) -> None:
    """Begin a body of 100 bytes, send 10, then say nothing more."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    _never_answers(conn)


def _banner_and_wait(conn: socket.socket) -> None:
    """Speak first, as SSH and SMTP servers do, then wait for the client."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    _never_answers(conn)


SCENARIOS: dict[str, Callable[[socket.socket], None]] = {
    "/bare-lf": _send(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"),
    "/oversized-header": _send(
        b"HTTP/1.1 200 OK\r\nX-Big: "
        + b"a" * 200_000
        + b"\r\nContent-Length: 0\r\n\r\n"
    ),
    "/endless-header": lambda c: _endless(
        c, b"HTTP/1.1 200 OK\r\n", b"X-More: " + b"m" * 1000 + b"\r\n"
    ),
    "/infinite-chunked": lambda c: _endless(
        c,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"10000\r\n" + b"c" * 0x10000 + b"\r\n",
    ),
    "/short-body": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
    "/long-body": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"),
    "/cut-chunked": _send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    ),
    "/premature-close": _send(b"HTTP/1.1 200 OK\r\nContent-Le"),
    "/empty": _send(b""),
    "/never-answers": _never_answers,
    "/body-on-204": _send(b"HTTP/1.1 204 No Content\r\n\r\nBODY"),
    "/conflicting-length": _send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "/duplicate-length": _send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "/te-and-cl": _send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "/garbage-status": _send(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
    "/banner-and-wait": _banner_and_wait,
    "/reset-mid-body": _reset_mid_body,
    "/stall-mid-body": _stall_mid_body,
    "/continue-then-ok": _send(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    ),
    "/loop": _send(
        b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n"
    ),
    # raw UTF-8 in a Location, as some servers write it (RFC 9110 asks for ASCII)
    "/to-utf-8": _send(
        b"HTTP/1.1 302 Found\r\nLocation: /caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n"
    ),
    "/caf%C3%A9": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    "/caf%c3%a9": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),  # curl
    "/to-broken-ipv6": _send(
        b"HTTP/1.1 302 Found\r\nLocation: http://[::1/x\r\nContent-Length: 0\r\n\r\n"
    ),
}


class HostileServer:
    """A listening socket whose connections are answered by L{SCENARIOS}."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.paths: list[str] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        """The URL of a scenario."""
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                path = head.split(b" ", 2)[1].decode("latin-1")
                self.paths.append(path)
                SCENARIOS[path](conn)
            except (OSError, KeyError, IndexError):
                return

    def stop(self) -> None:
        """Stop listening (answers in progress end at their own limit)."""
        self._stopped = True
        self.sock.close()


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    """A L{HostileServer} for the duration of a C{with} block."""
    server = HostileServer()
    try:
        yield server
    finally:
        server.stop()
