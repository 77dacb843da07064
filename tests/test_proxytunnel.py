"""Unit tests of echod.proxytunnel: proxy URLs, the requests, the answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import REFUSED, TIMEOUT, UNREACHABLE, USAGE, ClientError
from echod.proxytunnel import (
    Proxy,
    TunnelEndpoint,
    TunnelProtocol,
    TunnelWatch,
    connect_request,
    parse_proxy,
    socks4_request,
    socks_request,
    socks_sent_shown,
    tunnel_address,
    with_proxy_tls,
)


@pytest.mark.parametrize(
    ("text", "proxy"),
    [
        ("proxy.test:8080", Proxy("http", "proxy.test", 8080)),
        ("proxy.test", Proxy("http", "proxy.test", 3128)),
        ("http://[::1]:3129", Proxy("http", "::1", 3129)),
        ("HTTP://p.test", Proxy("http", "p.test", 3128)),
        ("http://us%40er:p%3Aw@p.test/", Proxy("http", "p.test", 3128, "us@er", "p:w")),
        ("http://user@p.test", Proxy("http", "p.test", 3128, "user", None)),
        ("socks5://p.test", Proxy("socks5", "p.test", 1080)),
        ("socks5h://10.0.0.1:9050", Proxy("socks5h", "10.0.0.1", 9050)),
        ("socks5://u%3A:p%40@p.test", Proxy("socks5", "p.test", 1080, "u:", "p@")),
        ("socks5h://u@p.test", Proxy("socks5h", "p.test", 1080, "u", None)),
        ("socks5://u:@p.test", Proxy("socks5", "p.test", 1080, "u", "")),
        ("socks4://p.test", Proxy("socks4", "p.test", 1080)),
        ("https://u:p@p.test", Proxy("https", "p.test", 443, "u", "p")),
        ("socks4://me@p.test:1081", Proxy("socks4", "p.test", 1081, "me")),
    ],
)
def test_proxy_urls(text: str, proxy: Proxy) -> None:
    assert parse_proxy(text) == proxy


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ftp://p.test", "echod speaks http://, https://, socks5://, socks5h:// and"),
        ("socks4a://p.test", "echod speaks http://"),
        ("socks4://u:p@p.test", "SOCKS4 takes a user ID, and no password"),
        ("http://", "no host"),
        ("http://p.test:99999", "Port out of range"),
        ("http://p.test/path", "a proxy URL has no path"),
        ("socks5://:p@p.test", "a SOCKS5 user name has 1 to 255 bytes"),
        (f"socks5://{'u' * 256}:p@p.test", "a SOCKS5 user name has 1 to 255 bytes"),
        (f"socks5://u:{'p' * 256}@p.test", "a SOCKS5 password has at most 255 bytes"),
    ],
)
def test_bad_proxy_urls(text: str, says: str) -> None:
    with pytest.raises(ClientError, match=says) as e:
        parse_proxy(text)
    assert e.value.code == USAGE


def test_the_label_never_shows_the_password() -> None:
    assert parse_proxy("http://u:secret@[::1]:1").label() == "http://[::1]:1"


def test_connect_request() -> None:
    assert connect_request(Proxy("http", "p", 1), "::1", 7) == (
        b"CONNECT [::1]:7 HTTP/1.1\r\nHost: [::1]:7\r\n\r\n"
    )
    with_credentials = Proxy("http", "p", 1, "Aladdin", "open sesame")
    assert connect_request(with_credentials, "h.test", 443) == (
        b"CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n"
        b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
    )


def test_socks_requests() -> None:
    assert socks_request("192.0.2.1", 7) == b"\x05\x01\x00\x01\xc0\x00\x02\x01\x00\x07"
    assert socks_request("::1", 443) == (
        b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x01\xbb"
    )
    assert socks_request("h.test", 80) == b"\x05\x01\x00\x03\x06h.test\x00\x50"
    with pytest.raises(ClientError, match="names of 255 bytes at most"):
        socks_request("a." * 128 + "test", 80)


class Recorder(Protocol):
    """The target's protocol: what reached it."""

    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def tunnel(
    scheme: str,
    user: str | None = None,
    password: str | None = None,
    host: str = "h.test",
) -> tuple[TunnelProtocol, StringTransport, list[object]]:
    """A tunnel to C{host} on a string transport; its outcome collected."""
    protocol = TunnelProtocol(
        Proxy(scheme, "p", 1, user, password),
        host,
        7,
        Factory.forProtocol(Recorder),
    )
    transport = StringTransport()
    outcome: list[object] = []
    protocol.ready.addBoth(outcome.append)
    protocol.makeConnection(transport)
    return protocol, transport, outcome


def test_http_tunnel_hands_over_the_bytes_after_the_answer() -> None:
    protocol, transport, outcome = tunnel("http")
    assert transport.value() == b"CONNECT h.test:7 HTTP/1.1\r\nHost: h.test:7\r\n\r\n"
    for piece in (
        b"HTTP/1.1 200 Conn",
        b"ection established\r\nVia: x\r\n\r",
        b"\necho",
    ):
        protocol.dataReceived(piece)
    (above,) = outcome
    assert isinstance(above, Recorder) and above.transport is transport
    protocol.dataReceived(b" and more")
    assert above.received == b"echo and more"


def failure_of(outcome: list[object]) -> ClientError:
    """The L{ClientError} a tunnel failed with."""
    (failed,) = outcome
    assert isinstance(failed, Failure)
    assert isinstance(failed.value, ClientError)
    return failed.value


@pytest.mark.parametrize(
    ("answer", "code", "says"),
    [
        (
            b"HTTP/1.1 403 Forbidden\r\n\r\n",
            REFUSED,
            "refused the tunnel: 403 Forbidden",
        ),
        (b"HTTP/1.0 407 Auth\r\n\r\n", REFUSED, "the proxy wants credentials: 407"),
        (
            b"HTTP/1.1 502 Bad Gateway\r\n\r\n",
            UNREACHABLE,
            "could not reach the target",
        ),
        (b"HTTP/1.1 504 Gateway Timeout\r\n\r\n", TIMEOUT, "timed out reaching"),
        (b"SSH-2.0-OpenSSH", REFUSED, "not an HTTP proxy: it answered 'SSH-2.0"),
        (b"HTTP/1.1 " + b"x" * 20000, REFUSED, "the proxy's answer has no end"),
    ],
)
def test_http_refusals(answer: bytes, code: int, says: str) -> None:
    protocol, transport, outcome = tunnel("http")
    protocol.dataReceived(answer)
    error = failure_of(outcome)
    assert error.code == code and says in str(error)
    assert transport.disconnecting or transport.disconnected


def test_socks5_tunnel() -> None:
    protocol, transport, outcome = tunnel("socks5h")
    assert transport.value() == b"\x05\x01\x00"  # version 5, one method: none
    transport.clear()
    protocol.dataReceived(b"\x05\x00")
    assert transport.value() == b"\x05\x01\x00\x03\x06h.test\x00\x07"
    reply = b"\x05\x00\x00\x03\x04bind\x12\x34"  # bound to a name, then data
    protocol.dataReceived(reply[:6])
    assert outcome == []
    protocol.dataReceived(reply[6:] + b"echo")
    (above,) = outcome
    assert isinstance(above, Recorder) and above.received == b"echo"


def test_socks4_requests() -> None:
    """Version 4, CONNECT, the port, the IPv4 address, the user ID, a NUL."""
    proxy = Proxy("socks4", "p", 1, "me")
    assert socks4_request(proxy, "10.1.2.3", 80) == b"\x04\x01\x00P\n\x01\x02\x03me\x00"
    bare = socks4_request(Proxy("socks4", "p", 1), "127.0.0.1", 7)
    assert bare == b"\x04\x01\x00\x07\x7f\x00\x00\x01\x00"
    for host in ("::1", "h.test"):
        with pytest.raises(ClientError, match="a SOCKS4 proxy takes IPv4 addresses"):
            socks4_request(proxy, host, 7)
    with pytest.raises(ClientError, match=r"not ::1 \(socks5:// does"):
        socks4_request(proxy, "::1", 7)


def test_which_address_the_tunnel_asks_for() -> None:
    """The first address; SOCKS4's first IPv4 one, and none is a clear error."""
    found = ["::1", "127.0.0.1", "127.0.0.2"]
    assert tunnel_address(Proxy("socks5", "p", 1), "h", found) == "::1"
    assert tunnel_address(Proxy("socks4", "p", 1), "h", found) == "127.0.0.1"
    with pytest.raises(ClientError, match=r"'h' has only ::1, ::2 \(socks5:// takes"):
        tunnel_address(Proxy("socks4", "p", 1), "h", ["::1", "::2"])


def test_socks4_tunnel() -> None:
    protocol, transport, outcome = tunnel("socks4", host="127.0.0.1")
    assert transport.value() == b"\x04\x01\x00\x07\x7f\x00\x00\x01\x00"
    protocol.dataReceived(b"\x00\x5a\x00\x00")
    assert outcome == []  # not before the whole reply
    protocol.dataReceived(b"\x00\x00\x00\x00echo")
    (above,) = outcome
    assert isinstance(above, Recorder) and above.received == b"echo"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"\x00\x5b" + b"\x00" * 6, "refused the tunnel: request rejected or failed"),
        (b"\x00\x5c" + b"\x00" * 6, "could not reach the client's identd"),
        (b"\x00\x5d" + b"\x00" * 6, "identd gave another user ID"),
        (b"\x00\x01" + b"\x00" * 6, "refused the tunnel: reply 1"),
        (b"\x05\x00", "not a SOCKS4 proxy: it answered"),
        (b"HTTP/1.1 400", "not a SOCKS4 proxy: it answered"),
    ],
)
def test_socks4_refusals(answer: bytes, says: str) -> None:
    protocol, _, outcome = tunnel("socks4", host="127.0.0.1")
    protocol.dataReceived(answer)
    error = failure_of(outcome)
    assert error.code == REFUSED and says in str(error), str(error)


def test_a_socks4_tunnel_to_a_name_fails_at_once() -> None:
    """The request needs an address; the endpoint looks names up first, so
    reaching here with a name is refused, not sent."""
    _, transport, outcome = tunnel("socks4")
    assert transport.value() == b""
    assert "takes IPv4 addresses, not 'h.test'" in str(failure_of(outcome))


def test_socks5_tunnel_with_a_user_name_and_password() -> None:
    """RFC 1929: both methods offered, as curl; the proxy picks the user
    name and password, says yes to them, then the request goes."""
    protocol, transport, outcome = tunnel("socks5h", "al", "pw")
    assert transport.value() == b"\x05\x02\x00\x02"
    transport.clear()
    protocol.dataReceived(b"\x05\x02")
    assert transport.value() == b"\x01\x02al\x02pw"
    transport.clear()
    protocol.dataReceived(b"\x01")
    assert transport.value() == b""  # not before the whole answer
    protocol.dataReceived(b"\x00")
    assert transport.value() == b"\x05\x01\x00\x03\x06h.test\x00\x07"
    protocol.dataReceived(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x07echo")
    (above,) = outcome
    assert isinstance(above, Recorder) and above.received == b"echo"


def test_socks5_credentials_offered_and_not_asked_for() -> None:
    """A proxy that picks no authentication gets no password."""
    protocol, transport, outcome = tunnel("socks5h", "al", "pw")
    transport.clear()
    protocol.dataReceived(b"\x05\x00")
    assert transport.value() == b"\x05\x01\x00\x03\x06h.test\x00\x07"
    protocol.dataReceived(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x07")
    assert [type(o) for o in outcome] == [Recorder]


@pytest.mark.parametrize(
    ("user", "answers", "says"),
    [
        (None, [b"\x05\xff"],
         "the SOCKS5 proxy wants authentication (--proxy socks5://USER:PASSWORD@"),
        ("al", [b"\x05\xff"],
         "takes neither no authentication nor a user name and password"),
        (None, [b"\x05\x02"], "chose a method echod did not offer (2)"),
        ("al", [b"\x05\x01"], "chose a method echod did not offer (1)"),
        ("al", [b"\x05\x02", b"\x01\x02"],
         "refused the user name and password (status 2)"),
    ],
)  # fmt: skip
def test_socks5_authentication_refusals(
    user: str | None, answers: list[bytes], says: str
) -> None:
    """Each way a SOCKS5 proxy can refuse what echod offers: exit 4, its words."""
    protocol, _, outcome = tunnel("socks5", user, "pw")
    for answer in answers:
        protocol.dataReceived(answer)
    error = failure_of(outcome)
    assert error.code == REFUSED and says in str(error), str(error)


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        (b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x07",
         "05 01 00 05 01 00 01 7f 00 00 01 00 07"),
        (b"\x05\x02\x00\x02\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x07",
         "05 02 00 02 05 01 00 01 7f 00 00 01 00 07"),
        (b"\x05\x02\x00\x02\x01\x02al\x03pw!\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x07",
         "05 02 00 02 01 02 61 6c 03 xx xx xx 05 01 00 01 7f 00 00 01 00 07"),
        (b"\x05\x02\x00\x02\x01\x02al\x00\x05\x01", "05 02 00 02 01 02 61 6c 00 05 01"),
        (b"", ""),
    ],
)  # fmt: skip
def test_what_minus_v_shows_of_a_socks5_password(asked: bytes, shown: str) -> None:
    """Every byte sent, in hex, but a password's: each of those is xx."""
    assert socks_sent_shown(asked) == shown


@pytest.mark.parametrize(
    ("answers", "code", "says"),
    [
        ([b"HTTP/1.1 400"], REFUSED, "not a SOCKS5 proxy"),
        (
            [b"\x05\x00", b"\x05\x05\x00\x01" + b"\x00" * 6],
            REFUSED,
            "connection refused",
        ),
        (
            [b"\x05\x00", b"\x05\x04\x00\x01" + b"\x00" * 6],
            UNREACHABLE,
            "host unreachable",
        ),
        ([b"\x05\x00", b"\x05\x06\x00\x01" + b"\x00" * 6], TIMEOUT, "TTL expired"),
        ([b"\x05\x00", b"\x05\x00\x00\x09"], REFUSED, "not a SOCKS5 proxy"),
        ([b"\x05\x00", b"HTTP/1.1 400 B"], REFUSED, "not a SOCKS5 proxy"),
    ],
)
def test_socks5_refusals(answers: list[bytes], code: int, says: str) -> None:
    protocol, _, outcome = tunnel("socks5")
    for answer in answers:
        protocol.dataReceived(answer)
    error = failure_of(outcome)
    assert error.code == code and says in str(error)


def test_a_proxy_that_closes_before_the_tunnel_is_up() -> None:
    protocol, _, outcome = tunnel("http")
    protocol.connectionLost(Failure(ConnectionError()))
    assert "closed before the tunnel was up" in str(failure_of(outcome))


@implementer(IStreamClientEndpoint)
class ProxyThatSaysNothing:
    """An endpoint to a proxy that takes the connection and never answers."""

    def __init__(self) -> None:
        self.transport = StringTransport()

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        protocol = protocolFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert protocol is not None
        protocol.makeConnection(self.transport)
        return defer.succeed(protocol)


def test_a_proxy_that_never_answers_times_out() -> None:
    clock = Clock()
    silent = ProxyThatSaysNothing()
    endpoint = TunnelEndpoint(clock, silent, Proxy("http", "p", 1), "h.test", 7, 5.0)
    outcome: list[object] = []
    endpoint.connect(Factory.forProtocol(Recorder)).addBoth(outcome.append)
    clock.advance(4.9)
    assert outcome == []
    clock.advance(0.2)
    error = failure_of(outcome)
    assert error.code == TIMEOUT
    assert str(error) == "the proxy http://p:1 opened no tunnel in 5 s"
    assert silent.transport.disconnecting or silent.transport.disconnected


class Watch(TunnelWatch):
    """What a tunnel said it took to open."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []

    def tunnel_opened(self, proxy: Proxy, asked: bytes, answered: bytes) -> None:
        self.seen.append((asked, answered))


@pytest.mark.parametrize(
    ("scheme", "answers", "asked"),
    [
        ("http", [b"HTTP/1.1 200 OK\r\n\r\nrest"],
         b"CONNECT h.test:7 HTTP/1.1\r\nHost: h.test:7\r\n\r\n"),
        ("socks5h", [b"\x05\x00", b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x07rest"],
         b"\x05\x01\x00\x05\x01\x00\x03\x06h.test\x00\x07"),
        ("socks5h", [b"\x05\x02", b"\x01\x00",
                     b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x07rest"],
         b"\x05\x02\x00\x02\x01\x01u\x01p\x05\x01\x00\x03\x06h.test\x00\x07"),
    ],
)  # fmt: skip
def test_the_watch_sees_what_opened_the_tunnel(
    scheme: str, answers: list[bytes], asked: bytes
) -> None:
    """Every byte asked and answered, and nothing of the target's after it."""
    watch = Watch()
    protocol = TunnelProtocol(
        Proxy(scheme, "p", 1, *(("u", "p") if b"\x01\x00" in answers else ())),
        "h.test",
        7,
        Factory.forProtocol(Recorder),
        watch,
    )
    protocol.makeConnection(StringTransport())
    for answer in answers:
        protocol.dataReceived(answer)
    assert watch.seen == [(asked, b"".join(answers).removesuffix(b"rest"))]


def test_an_https_proxy_is_verified_as_its_options_say() -> None:
    """--proxy-cacert and --proxy-insecure go to the proxy's own TLS settings,
    which name it in the --proxy-insecure warning; without an https:// proxy
    they are refused."""
    proxy = parse_proxy("https://p.test")
    assert with_proxy_tls(proxy, None, False) == proxy
    verified = with_proxy_tls(proxy, Path("ca.pem"), False)
    assert verified is not None and verified.tls.cacert == Path("ca.pem")
    unverified = with_proxy_tls(proxy, None, True)
    assert unverified is not None and unverified.tls.insecure
    assert unverified.tls.insecure_option == "--proxy-insecure"
    for other in (parse_proxy("http://p.test"), None):
        with pytest.raises(ClientError, match="--proxy-cacert and --proxy-insecure"):
            with_proxy_tls(other, Path("ca.pem"), True)
