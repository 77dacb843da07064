"""Real socket peers for end-to-end tests: many concurrent echo clients, etc."""

from __future__ import annotations

import contextlib
import hashlib
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EchoResult:
    """What one connection sent and got back."""

    sent: int = 0
    received: int = 0
    sent_hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    received_hash: hashlib._Hash = field(default_factory=hashlib.sha256)
    eof: bool = False
    error: str | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on C{host} right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free on C{host} right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def connect_when_up(
    port: int, process: Any = None, timeout: float = 30.0, host: str = "127.0.0.1"
) -> socket.socket:
    """Connect once something listens on C{port}; fail if C{process} ends first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(host, port)
        except ConnectionRefusedError:
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"the process ended ({process.returncode})"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port}") from None
            time.sleep(0.1)


def connect(
    host: str, port: int, source: str | None = None, timeout: float = 5.0
) -> socket.socket:
    """A connected TCP socket, optionally from a chosen source address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def echo_many(
    host: str,
    port: int,
    connections: int,
    bytes_each: int,
    seed: int = 862,
    max_write: int = 65536,
    timeout: float = 120.0,
) -> list[EchoResult]:
    """Stream random bytes over many connections at once, in random-sized writes.

    Each connection sends C{bytes_each} bytes, half-closes, and reads until
    EOF; everything is hashed on both sides. Bounded by C{timeout} seconds.
    """
    rng = random.Random(seed)
    selector = selectors.DefaultSelector()
    results: list[EchoResult] = []
    payloads: list[bytes] = []
    offsets: list[int] = []
    socks: list[socket.socket] = []
    for i in range(connections):
        sock = connect(host, port)
        sock.setblocking(False)
        payload = rng.randbytes(bytes_each)
        payloads.append(payload)
        offsets.append(0)
        results.append(EchoResult())
        socks.append(sock)
        selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    open_count = connections
    deadline = time.monotonic() + timeout
    try:
        while open_count and time.monotonic() < deadline:
            for key, events in selector.select(timeout=1.0):
                i = key.data
                sock, result = socks[i], results[i]
                if events & selectors.EVENT_WRITE:
                    size = rng.randint(1, max_write)
                    chunk = payloads[i][offsets[i] : offsets[i] + size]
                    try:
                        n = sock.send(chunk)
                    except BlockingIOError:
                        n = 0
                    result.sent_hash.update(chunk[:n])
                    result.sent += n
                    offsets[i] += n
                    if offsets[i] >= len(payloads[i]):
                        sock.shutdown(socket.SHUT_WR)
                        selector.modify(sock, selectors.EVENT_READ, i)
                if events & selectors.EVENT_READ:
                    try:
                        data = sock.recv(262144)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        result.error = str(e)
                        data = b""
                    if data:
                        result.received += len(data)
                        result.received_hash.update(data)
                    else:
                        result.eof = result.error is None
                        selector.unregister(sock)
                        sock.close()
                        open_count -= 1
    finally:
        for sock in socks:
            if sock.fileno() != -1:
                sock.close()
        selector.close()
    return results


def drain(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read from a blocking socket until EOF (or fail after C{timeout})."""
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def closed_by_peer(
    sock: socket.socket, timeout: float = 5.0, allow_bytes: int = 0
) -> bool:
    """True if the peer closes C{sock} (EOF or reset) within C{timeout}.

    With C{allow_bytes}, up to that many bytes may come first (a TLS alert
    before the close); without, any byte means "not closed".
    """
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    seen = 0
    try:
        while True:
            data = sock.recv(max(1, allow_bytes - seen + 1))
            if not data:
                return True
            seen += len(data)
            if seen > allow_bytes:
                return False
            sock.settimeout(max(0.001, deadline - time.monotonic()))
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def round_trip(sock: socket.socket, message: bytes, timeout: float = 5.0) -> bytes:
    """Send C{message} and read exactly as many bytes back."""
    sock.settimeout(timeout)
    sock.sendall(message)
    got = b""
    while len(got) < len(message):
        data = sock.recv(len(message) - len(got))
        if not data:
            break
        got += data
    return got


class PatternStream:
    """A reproducible byte stream: the byte at offset i is BLOCK[i % len]."""

    BLOCK = random.Random(7).randbytes(1_000_003)  # a prime length

    def at(self, offset: int, size: int) -> bytes:
        """C{size} bytes of the stream from C{offset}."""
        block, n = self.BLOCK, len(self.BLOCK)
        start = offset % n
        out = block[start : start + size]
        while len(out) < size:
            out += block[: size - len(out)]
        return out


def stream_until_eof(
    port: int, started: threading.Event, result: dict[str, object], limit: float = 60.0
) -> None:
    """Stream the pattern at a client's pace and check every echoed byte."""
    stream = PatternStream()
    sock = connect("127.0.0.1", port)
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent = received = 0
    ok = True
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            events = selector.select(1.0)
            for _, mask in events:
                if mask & selectors.EVENT_WRITE:
                    with contextlib.suppress(BlockingIOError, BrokenPipeError):
                        sent += sock.send(stream.at(sent, 65536))
                    if sent > 4 << 20:
                        started.set()
                if mask & selectors.EVENT_READ:
                    data = sock.recv(262144)
                    if not data:
                        result.update(sent=sent, received=received, ok=ok, eof=True)
                        return
                    ok = ok and data == stream.at(received, len(data))
                    received += len(data)
            time.sleep(0.002)  # a client's pace, not a flood
        result.update(sent=sent, received=received, ok=ok, eof=False)
    except OSError as e:
        result.update(sent=sent, received=received, ok=ok, eof=False, error=str(e))
    finally:
        selector.close()
        sock.close()


def echoed_from(source: str, host: str, port: int) -> bool:
    """Whether the echo server at C{host}:C{port} echoes a connection from the
    local address C{source} (False: it closed the connection instead)."""
    message = f"from {source}".encode()
    with connect(host, port, source=source) as sock:
        if round_trip(sock, message) == message:
            return True
        assert closed_by_peer(sock), "neither an echo nor a close"
        return False
