"""Unit tests of echod.fetch: the fetch protocol fed bytes by hand and by hypothesis.

The end-to-end tests (tests/test_fetch_e2e.py) run the real command against
real servers; these pin the framing and error logic, including a
property-based run over arbitrary response bytes cut at arbitrary places.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from echod.clienterrors import RESET, TIMEOUT
from echod.fetch import (
    INTERNAL,
    MALFORMED,
    TOO_LARGE,
    TRUNCATED,
    FetchError,
    FetchOptions,
    ResponseHead,
    connection_target,
    fetch,
    redirected,
)
from echod.fetchrequest import Request, parse_url
from tests.fetchfuzz import KNOWN, URL, Exchange, cut, response_like


def test_request_bytes_are_written() -> None:
    ex = Exchange()
    assert ex.transport.value() == (
        b"GET /path?q=1 HTTP/1.1\r\nHost: example.test:8080\r\n"
        b"User-Agent: echod/0.1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )


def test_content_length_body_and_raw_head() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    ex = Exchange().feed(head[:7], head[7:] + b"he", b"llo")
    assert ex.heads()[0].raw == head
    assert ex.collector.body() == b"hello"
    assert ex.transport.disconnecting  # closed once the message was complete


def test_chunked_decoded_and_raw() -> None:
    body = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    decoded = Exchange().feed(head + body)
    assert decoded.collector.body() == b"abcde"
    raw = Exchange(raw_body=True)
    for i in range(len(head + body)):
        raw.feed((head + body)[i : i + 1])
    assert raw.collector.body() == body
    assert raw.heads()[0].raw == head


def test_close_delimited_body_ends_at_a_clean_close_only() -> None:
    ok = Exchange().feed(b"HTTP/1.0 200 OK\r\n\r\nsome", b" body").close()
    assert ok.collector.body() == b"some body"
    reset = Exchange().feed(b"HTTP/1.0 200 OK\r\n\r\nsome").close(error.ConnectionLost)
    assert reset.error().code == RESET
    assert "after 4 body bytes" in str(reset.error())


def test_head_response_has_no_body_and_extra_bytes_are_warned() -> None:
    ex = Exchange("HEAD").feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nEXTRA")
    assert ex.heads()[0].status == 200
    assert ex.collector.body() == b""
    assert ex.collector.warnings == [
        "a body in a response to HEAD: 5 extra byte(s) ignored"
    ]
    assert ex.protocol.warnings == ex.collector.warnings


def test_informational_heads_are_kept_in_order() -> None:
    ex = Exchange().feed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    )
    assert [h.status for h in ex.heads()] == [103, 200]
    assert ex.heads()[0].raw == b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"


@pytest.mark.parametrize(
    ("pieces", "code", "says"),
    [
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], TRUNCATED, "3 of 10"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab"],
         TRUNCATED, "chunked body was cut short"),
        ([], TRUNCATED, "without answering"),
        ([b"HTTP/1.1 20"], TRUNCATED, "middle of the response header"),
        ([b"NOT HTTP\r\n\r\n"], MALFORMED, "not an HTTP response: it begins 'NOT"),
        ([b"H", b"TT", b"P/1.1 20"], TRUNCATED, "middle of the response header"),
        ([b"HTTP/1.1 100 Continue\r\n\r\n", b"220 smtp.example ESMTP\r\n"], MALFORMED,
         "not an HTTP response: it begins '220 smtp.example ESMTP'"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"], MALFORMED, "chunked"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
         MALFORMED, "malformed response body"),
    ],
)  # fmt: skip
def test_errors(pieces: list[bytes], code: int, says: str) -> None:
    ex = Exchange().feed(*pieces).close()
    assert ex.error().code == code
    assert says in str(ex.error())


def test_header_cap_counts_every_head() -> None:
    line = b"X: " + b"a" * 1000 + b"\r\n"
    informational = b"HTTP/1.1 100 Continue\r\n" + line * 20 + b"\r\n"
    ex = Exchange(max_header_size=65536).feed(informational * 4)
    assert ex.error().code == TOO_LARGE


def test_body_limit() -> None:
    ex = Exchange(max_body_size=10).feed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 11
    )
    assert ex.error().code == TOO_LARGE
    assert ex.transport.disconnecting


def test_read_timeout() -> None:
    ex = Exchange(read_timeout=5.0)
    ex.clock.advance(4)
    ex.feed(b"HTTP/1.1 200 OK\r\n")
    ex.clock.advance(4)
    assert not ex.outcome  # the byte reset the timer
    ex.clock.advance(1.5)
    assert ex.error().code == TIMEOUT
    assert str(ex.error()) == "no data from the server for 5 s"


def test_max_time_over_the_whole_fetch() -> None:
    clock = MemoryReactorClock()
    d = fetch(clock, Request(URL), FetchOptions(max_time=3.0))
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    clock.advance(3.1)
    assert isinstance(outcome[0], Failure)
    assert isinstance(outcome[0].value, FetchError)
    assert outcome[0].value.code == TIMEOUT
    assert str(outcome[0].value) == "timed out after 3 s (--max-time)"


def test_redirected_requests() -> None:
    post = Request(URL, "POST", (("Authorization", "x"), ("Content-Type", "a/b")), b"d")
    head = ResponseHead(b"", "1.1", 302, "Found", (("location", "/b"),))
    same_host = redirected(post, head, parse_url("http://example.test:8080/b"))
    assert (same_host.method, same_host.body) == ("GET", None)
    assert same_host.headers == (("Authorization", "x"),)
    head307 = ResponseHead(b"", "1.1", 307, "Temporary", (("location", "/b"),))
    other = redirected(post, head307, parse_url("http://other.test/b"))
    assert (other.method, other.body) == ("POST", b"d")
    assert other.headers == (("Content-Type", "a/b"),)


# Property-based: whatever the server sends, cut however the network cuts it,
# the protocol ends with a result or a FetchError of a documented code: no
# other exception, no hang, a buffer bounded by the header cap.

framed = st.builds(
    lambda body, pieces: (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        body,
        pieces,
    ),
    st.binary(max_size=2000),
    st.lists(st.integers(1, 300), min_size=1, max_size=50),
)


@given(framed)
@settings(max_examples=200, deadline=None)
def test_any_cut_gives_the_same_body(case: tuple[bytes, bytes, list[int]]) -> None:
    data, body, sizes = case
    ex = Exchange().feed(*cut(data, sizes))
    assert ex.collector.body() == body


def _chunked(parts: list[bytes]) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for part in parts:
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
)
@settings(max_examples=200, deadline=None)
def test_chunked_anycut(parts: list[bytes], sizes: list[int]) -> None:
    data = _chunked(parts)
    decoded = Exchange().feed(*cut(data, sizes))
    assert decoded.collector.body() == b"".join(parts)
    raw = Exchange(raw_body=True).feed(*cut(data, sizes))
    assert raw.collector.body() == data[data.index(b"\r\n\r\n") + 4 :]


@given(response_like, st.lists(st.integers(1, 200), min_size=1, max_size=10),
       st.booleans(), st.booleans())  # fmt: skip
@settings(max_examples=500, deadline=None)
def test_arbitrary_responses_end_cleanly(
    data: bytes, sizes: list[int], raw: bool, reset: bool
) -> None:
    ex = Exchange(raw_body=raw, max_header_size=2048)
    for piece in cut(data, sizes):
        ex.feed(piece)
        assert len(ex.protocol._buffer) <= 2048 + 200
    ex.close(error.ConnectionLost if reset else error.ConnectionDone)
    assert ex.outcome, "the exchange never ended"
    result = ex.outcome[0]
    if isinstance(result, Failure):
        assert isinstance(result.value, FetchError), result
        assert result.value.code in KNOWN, result.value
        assert result.value.code != INTERNAL
        assert "\n" not in str(result.value)


def test_connection_target_takes_the_first_connect_to_that_matches() -> None:
    rules = (
        ("other.test", None, "10.0.0.1", None),
        ("h.test", 8080, "10.0.0.2", None),
        ("", 443, "", 8443),
        ("", None, "10.0.0.3", 81),
    )
    options = FetchOptions(connect_to=rules)
    assert connection_target(parse_url("http://H.test:8080/"), options) == (
        "10.0.0.2",
        8080,
    )
    assert connection_target(parse_url("https://h.test/"), options) == ("h.test", 8443)
    assert connection_target(parse_url("http://h.test/"), options) == ("10.0.0.3", 81)
    assert connection_target(parse_url("http://h.test/"), FetchOptions()) == (
        "h.test",
        80,
    )
