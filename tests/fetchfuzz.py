"""A FetchProtocol driven by hand, and arbitrary response bytes for hypothesis.

Shared by the fetch unit tests and the reliability suite's fuzz case.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from echod.clienterrors import RESET
from echod.fetch import (
    MALFORMED,
    TOO_LARGE,
    TRUNCATED,
    BodyCollector,
    FetchError,
    FetchOptions,
    FetchProtocol,
    ResponseHead,
    Timing,
)
from echod.fetchrequest import Request, parse_url

URL = parse_url("http://example.test:8080/path?q=1")


class Exchange:
    """A FetchProtocol on a StringTransport, and what it produced."""

    def __init__(self, method: str = "GET", **options: Any) -> None:
        self.clock = MemoryReactorClock()
        self.collector = BodyCollector()
        self.protocol = FetchProtocol(
            Request(URL, method),
            FetchOptions(**options),
            self.collector,
            Timing(),
            self.clock,
        )
        self.transport = StringTransport()
        self.outcome: list[Any] = []
        self.protocol.done.addBoth(self.outcome.append)
        self.protocol.makeConnection(self.transport)

    def feed(self, *pieces: bytes) -> Exchange:
        for piece in pieces:
            self.protocol.dataReceived(piece)
        return self

    def close(self, reason: Any = error.ConnectionDone) -> Exchange:
        if not self.outcome or not self.transport.disconnecting:
            self.protocol.connectionLost(Failure(reason()))
        return self

    def heads(self) -> list[ResponseHead]:
        assert self.outcome, "not finished"
        result = self.outcome[0]
        assert not isinstance(result, Failure), result
        heads: list[ResponseHead] = result[0]
        return heads

    def error(self) -> FetchError:
        assert self.outcome, "not finished"
        failure = self.outcome[0]
        assert isinstance(failure, Failure), failure
        value = failure.value
        assert isinstance(value, FetchError)
        return value


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """C{data} cut into pieces of the given sizes, repeated as needed."""
    pieces, offset, i = [], 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        pieces.append(data[offset : offset + size])
        offset += size
        i += 1
    return pieces


KNOWN = {MALFORMED, TRUNCATED, TOO_LARGE, RESET}
"""The exit codes a malformed or cut response may end with."""

response_like = st.one_of(
    st.binary(max_size=3000),
    st.builds(
        lambda status, headers, body: status + headers + b"\r\n" + body,
        st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 204 X\r\n",
                         b"HTTP/1.1 100 Continue\r\n", b"HTTP/1.1 304 N\r\n",
                         b"HTTP/2 200\r\n", b"HTTP/1.1 999 ?\r\n"]),
        st.lists(st.sampled_from([b"Content-Length: 3\r\n", b"Content-Length: x\r\n",
                                  b"Transfer-Encoding: chunked\r\n", b"X:\r\n",
                                  b" folded\r\n", b"\n", b"Bad Header\r\n",
                                  b"Content-Length: 99999999999\r\n"]),
                 max_size=6).map(b"".join),
        st.binary(max_size=500),
    ),
)  # fmt: skip
"""Bytes that look like an HTTP response (or are plain noise), for hypothesis."""
