"""``--proxy``: a connection through an HTTP (CONNECT) or SOCKS5 proxy.

What curl's C{-x}, ncat's C{--proxy} and OpenBSD nc's C{-x}/C{-X} do, for
``echod client``, ``echod bench`` and ``echod fetch -x``: echod connects to
the proxy, asks it for a tunnel to the target (an HTTP/1.1 C{CONNECT}, or a
SOCKS5 C{CONNECT} request, RFC 1928, with RFC 1929's user name and password
when the URL has them, or a SOCKS4 one), and once the proxy has said yes the
connection is the target's: the client's protocol (and TLS, end to end) runs
over it as over a direct one. A proxy that says no, or says anything else, fails the
connection with its own words.

URLs as curl takes them: C{http://[USER:PASSWORD@]HOST[:PORT]} (a bare
C{HOST:PORT} too), C{https://...} (the same, over TLS to the proxy, verified
against the proxy's name), C{socks5://[USER:PASSWORD@]HOST[:PORT]} (the target's
name looked up here) and C{socks5h://[USER:PASSWORD@]HOST[:PORT]} (looked up
by the proxy), C{socks4://[USER@]HOST[:PORT]} (an IPv4 address looked up
here; the user name is SOCKS4's user ID). Without a port, 3128 for HTTP, 443
for HTTPS (as curl) and 1080 for SOCKS, as ncat.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet import defer
from twisted.internet.interfaces import (
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.cli import options_apply
from echod.clienterrors import (
    REFUSED,
    TIMEOUT,
    UNREACHABLE,
    USAGE,
    ClientError,
    classify,
)
from echod.handover import HandOverProtocol
from echod.hostnames import host_port
from echod.resolve import addresses_of, ip_version
from echod.tls import negotiated
from echod.tlsclient import ClientTLS

DEFAULT_PORTS = {
    "http": 3128,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
}
"""The port of a proxy URL without one (ncat's)."""

MAX_ANSWER = 16 * 1024
"""The most bytes of a proxy's answer read before its end (an HTTP head)."""

SOCKS_REPLIES = {
    1: (REFUSED, "general SOCKS server failure"),
    2: (REFUSED, "connection not allowed by its rules"),
    3: (UNREACHABLE, "network unreachable"),
    4: (UNREACHABLE, "host unreachable"),
    5: (REFUSED, "connection refused by the target"),
    6: (TIMEOUT, "TTL expired"),
    7: (REFUSED, "command not supported"),
    8: (REFUSED, "address type not supported"),
}
"""RFC 1928's reply codes: the exit code and the words for each failure."""

SOCKS4_REPLIES = {
    91: "request rejected or failed",
    92: "it could not reach the client's identd",
    93: "the client's identd gave another user ID",
}
"""SOCKS4's refusals (its protocol text, "SOCKS: A protocol for TCP proxy
across firewalls"): the words for each; the exit code is always 4."""

NO_AUTHENTICATION = 0
USER_PASSWORD = 2
NO_ACCEPTABLE_METHOD = 0xFF
"""SOCKS5's method numbers (RFC 1928, section 3) that echod offers or hears."""


@dataclass(frozen=True)
class Proxy:
    """A proxy to tunnel through, from its URL."""

    scheme: str  # http, socks5 or socks5h
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    tls: ClientTLS = field(default_factory=ClientTLS)
    """How the connection to an C{https://} proxy is verified (C{--proxy-cacert},
    C{--proxy-insecure})."""

    def label(self) -> str:
        """How messages name it: C{scheme://host:port}, without credentials."""
        return f"{self.scheme}://{host_port(self.host, self.port)}"


def parse_proxy(text: str) -> Proxy:
    """C{--proxy}'s URL, or L{ClientError} (usage) saying what is wrong."""
    url = text if "://" in text else "http://" + text
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ClientError(USAGE, f"bad proxy {text!r}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ClientError(
            USAGE,
            f"bad proxy {text!r}: echod speaks http://, https://, socks5://, "
            "socks5h:// and socks4:// proxies",
        )
    if not parts.hostname:
        raise ClientError(USAGE, f"bad proxy {text!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ClientError(USAGE, f"bad proxy {text!r}: a proxy URL has no path")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    proxy = Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])
    if user is None:
        return proxy
    try:
        return checked_credentials(proxy, user, password)
    except ClientError as e:
        raise ClientError(USAGE, f"bad proxy {text!r}: {e}") from None


def checked_credentials(proxy: Proxy, user: str, password: str | None) -> Proxy:
    """C{proxy} with C{user} and C{password}, or L{ClientError} (usage) for
    what its protocol cannot carry: SOCKS4 has a user ID and no password;
    RFC 1929 a user name of 1 to 255 bytes and a password of at most 255
    (curl sends an empty one as empty)."""
    if proxy.scheme == "socks4" and password is not None:
        raise ClientError(USAGE, "SOCKS4 takes a user ID, and no password")
    if proxy.scheme.startswith("socks5"):
        if not 0 < len(user.encode()) <= 255:
            raise ClientError(USAGE, "a SOCKS5 user name has 1 to 255 bytes")
        if len((password or "").encode()) > 255:
            raise ClientError(USAGE, "a SOCKS5 password has at most 255 bytes")
    return replace(proxy, user=user, password=password)


def with_proxy_tls(
    proxy: Proxy | None, cacert: Path | None, insecure: bool
) -> Proxy | None:
    """C{proxy}, its TLS verified against C{cacert} (C{--proxy-cacert}) or not
    at all (C{--proxy-insecure}), as curl's; L{ClientError} (usage) when they
    are given without an C{https://} proxy."""
    if cacert is None and not insecure:
        return proxy
    if proxy is None or proxy.scheme != "https":
        given = ["--proxy-cacert"] * (cacert is not None)
        given += ["--proxy-insecure"] * insecure
        raise ClientError(USAGE, f"{options_apply(given)} to https:// proxies")
    verified = ClientTLS(
        cacert=cacert,
        insecure=insecure,
        whose="the proxy's",
        insecure_option="--proxy-insecure",
    )
    return replace(proxy, tls=verified)


def looks_up_here(proxy: Proxy | None) -> bool:
    """Whether the target's name is looked up here and the proxy given an
    address (C{socks5://}, C{socks4://}), not left to the proxy."""
    return proxy is not None and proxy.scheme in ("socks5", "socks4")


def tunnel_address(proxy: Proxy, host: str, addresses: list[str]) -> str:
    """Which of C{host}'s C{addresses} to ask C{proxy} for: the first, or
    for SOCKS4 the first IPv4 one (L{ClientError} if there is none)."""
    if proxy.scheme != "socks4":
        return addresses[0]
    for address in addresses:
        if ip_version(address) == 4:
            return address
    raise ClientError(
        USAGE,
        f"a SOCKS4 proxy takes IPv4 addresses, and {host!r} has only "
        f"{', '.join(addresses)} (socks5:// takes IPv6 too)",
    )


def check_target(proxy: Proxy, host: str) -> None:
    """Refuse (usage) an address C{proxy} cannot carry: IPv6 through SOCKS4."""
    if proxy.scheme == "socks4" and ip_version(host) == 6:
        raise ClientError(
            USAGE, f"a SOCKS4 proxy takes IPv4 addresses, not {host} (socks5:// does)"
        )


def connect_request(proxy: Proxy, host: str, port: int) -> bytes:
    """The HTTP/1.1 CONNECT request for C{host}:C{port} (RFC 9110, 9.3.6)."""
    authority = host_port(host, port).encode("ascii")
    lines = [b"CONNECT " + authority + b" HTTP/1.1", b"Host: " + authority]
    if proxy.user is not None:
        secret = f"{proxy.user}:{proxy.password or ''}".encode()
        lines.append(b"Proxy-Authorization: Basic " + base64.b64encode(secret))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def socks_greeting(proxy: Proxy) -> bytes:
    """SOCKS5's first message: the methods offered (RFC 1928, section 3): no
    authentication, and with the URL's credentials a user name and password
    too, as curl offers them."""
    if proxy.user is None:
        return bytes([5, 1, NO_AUTHENTICATION])
    return bytes([5, 2, NO_AUTHENTICATION, USER_PASSWORD])


def socks_credentials(proxy: Proxy) -> bytes:
    """RFC 1929's user name and password request."""
    user = (proxy.user or "").encode()
    password = (proxy.password or "").encode()
    return bytes([1, len(user)]) + user + bytes([len(password)]) + password


def socks_sent_shown(asked: bytes) -> str:
    """What echod sent a SOCKS5 proxy (L{TunnelWatch}'s C{asked}), in hex,
    each byte of a password shown as C{xx}."""
    shown = asked.hex(" ").split(" ") if asked else []
    offered_credentials = bytes([5, 2, NO_AUTHENTICATION, USER_PASSWORD])
    if asked[:4] == offered_credentials and asked[4:5] == b"\x01":
        user_end = 6 + asked[5]  # 4 greeting, version, length, the name
        if user_end < len(asked):
            start = user_end + 1
            shown[start : start + asked[user_end]] = ["xx"] * asked[user_end]
    return " ".join(shown)


def socks_request(host: str, port: int) -> bytes:
    """The SOCKS5 CONNECT request for C{host} (an address, or a name the
    proxy looks up) and C{port} (RFC 1928, section 4)."""
    version = ip_version(host.partition("%")[0])
    if version is not None:
        packed = ipaddress.ip_address(host.partition("%")[0]).packed
        where = (b"\x01" if version == 4 else b"\x04") + packed
    else:
        name = host.encode("ascii", "replace")
        if len(name) > 255:  # its length is one byte
            raise ClientError(USAGE, "a SOCKS5 proxy takes names of 255 bytes at most")
        where = b"\x03" + bytes([len(name)]) + name
    return b"\x05\x01\x00" + where + struct.pack("!H", port)


def socks4_request(proxy: Proxy, host: str, port: int) -> bytes:
    """SOCKS4's CONNECT request for the IPv4 address C{host} and C{port},
    with the URL's user name as its user ID."""
    check_target(proxy, host)
    if ip_version(host) != 4:
        raise ClientError(USAGE, f"a SOCKS4 proxy takes IPv4 addresses, not {host!r}")
    packed = ipaddress.IPv4Address(host).packed
    user = (proxy.user or "").encode()
    return b"\x04\x01" + struct.pack("!H", port) + packed + user + b"\x00"


def socks_reply_length(head: bytes) -> int | None:
    """How long the SOCKS5 reply that begins with C{head} is, once its
    address type is known (None before)."""
    if len(head) < 4:
        return None
    kind = head[3]
    if kind == 1:
        return 10
    if kind == 4:
        return 22
    if kind != 3:
        raise ClientError(REFUSED, f"not a SOCKS5 proxy: it answered {head[:10]!r}")
    return 7 + head[4] if len(head) > 4 else None


def http_status(head: bytes) -> int:
    """The status code of the HTTP answer C{head}; 0 if it has none."""
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if head.startswith(b"HTTP/1.") and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1])
    return 0


def http_refusal(head: bytes) -> ClientError:
    """Why an HTTP proxy's answer C{head} is not a tunnel, with its status line."""
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = http_status(head)
    if not status:
        return ClientError(
            REFUSED, f"not an HTTP proxy: it answered {status_line[:60]!r}"
        )
    said = status_line.partition(" ")[2]
    if status == 407:
        return ClientError(
            REFUSED,
            f"the proxy wants credentials: {said} (--proxy http://USER:PASSWORD@...)",
        )
    if status == 504:
        return ClientError(TIMEOUT, f"the proxy timed out reaching the target: {said}")
    if status in (502, 503):
        return ClientError(UNREACHABLE, f"the proxy could not reach the target: {said}")
    return ClientError(REFUSED, f"the proxy refused the tunnel: {said}")


class TunnelWatch:
    """Told what crossed the wire to open a tunnel (``echod fetch -v``)."""

    def tunnel_opened(self, proxy: Proxy, asked: bytes, answered: bytes) -> None:
        """The tunnel is up: C{asked} the bytes sent to C{proxy}, C{answered}
        its answers (an HTTP head, or SOCKS5's binary replies: two, three
        with a user name and password)."""

    def proxy_secured(self, proxy: Proxy, version: str, cipher: str) -> None:
        """The connection to an C{https://} C{proxy} is TLS C{version} with
        C{cipher} (said before L{tunnel_opened})."""


class TunnelProtocol(HandOverProtocol):
    """The connection to the proxy: asks for the tunnel, then hands every
    byte and the end of the connection to the target's protocol."""

    def __init__(
        self,
        proxy: Proxy,
        host: str,
        port: int,
        factory: IProtocolFactory,
        watch: TunnelWatch | None = None,
    ) -> None:
        super().__init__(factory)
        self.proxy = proxy
        self.host = host
        self.port = port
        self.watch = watch
        self.asked = b""
        """Every byte sent to the proxy to ask for the tunnel."""
        self.answered = b""
        """Every byte of the proxy's answers, once read whole."""
        self.answer = b""
        self.stage = {"http": "connect", "https": "connect", "socks4": "socks4"}.get(
            proxy.scheme, "greeting"
        )

    def connectionMade(self) -> None:
        """Ask for the tunnel: a CONNECT, or SOCKS5's greeting."""
        if self.stage == "connect":
            self.ask(connect_request(self.proxy, self.host, self.port))
        elif self.stage == "socks4":
            try:
                self.ask(socks4_request(self.proxy, self.host, self.port))
            except ClientError as e:
                self.fail(e)
        else:
            self.ask(socks_greeting(self.proxy))

    def ask(self, data: bytes) -> None:
        """Send C{data} to the proxy, and keep it for L{TunnelWatch}."""
        assert self.transport is not None
        self.asked += data
        self.transport.write(data)

    def opening_dataReceived(self, data: bytes) -> None:
        """The proxy's answer (the target's bytes go to its protocol after)."""
        self.answer += data
        try:
            rest = self.read_answer()
        except ClientError as e:
            self.fail(e)
            return
        if rest is not None:
            self.established(rest)

    def read_answer(self) -> bytes | None:
        """The bytes after the proxy's whole answer (the tunnel is up), or None
        while it is incomplete; L{ClientError} if it says no."""
        if self.stage == "connect":
            begins = self.answer[:5]
            if begins != b"HTTP/"[: len(begins)]:  # no need to wait for more
                raise http_refusal(self.answer)
            end = self.answer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.answer) > MAX_ANSWER:
                    raise ClientError(REFUSED, "the proxy's answer has no end")
                return None
            head, rest = self.answer[: end + 4], self.answer[end + 4 :]
            self.answered = head
            if http_status(head) // 100 != 2:
                raise http_refusal(head)
            return rest
        if self.stage == "socks4":
            return self.read_socks4_reply()
        if self.stage == "greeting":
            if len(self.answer) < 2:
                return None
            if self.answer[0] != 5:
                raise ClientError(
                    REFUSED, f"not a SOCKS5 proxy: it answered {self.answer[:10]!r}"
                )
            method = self.answer[1]
            self.answered, self.answer = self.answer[:2], self.answer[2:]
            if method not in socks_greeting(self.proxy)[2:]:
                raise self.no_method(method)
            if method == USER_PASSWORD:
                self.stage = "credentials"
                self.ask(socks_credentials(self.proxy))
            else:
                self.stage = "reply"
                self.ask(socks_request(self.host, self.port))
        if self.stage == "credentials":
            if len(self.answer) < 2:
                return None
            status = self.answer[1]  # its version byte is 1; curl reads only this
            self.answered += self.answer[:2]
            self.answer = self.answer[2:]
            if status != 0:
                raise ClientError(
                    REFUSED,
                    "the SOCKS5 proxy refused the user name and password "
                    f"(status {status})",
                )
            self.stage = "reply"
            self.ask(socks_request(self.host, self.port))
        length = socks_reply_length(self.answer)
        if length is None or len(self.answer) < length:
            return None
        self.answered += self.answer[:length]
        if self.answer[0] != 5:
            raise ClientError(
                REFUSED, f"not a SOCKS5 proxy: it answered {self.answer[:10]!r}"
            )
        if self.answer[1] != 0:
            code, why = SOCKS_REPLIES.get(
                self.answer[1], (REFUSED, f"reply {self.answer[1]}")
            )
            raise ClientError(code, f"the SOCKS5 proxy refused the tunnel: {why}")
        return self.answer[length:]

    def read_socks4_reply(self) -> bytes | None:
        """After SOCKS4's 8-byte reply, the bytes that follow it (None before)."""
        if self.answer[:1] not in (b"", b"\x00"):
            raise ClientError(
                REFUSED, f"not a SOCKS4 proxy: it answered {self.answer[:10]!r}"
            )
        if len(self.answer) < 8:
            return None
        self.answered, code = self.answer[:8], self.answer[1]
        if code != 90:
            why = SOCKS4_REPLIES.get(code, f"reply {code}")
            raise ClientError(REFUSED, f"the SOCKS4 proxy refused the tunnel: {why}")
        return self.answer[8:]

    def no_method(self, method: int) -> ClientError:
        """Why a SOCKS5 proxy's choice of C{method} ends the tunnel."""
        if method != NO_ACCEPTABLE_METHOD:
            return ClientError(
                REFUSED,
                f"the SOCKS5 proxy chose a method echod did not offer ({method})",
            )
        if self.proxy.user is None:
            return ClientError(
                REFUSED,
                "the SOCKS5 proxy wants authentication "
                "(--proxy socks5://USER:PASSWORD@...)",
            )
        return ClientError(
            REFUSED,
            "the SOCKS5 proxy takes neither no authentication nor a user name "
            "and password",
        )

    def established(self, rest: bytes) -> None:
        """The tunnel is up: the target's protocol takes the connection over."""
        self.answer = b""
        if self.watch is not None:
            session = negotiated(self.transport)
            if session is not None:
                self.watch.proxy_secured(self.proxy, session.version, session.cipher)
            self.watch.tunnel_opened(self.proxy, self.asked, self.answered)
        self.hand_over(rest)

    def fail(self, reason: ClientError) -> None:
        """The proxy said no (or nothing we understand): close, report it."""
        if not self.ready.called:
            self.ready.errback(Failure(reason))
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def lost_early(self) -> Exception:
        """A proxy that closed before the tunnel was up."""
        return ClientError(REFUSED, "the proxy closed before the tunnel was up")


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """C{host}:C{port} through C{proxy}, reached by the endpoint C{to_proxy}."""

    def __init__(
        self,
        reactor: Any,
        to_proxy: IStreamClientEndpoint,
        proxy: Proxy,
        host: str,
        port: int,
        timeout: float,
        family: int | None = None,
        watch: TunnelWatch | None = None,
    ) -> None:
        self.watch = watch
        self.reactor = reactor
        self.to_proxy = to_proxy
        self.proxy = proxy
        self.host = host
        self.port = port
        self.timeout = timeout
        self.family = family
        """C{-4}/C{-6}: for a name that C{socks5://} looks up here."""

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[Any]:
        """Connect to the proxy, then ask it for the tunnel (within the timeout)."""
        return defer.ensureDeferred(self._connect(protocolFactory))

    async def _connect(self, protocolFactory: IProtocolFactory) -> Any:
        host = self.host
        check_target(self.proxy, host)
        if looks_up_here(self.proxy) and ip_version(host) is None:
            found = await addresses_of(self.reactor, host, self.port, self.family,
                                       timeout=self.timeout)  # fmt: skip
            host = tunnel_address(self.proxy, host, found)
        return await self._tunnel(host, protocolFactory)

    def _tunnel(
        self, host: str, protocolFactory: IProtocolFactory
    ) -> defer.Deferred[Any]:
        def tunnel() -> TunnelProtocol:
            return TunnelProtocol(
                self.proxy, host, self.port, protocolFactory, self.watch
            )

        label = self.proxy.label()

        def proxy_failed(failure: Failure) -> Failure:
            if failure.check(ClientError):
                return failure
            e = classify(failure)
            return Failure(ClientError(e.code, f"the proxy {label}: {e}"))

        def connected(protocol: TunnelProtocol) -> defer.Deferred[Protocol]:
            slow = ClientError(
                TIMEOUT, f"the proxy {label} opened no tunnel in {self.timeout:g} s"
            )
            timer = self.reactor.callLater(self.timeout, protocol.fail, slow)

            def done(result: Any) -> Any:
                if timer.active():
                    timer.cancel()
                return result

            return protocol.ready.addBoth(done)

        d: defer.Deferred[Any] = self.to_proxy.connect(Factory.forProtocol(tunnel))
        d.addCallback(connected)
        d.addErrback(proxy_failed)
        return d
