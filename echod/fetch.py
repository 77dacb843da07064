"""The fetch client: HTTP/1.x on Twisted, showing exactly what crossed the wire.

L{FetchProtocol} writes request bytes built by hand (L{echod.fetchrequest})
and reads response bytes. h11 does the response framing (Content-Length,
chunked, close-delimited, HEAD, 1xx, 204, 304); everything reported as
received is sliced from the bytes that arrived, never rebuilt from h11's
events. L{fetch} runs one request (following redirects when asked) and
returns a Deferred; ``echod fetch`` is a thin layer over it.

Usage from other Twisted code::

    from echod.fetch import BodyCollector, FetchOptions, fetch
    from echod.fetchrequest import Request, parse_url

    collector = BodyCollector()
    d = fetch(reactor, Request(parse_url("http://127.0.0.1:8080/")),
              FetchOptions(max_time=10), collector)
    d.addCallback(lambda result: print(result.head.status, len(collector.body())))

Failures arrive as L{FetchError}, whose C{code} is the command's exit code.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
from twisted.internet import defer, error
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import (
    REFUSED,
    RESET,
    TIMEOUT,
    UNREACHABLE,
    USAGE,
    ClientError,
    classify,
)
from echod.fetchrequest import URL, Request, RequestError, redirect_url
from echod.hostnames import host_port
from echod.httplint import lint_head
from echod.interfaces import InterfaceBinding
from echod.proxyheader import HeaderFirstEndpoint
from echod.proxytunnel import (
    Proxy,
    TunnelEndpoint,
    TunnelWatch,
    looks_up_here,
    tunnel_address,
)
from echod.resolve import addresses_of, family_mismatch, family_of, ip_version
from echod.retry import RetryPolicy
from echod.tlsclient import ClientTLS, TLSClientError, connection_creator
from echod.unixnames import shown_unix_path

# Exit codes beyond those of echod client (0, 2-8), documented in the README.
MALFORMED, TRUNCATED, TOO_LARGE, REDIRECT, WRITE = 9, 10, 11, 12, 13
INTERNAL = 1
HTTP_ERROR = 22  # --fail, as curl

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class FetchError(ClientError):
    """A fetch that failed; C{code} is the exit code, the message one line."""


class ServerNotReachedError(FetchError):
    """The server's name did not resolve, or no TCP connection to it was made."""


@dataclass(frozen=True)
class FetchOptions:
    """How a fetch connects, verifies, times out and reads."""

    tls: ClientTLS = field(default_factory=ClientTLS)
    connect_timeout: float = 30.0  # name lookup, TCP connect and TLS handshake
    read_timeout: float | None = 120.0  # no byte from the server for this long
    max_time: float | None = None  # the whole fetch, redirects included
    max_header_size: int = 65536
    max_body_size: int | None = None
    raw_body: bool = False  # chunked bodies as received, not decoded
    resolve: tuple[tuple[str, int, str], ...] = ()  # (host, port, address)
    family: int | None = None  # 4 or 6 (-4, -6): addresses of one IP version only
    source: str | None = None  # --interface ADDRESS: the local address to connect from
    interface: str | None = None  # --interface NAME: the interface to connect through
    local_ports: range | None = None  # --local-port: the local ports to try
    connect_to: tuple[tuple[str, int | None, str, int | None], ...] = ()
    """C{--connect-to}: (host, port, host to connect to, port to connect to);
    an empty host or a None port matches any, or keeps the URL's."""
    follow_redirects: bool = False
    max_redirects: int | None = 10  # None: no limit (curl's --max-redirs -1)
    unix_socket: str | None = None
    """C{--unix-socket}: the UNIX socket every request goes to instead of the
    URL's host and port (a leading NUL: an abstract name)."""
    proxy: Proxy | None = None
    """C{-x}: the proxy every connection is a tunnel through."""
    haproxy_protocol: bool = False
    """C{--haproxy-protocol}: each connection opens with a PROXY v1 header."""
    haproxy_client_ip: str | None = None
    """C{--haproxy-clientip}: the header's source address."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """C{--retry} and its kin: which failures are tried again, and when."""


@dataclass(frozen=True)
class ResponseHead:
    """A status line and header section: parsed, and the bytes as received."""

    raw: bytes
    http_version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header C{name}, or None."""
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def content_length(self) -> int | None:
        """The announced body length, when framed by Content-Length."""
        if self.header("transfer-encoding") is not None:
            return None
        value = self.header("content-length")
        return int(value) if value is not None and value.isdigit() else None


@dataclass
class Timing:
    """When each step finished, in seconds from the start (curl's -w times)."""

    start: float = field(default_factory=time.perf_counter)
    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    first_byte: float | None = None
    total: float | None = None

    def mark(self, step: str) -> None:
        """Record that C{step} finished now."""
        setattr(self, step, time.perf_counter() - self.start)


@dataclass
class FetchResult:
    """What a fetch saw: every response head, body size, warnings and timing."""

    url: URL
    request: bytes
    heads: list[ResponseHead]
    body_bytes: int
    warnings: list[str]
    timing: Timing
    peer: str = ""
    """The server's end of the last connection, as C{-v} names it."""
    peer_address: tuple[str, int] | None = None
    """The server's IP address and port; over a UNIX socket, what curl says
    there: the socket's path (empty for an abstract name) and the URL's port."""
    local_address: tuple[str, int] | None = None
    """Our IP address and port (None over a UNIX socket)."""

    @property
    def head(self) -> ResponseHead:
        """The final response's head."""
        return self.heads[-1]


class FetchObserver(TunnelWatch):
    """What a fetch tells its user as it goes. Override what you need.

    C{body_received} is where the body goes (decoded, or raw with
    C{FetchOptions.raw_body}); it may raise L{FetchError} to stop the fetch.
    """

    def resolved(self, host: str, addresses: list[str]) -> None:
        """The name was looked up."""

    def info(self, text: str) -> None:
        """A note on how the connection is made (C{--interface NAME})."""

    def connected(self, peer: str, local: str | None = None) -> None:
        """A TCP connection was made to C{peer}, from C{local} when the local
        address or port was asked for (C{--interface}, C{--local-port})."""

    def tls_established(self, description: str) -> None:
        """The TLS handshake completed."""

    def request_sent(self, data: bytes) -> None:
        """The request head (and a C{-d} body) was written."""

    def head_received(self, head: ResponseHead) -> None:
        """A response head arrived (1xx, redirects and the final one)."""

    def body_started(self, head: ResponseHead, length: int | None) -> None:
        """The final response's body begins; C{length} when it is known."""

    def body_received(self, data: bytes) -> None:
        """Body bytes, in order."""

    def body_finished(self) -> None:
        """The body is complete."""

    def warning(self, text: str) -> None:
        """A protocol violation or a risk worth saying."""

    def retrying(self, reason: str, wait: float, left: int) -> None:
        """A transient failure (C{reason}): the fetch is tried again in
        C{wait} seconds, C{left} more times at most after this one."""

    def redirecting(self, url: URL) -> None:
        """A redirect is being followed to C{url}."""


class BodyCollector(FetchObserver):
    """Keep the body in memory (bound it with C{FetchOptions.max_body_size})."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.warnings: list[str] = []

    def body_received(self, data: bytes) -> None:
        """Keep C{data}."""
        self._parts.append(data)

    def warning(self, text: str) -> None:
        """Keep the warning."""
        self.warnings.append(text)

    def body(self) -> bytes:
        """The body received so far."""
        return b"".join(self._parts)


def _text(value: bytes) -> str:
    return value.decode("latin-1")


@implementer(IHandshakeListener)
class FetchProtocol(Protocol):
    """One request and its response, on one connection.

    C{done} fires with the final L{ResponseHead} and the body length once the
    response is complete (the connection is then closed), or fails with a
    L{FetchError}. C{deliver(head)} says whether that response's body goes to
    the observer (a redirect's does not).
    """

    def __init__(
        self,
        request: Request,
        options: FetchOptions,
        observer: FetchObserver,
        timing: Timing,
        clock: Any,
        deliver: Callable[[ResponseHead], bool] = lambda head: True,
        connect_deadline: float | None = None,
    ) -> None:
        self.request = request
        self.options = options
        self.observer = observer
        self.timing = timing
        self.clock = clock
        self.deliver = deliver
        self.connect_deadline = connect_deadline  # time.perf_counter() value
        self.done: defer.Deferred[tuple[list[ResponseHead], int]] = defer.Deferred(
            lambda d: self._fail(FetchError(TIMEOUT, "timed out"))
        )
        self.heads: list[ResponseHead] = []
        self.warnings: list[str] = []
        self.body_bytes = 0
        self.peer = ""
        self.peer_address: tuple[str, int] | None = None
        self.local_address: tuple[str, int] | None = None
        self._h11 = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=options.max_header_size
        )
        self._buffer = bytearray()  # received bytes from offset _mark on
        self._mark = 0
        self._received = 0
        self._head_bytes = 0
        self._delivering = False
        self._finished = False
        self._timers: dict[str, Any] = {}
        self._file: Any = None
        self._lost = False

    # Timers.

    def _arm(self, name: str, seconds: float | None, message: str) -> None:
        self._disarm(name)
        if seconds is not None:
            self._timers[name] = self.clock.callLater(
                seconds, self._fail, FetchError(TIMEOUT, message)
            )

    def _disarm(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    # The connection.

    def connectionMade(self) -> None:
        """Write the request; tell h11 what was asked, for the response framing."""
        self.timing.mark("connect")
        local = None
        path = self.options.unix_socket
        if path is not None:
            self.peer = shown_unix_path(path)
            # curl's remote_ip and remote_port: the path (an abstract name,
            # which begins with a NUL, reads as empty there) and the URL's port
            shown = "" if path.startswith("\0") else path
            self.peer_address = (shown, self.request.url.port)
        else:
            peer: Any = self.transport.getPeer()  # type: ignore[union-attr]
            ours: Any = self.transport.getHost()  # type: ignore[union-attr]
            self.peer_address = (peer.host, peer.port)
            self.local_address = (ours.host, ours.port)
            self.peer = host_port(*self.peer_address)
            options = self.options
            if options.source or options.interface or options.local_ports is not None:
                local = host_port(*self.local_address)
            if self.options.proxy is not None:  # curl's remote_ip: the proxy's too
                self.peer += f" (the proxy {self.options.proxy.label()})"
        self.observer.connected(self.peer, local)
        if self.request.url.tls and self.connect_deadline is not None:
            left = max(0.0, self.connect_deadline - time.perf_counter())
            self._arm("handshake", left, "TLS handshake timed out (--connect-timeout)")
        # h11 frames the response by the request's method only; it writes
        # nothing here (the bytes sent are ours), and it knows only HTTP/1.1.
        self._h11.send(
            h11.Request(
                method=self.request.method_sent(),
                target="/",
                headers=[("Host", "echod"), ("Connection", "close")],
            )
        )
        self._h11.send(h11.EndOfMessage())
        head = self.request.head_bytes()
        self.transport.write(head)  # type: ignore[union-attr]
        if self.request.body is not None:
            self.transport.write(self.request.body)  # type: ignore[union-attr]
            self.observer.request_sent(head + self.request.body)
        else:
            self.observer.request_sent(head)
        if self.request.body_file is not None and self.request.raw is None:
            try:
                self._file = self.request.body_file.open("rb")
            except OSError as e:
                self._fail(
                    FetchError(
                        USAGE, f"cannot read {self.request.body_file}: {e.strerror}"
                    )
                )
                return
            sent = FileSender().beginFileTransfer(self._file, self.transport)
            sent.addBoth(self._close_body_file)
        self._arm("read", self.options.read_timeout, self._read_timeout_message())

    def _close_body_file(self, result: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read_timeout_message(self) -> str:
        return f"no data from the server for {self.options.read_timeout:g} s"

    def handshakeCompleted(self) -> None:
        """Note the TLS handshake's time, version and cipher."""
        self.timing.mark("tls")
        self._disarm("handshake")
        handle = self.transport.getHandle()  # type: ignore[union-attr]
        try:
            description = (
                f"{handle.get_protocol_version_name()}, {handle.get_cipher_name()}"
            )
            cert = handle.get_peer_certificate()
            if cert is not None:
                subject = cert.get_subject().commonName
                issuer = cert.get_issuer().commonName
                description += f", certificate CN={subject} issued by CN={issuer}"
        except Exception:  # a handle without these methods: say less
            description = "established"
        self.observer.tls_established(description)

    def dataReceived(self, data: bytes) -> None:
        """Feed the response bytes to h11 and act on what it found."""
        if self._finished:
            return
        if self.timing.first_byte is None:
            self.timing.mark("first_byte")
        self._arm("read", self.options.read_timeout, self._read_timeout_message())
        self._buffer += data
        self._received += len(data)
        try:
            self._h11.receive_data(data)
            self._check_status_line_start()  # before h11 sees a whole bad head
            self._process()
            self._check_status_line_start()  # the head after a 1xx
        except h11.RemoteProtocolError as e:
            self._fail(self._protocol_error(e))
        except FetchError as e:
            self._fail(e)
        except Exception as e:  # a bug of ours: one line, not a hang
            self._fail(FetchError(INTERNAL, f"internal error: {e!r}"))

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        """The end of a close-delimited body, a cut-short response, or a failure."""
        for name in list(self._timers):
            self._disarm(name)
        self._close_body_file(None)
        if self._finished:
            return
        self._lost = True
        if reason.check(error.ConnectionDone):
            # Only a clean close ends a close-delimited body; a reset never does.
            try:
                self._h11.receive_data(b"")
                self._process()
            except h11.RemoteProtocolError as e:
                self._fail(self._protocol_error(e, eof=True))
                return
            except FetchError as e:
                self._fail(e)
                return
            if self._finished:
                return
            self._fail(self._cut_short())
        else:
            failure = classify(reason)
            if failure.code == RESET and self.heads:
                failure = FetchError(
                    RESET, f"{failure} after {self.body_bytes} body bytes"
                )
            self._fail(FetchError(failure.code, str(failure)))

    # Reading the response.

    def _consumed(self) -> int:
        """Stream offset up to which h11 has used the bytes."""
        return self._received - len(self._h11.trailing_data[0])

    def _take(self, upto: int) -> bytes:
        """The buffered bytes up to stream offset C{upto}, dropped from the buffer."""
        count = upto - self._mark
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._mark = upto
        return taken

    def _process(self) -> None:
        while not self._finished:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                self._on_head(event, self._take(self._consumed()))
            elif isinstance(event, h11.Data):
                if self.options.raw_body:
                    self._body(self._take(self._consumed()))
                else:
                    self._take(self._consumed())
                    self._body(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self.options.raw_body:
                    self._body(self._take(self._consumed()))
                self._end_of_message()
            else:  # ConnectionClosed, PAUSED: nothing more will come
                self._end_of_message()
        if not self.options.raw_body:
            self._take(self._consumed())  # framing bytes h11 has used up

    def _check_status_line_start(self) -> None:
        """Fail at once when a response does not begin as HTTP/1.x's do.

        h11 reads a status line only with the whole header section, so a
        server of another protocol that speaks first and waits (an SSH or
        SMTP banner) would be waited on until the read timeout. curl refuses
        such a response at once ("Received HTTP/0.9 when not allowed").
        """
        if self._finished or self._h11.their_state is not h11.SEND_RESPONSE:
            return
        start = self._h11.trailing_data[0].lstrip(b"\r\n")
        if b"HTTP/".startswith(start[:5]):
            return
        line = start.split(b"\n", 1)[0].rstrip(b"\r")
        shown = repr(_text(line[:80]))
        raise FetchError(
            MALFORMED,
            f"not an HTTP response: it begins {shown}"
            + (" ..." if len(line) > 80 else ""),
        )

    def _on_head(
        self, event: h11.InformationalResponse | h11.Response, raw: bytes
    ) -> None:
        self._head_bytes += len(raw)
        if self._head_bytes > self.options.max_header_size:
            raise FetchError(
                TOO_LARGE,
                f"the response header section is larger than "
                f"{self.options.max_header_size} bytes",
            )
        head = ResponseHead(
            raw=raw,
            http_version=_text(event.http_version),
            status=event.status_code,
            reason=_text(event.reason),
            headers=tuple((_text(n), _text(v)) for n, v in event.headers),
        )
        self.heads.append(head)
        for warning in lint_head(raw):
            self._warn(warning)
        self.observer.head_received(head)
        if isinstance(event, h11.Response):
            self._delivering = self.deliver(head)
            if self._delivering:
                self.observer.body_started(head, head.content_length())

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        self.observer.warning(text)

    def _body(self, data: bytes) -> None:
        if not data:
            return
        self.body_bytes += len(data)
        limit = self.options.max_body_size
        if limit is not None and self.body_bytes > limit:
            raise FetchError(TOO_LARGE, f"the body is larger than {limit} bytes")
        if self._delivering:
            self.observer.body_received(data)

    def _end_of_message(self) -> None:
        head = self.heads[-1] if self.heads else None
        extra = len(self._h11.trailing_data[0])
        if extra and head is not None:
            if head.status in (204, 304) or 100 <= head.status < 200:
                what = f"a body on a {head.status} response"
            elif self.request.method_sent() == "HEAD":
                what = "a body in a response to HEAD"
            else:
                what = "more bytes than the response's framing announced"
            self._warn(f"{what}: {extra} extra byte(s) ignored")
        self._finished = True
        for name in list(self._timers):
            self._disarm(name)
        if self._delivering:
            self.observer.body_finished()
        if not self._lost:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self.done.callback((self.heads, self.body_bytes))

    def _protocol_error(
        self, e: h11.RemoteProtocolError, eof: bool = False
    ) -> FetchError:
        if e.error_status_hint == 431:
            return FetchError(
                TOO_LARGE,
                f"the response header section is larger than "
                f"{self.options.max_header_size} bytes",
            )
        if eof:
            return self._cut_short()
        if not any(h.status >= 200 for h in self.heads):
            for warning in lint_head(bytes(self._buffer[:4096])):
                self._warn(warning)
            return FetchError(MALFORMED, f"malformed response header: {e}")
        return FetchError(MALFORMED, f"malformed response body: {e}")

    def _cut_short(self) -> FetchError:
        final = [h for h in self.heads if h.status >= 200]
        if not final:
            if self._received == 0:
                return FetchError(
                    TRUNCATED, "the server closed the connection without answering"
                )
            return FetchError(
                TRUNCATED,
                f"the connection closed in the middle of the response header "
                f"({self._received} bytes received)",
            )
        head = final[-1]
        expected = head.content_length()
        if expected is not None:
            got = self.body_bytes
            return FetchError(
                TRUNCATED,
                f"the body was cut short: {got} of {expected} bytes (Content-Length)",
            )
        return FetchError(
            TRUNCATED,
            f"the chunked body was cut short after {self.body_bytes} bytes "
            f"(no last chunk)",
        )

    # Ending.

    def _fail(self, failure: FetchError) -> None:
        if self._finished:
            return
        self._finished = True
        for name in list(self._timers):
            self._disarm(name)
        if self.transport is not None and not self._lost:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        self.done.errback(failure)


def _is_redirect(head: ResponseHead) -> bool:
    return head.status in REDIRECT_STATUSES and head.header("location") is not None


def redirected(request: Request, head: ResponseHead, url: URL) -> Request:
    """The request to send to a redirect's Location.

    303, and 301 or 302 after a POST, become a GET without a body (as browsers
    do); 307 and 308 repeat the method and body. Authorization and Cookie are
    dropped when the redirect leaves the host.
    """
    method, body, body_file = request.method, request.body, request.body_file
    if (head.status == 303 and method != "HEAD") or (
        head.status in (301, 302) and method == "POST"
    ):
        method, body, body_file = "GET", None, None
    headers = request.headers
    if (url.host, url.port) != (request.url.host, request.url.port):
        private = ("authorization", "cookie")
        headers = tuple((n, v) for n, v in headers if n.lower() not in private)
    if body is None and body_file is None:
        headers = tuple((n, v) for n, v in headers if n.lower() != "content-type")
    return Request(url, method, headers, body, body_file, request.http10, None)


def connection_target(url: URL, options: FetchOptions) -> tuple[str, int]:
    """The host and port to connect to for C{url}: its own, or the first
    C{--connect-to} that matches (curl's rule). TLS still names and verifies
    the URL's host."""
    for host, port, to_host, to_port in options.connect_to:
        if host.lower() in ("", url.host.lower()) and port in (None, url.port):
            return to_host or url.host, to_port or url.port
    return url.host, url.port


async def _addresses(
    reactor: Any, host: str, port: int, options: FetchOptions
) -> list[str]:
    """The addresses of C{host}: C{--resolve}'s, or the resolver's within the
    connect timeout."""
    family, flag = family_of(options.family, options.source, "--interface")
    asked = f"{flag} is an IPv{family} address" if options.source else None
    for name, number, address in options.resolve:
        if name.lower() == host.lower() and number == port:
            mismatch = family_mismatch(address, family, asked)
            if mismatch is not None:
                raise FetchError(USAGE, f"--resolve {name}:{number}: {mismatch}")
            return [address]
    mismatch = family_mismatch(host, family, asked)
    if mismatch is not None:
        raise FetchError(USAGE, mismatch)
    if "%" in host:
        # A link-local address with its zone (fe80::1%eth0): the resolver
        # would hand back the address without it, which cannot be connected.
        return [host]
    try:
        return await addresses_of(
            reactor, host, port, family, timeout=options.connect_timeout, flag=flag
        )
    except ClientError as e:
        raise ServerNotReachedError(e.code, str(e)) from None


def _tls_creator(
    url: URL, options: FetchOptions, observer: FetchObserver
) -> IOpenSSLClientConnectionCreator | None:
    """The TLS settings for C{url} (files read once per exchange), or None."""
    if not url.tls:
        return None
    return _creator(url.host, options.tls, observer)


def _creator(
    host: str, settings: ClientTLS, observer: FetchObserver
) -> IOpenSSLClientConnectionCreator:
    """The TLS settings for C{host}, a warning to C{observer} if unverified."""
    try:
        return connection_creator(
            host,
            settings,
            lambda text: observer.warning(text.split("warning: ", 1)[-1]),
        )
    except TLSClientError as e:
        raise FetchError(USAGE, str(e)) from None


def port_taken(e: BaseException) -> bool:
    """Whether a connect failed because its local port was taken."""
    return (
        isinstance(e, error.ConnectBindError)
        and getattr(e, "osError", None) == errno.EADDRINUSE
    )


def no_free_port(ports: range | None) -> str:
    """The message when every port of C{--local-port} was taken."""
    assert ports is not None
    which = f"{ports[0]}" if len(ports) == 1 else f"{ports[0]}-{ports[-1]}"
    return f"cannot bind the local port: {which} (--local-port) in use"


def _endpoint(
    reactor: Any,
    address: str,
    port: int,
    timeout: float,
    source: str | None,
    local_port: int,
) -> IStreamClientEndpoint:
    """A TCP endpoint to C{address}, from C{source} and C{local_port} if given."""
    bind = None if source is None and not local_port else (source or "", local_port)
    if ":" in address:
        return TCP6ClientEndpoint(reactor, address, port, timeout, bind)
    return TCP4ClientEndpoint(reactor, address, port, timeout, bind)


async def _exchange(
    reactor: Any,
    request: Request,
    options: FetchOptions,
    observer: FetchObserver,
    timing: Timing,
    deliver: Callable[[ResponseHead], bool],
) -> FetchProtocol:
    url = request.url
    host, port = connection_target(url, options)
    try:
        return await _connect(reactor, request, host, port, options, observer, timing,
                              deliver)  # fmt: skip
    except ServerNotReachedError as e:
        if (host, port) == (url.host, url.port):
            raise
        raise ServerNotReachedError(
            e.code, f"{e} (--connect-to {host_port(host, port)})"
        ) from None


Attempt = Callable[[IStreamClientEndpoint, float], Awaitable["FetchProtocol"]]
"""One connection attempt through an endpoint, within so many seconds."""


async def _connect(
    reactor: Any,
    request: Request,
    host: str,
    port: int,
    options: FetchOptions,
    observer: FetchObserver,
    timing: Timing,
    deliver: Callable[[ResponseHead], bool],
) -> FetchProtocol:
    """The connection to C{host}:C{port} (or C{--unix-socket}) for
    C{request}, its first address that answers, with the request on its way."""
    creator = _tls_creator(request.url, options, observer)
    deadline = time.perf_counter() + options.connect_timeout

    async def attempt(endpoint: IStreamClientEndpoint, left: float) -> FetchProtocol:
        protocol = FetchProtocol(request, options, observer, timing, reactor, deliver,
                                 connect_deadline=deadline)  # fmt: skip
        if options.haproxy_protocol:  # before TLS, where servers read it
            endpoint = HeaderFirstEndpoint(endpoint, options.haproxy_client_ip)
        if creator is not None:
            endpoint = wrapClientTLS(creator, endpoint)
        connecting = connectProtocol(endpoint, protocol)
        connecting.addTimeout(left, reactor)
        await connecting
        return protocol

    if options.unix_socket is not None:
        timing.mark("dns")  # no name to look up: as curl counts it
        return await _over_unix_socket(reactor, options, attempt)
    route = await _route(reactor, host, port, options, observer)
    timing.mark("dns")
    observer.resolved(route.reach_host, route.addresses)
    if route.interface is not None:
        observer.info(route.interface.describe())
    return await _first_answering(reactor, route, options, observer, attempt, deadline)


def _timed_out(options: FetchOptions) -> str:
    return f"connecting timed out after {options.connect_timeout:g} s"


async def _over_unix_socket(
    reactor: Any, options: FetchOptions, attempt: Attempt
) -> FetchProtocol:
    """The connection to C{--unix-socket}'s path (or abstract name)."""
    path = options.unix_socket
    assert path is not None
    try:
        endpoint = UNIXClientEndpoint(reactor, path, options.connect_timeout)
        return await attempt(endpoint, options.connect_timeout)
    except Exception as e:
        failed = classify(e)
        text = _timed_out(options) if failed.code == TIMEOUT else str(failed)
        raise _not_connected(failed.code, f"{text} ({shown_unix_path(path)})") from None


@dataclass(frozen=True)
class _Route:
    """How a fetch reaches C{host}:C{port}: the addresses of C{reach_host}
    (the server, or the proxy) to connect to on C{reach_port}, what the
    tunnel asks a proxy for (C{target}: the host, or its address for
    C{socks5://}), and the interface to go out by (C{--interface NAME})."""

    host: str
    port: int
    reach_host: str
    reach_port: int
    addresses: list[str]
    target: str
    interface: InterfaceBinding | None


async def _route(
    reactor: Any, host: str, port: int, options: FetchOptions, observer: FetchObserver
) -> _Route:
    """Look up what C{host}:C{port} is reached by (L{_Route})."""
    proxy = options.proxy
    # Through a proxy, echod connects to the proxy and asks it for host:port.
    reach_host, reach_port = (host, port) if proxy is None else (proxy.host, proxy.port)
    addresses = await _addresses(reactor, reach_host, reach_port, options)
    target = host
    if proxy is not None and looks_up_here(proxy) and ip_version(host) is None:
        # socks5:// and socks4:// name the target by its address, looked up
        # here as any (--resolve included, as curl); socks5h:// leaves it to
        # the proxy.
        found = await _addresses(reactor, host, port, options)
        target = tunnel_address(proxy, host, found)
        observer.resolved(host, [target])
    interface = None
    if options.interface is not None:
        interface = InterfaceBinding.of(options.interface)
    return _Route(host, port, reach_host, reach_port, addresses, target, interface)


async def _first_answering(
    reactor: Any,
    route: _Route,
    options: FetchOptions,
    observer: FetchObserver,
    attempt: Attempt,
    deadline: float,
) -> FetchProtocol:
    """The first of C{route}'s addresses (from the first free C{--local-port})
    that connects before C{deadline}, or the last failure's error."""
    timed_out = _timed_out(options)
    last: ClientError | None = None
    for address in route.addresses:
        for local_port in options.local_ports or (0,):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise ServerNotReachedError(TIMEOUT, timed_out)
            try:
                endpoint = _route_endpoint(
                    reactor, route, address, local_port, left, options, observer
                )
            except ValueError as e:  # the interface has no address of its version
                last = ClientError(USAGE, str(e))
                break  # the next address
            try:
                return await attempt(endpoint, left)
            except Exception as e:
                last = classify(e)
                if last.code == TIMEOUT:
                    last = ClientError(TIMEOUT, timed_out)
                if local_port and port_taken(e):
                    last = ClientError(last.code, no_free_port(options.local_ports))
                    continue  # the next local port
                break  # the next address
    assert last is not None
    raise _not_connected(last.code, str(last))


def _route_endpoint(
    reactor: Any,
    route: _Route,
    address: str,
    local_port: int,
    left: float,
    options: FetchOptions,
    observer: FetchObserver,
) -> IStreamClientEndpoint:
    """The endpoint to C{address} on C{route}: from the interface or the
    source address, and through the proxy's tunnel when there is one."""
    source, via = options.source, reactor
    if route.interface is not None:
        source = route.interface.source_for(address)
        via = route.interface.reactor(reactor)
    endpoint = _endpoint(via, address, route.reach_port, left, source, local_port)
    proxy = options.proxy
    if proxy is None:
        return endpoint
    if proxy.scheme == "https":  # TLS to the proxy, verified against its name
        creator = _creator(proxy.host, proxy.tls, observer)
        endpoint = wrapClientTLS(creator, endpoint)
    return TunnelEndpoint(reactor, endpoint, proxy, route.target, route.port, left,
                          options.family, observer)  # fmt: skip


def _not_connected(code: int, text: str) -> FetchError:
    """The error for a connection that was not made: the server not reached
    (refused, unreachable, timed out; C{--connect-to} names its target in
    it), or another failure."""
    if code in (REFUSED, UNREACHABLE, TIMEOUT):
        return ServerNotReachedError(code, text)
    return FetchError(code, text)


class _ResponseRetriedError(Exception):
    """A response that a retry replaces: its body was read, not delivered."""


class _Try:
    """One try of a fetch: whether its response may be tried again instead
    of delivered (L{RetryPolicy}), and whether one is being delivered."""

    def __init__(
        self, reactor: Any, policy: RetryPolicy, done: int, first: float
    ) -> None:
        self.reactor = reactor
        self.policy = policy
        self.done = done  # retries made before this try
        self.first = first  # reactor.seconds() when the first try began
        self.wait: float | None = None  # set when this response is tried again
        self.reason = ""
        self.answered = False  # a response is delivered: no retry after that

    def left(self) -> int:
        """How many retries remain after this try."""
        return self.policy.retries - self.done

    def may_retry(self, wait: float) -> bool:
        """Whether a try C{wait} seconds from now is allowed."""
        elapsed = self.reactor.seconds() - self.first
        return self.left() > 0 and self.policy.may_start(elapsed, wait)

    def deliver(self, head: ResponseHead) -> bool:
        """Whether the final response C{head} is delivered; if not, its wait
        and reason are noted for the retry."""
        if self.policy.retries_status(head.status):
            retry_after = head.header("retry-after")
            wait = self.policy.wait(self.done, retry_after, time.time())
            if self.may_retry(wait):
                self.wait, self.reason = wait, f"HTTP {head.status} {head.reason}"
                return False
        self.answered = True
        return True


async def _fetch(
    reactor: Any,
    request: Request,
    options: FetchOptions,
    observer: FetchObserver,
    attempt: _Try,
) -> FetchResult:
    timing = Timing()
    heads: list[ResponseHead] = []
    warnings: list[str] = []
    redirects = 0

    def deliver(head: ResponseHead) -> bool:
        if options.follow_redirects and _is_redirect(head):
            return False
        return attempt.deliver(head)

    while True:
        protocol = await _exchange(reactor, request, options, observer, timing, deliver)
        got, body_bytes = await protocol.done
        heads.extend(got)
        warnings.extend(protocol.warnings)
        head = got[-1]
        if attempt.wait is not None:
            raise _ResponseRetriedError()
        if options.follow_redirects and _is_redirect(head):
            redirects += 1
            if options.max_redirects is not None and redirects > options.max_redirects:
                raise FetchError(
                    REDIRECT, f"more than {options.max_redirects} redirects"
                )
            location = head.header("location") or ""
            try:
                url = redirect_url(request.url, location)
            except RequestError as e:
                raise FetchError(MALFORMED, f"bad Location {location!r}: {e}") from None
            if request.url.tls and not url.tls:
                raise FetchError(
                    REDIRECT, f"refused to follow a redirect from https to {url}"
                )
            request = redirected(request, head, url)
            observer.redirecting(url)
            timing = Timing(start=timing.start)
            continue
        timing.mark("total")
        return FetchResult(
            request.url,
            request.head_bytes(),
            heads,
            body_bytes,
            warnings,
            timing,
            protocol.peer,
            protocol.peer_address,
            protocol.local_address,
        )


async def _with_retries(
    reactor: Any, request: Request, options: FetchOptions, observer: FetchObserver
) -> FetchResult:
    """The fetch, tried again after each transient failure as C{options.retry}
    says; a failure once a response is being delivered is not retried (its
    bytes are out)."""
    policy = options.retry
    first = reactor.seconds()
    done = 0
    while True:
        attempt = _Try(reactor, policy, done, first)
        try:
            return await _bounded(reactor, request, options, observer, attempt)
        except _ResponseRetriedError:
            assert attempt.wait is not None
            wait, reason = attempt.wait, attempt.reason
        except FetchError as e:
            wait = policy.wait(done)
            if attempt.answered or not policy.retries_error(e.code):
                raise
            if not attempt.may_retry(wait):
                raise
            reason = str(e)
        observer.retrying(reason, wait, attempt.left() - 1)
        done += 1
        await deferLater(reactor, wait)


def _bounded(
    reactor: Any,
    request: Request,
    options: FetchOptions,
    observer: FetchObserver,
    attempt: _Try,
) -> defer.Deferred[FetchResult]:
    """One try of the fetch, within C{options.max_time} (curl's C{-m}: each
    try's limit, as curl's with C{--retry})."""
    d = defer.ensureDeferred(_fetch(reactor, request, options, observer, attempt))
    if options.max_time is not None:
        # Not Deferred.addTimeout: the protocol's canceller fails with its own
        # FetchError, which addTimeout would pass on unrenamed.
        limit = options.max_time
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = reactor.callLater(limit, expire)

        def finished(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure):
                message = f"timed out after {limit:g} s (--max-time)"
                return Failure(FetchError(TIMEOUT, message))
            return result

        d.addBoth(finished)
    return d


def fetch(
    reactor: Any,
    request: Request,
    options: FetchOptions | None = None,
    observer: FetchObserver | None = None,
) -> defer.Deferred[FetchResult]:
    """Send C{request} and read the response; fires with a L{FetchResult}.

    The body goes to C{observer.body_received} (a L{BodyCollector} keeps it in
    memory). Fails with L{FetchError}; C{options.max_time} bounds each try,
    C{options.retry} says which failures are tried again.
    """
    options = options or FetchOptions()
    return defer.ensureDeferred(
        _with_retries(reactor, request, options, observer or FetchObserver())
    )
