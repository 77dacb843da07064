"""Where a client connects: C{HOST:PORT}, C{[IPv6]:PORT}, C{tls:HOST:PORT} or
a Twisted client endpoint string, checked up front, and the endpoint for it
(C{-4}/C{-6}, C{--source}, TLS)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from twisted.internet import defer, error
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    clientFromString,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from echod import sockopts
from echod.cli import is_port
from echod.clienterrors import DNS, USAGE, ClientError
from echod.compat import TESTED_TWISTED, installed_twisted
from echod.endpointerrors import empty_unix_path, parse_error_message
from echod.hostnames import HostNameError, ascii_host, host_port
from echod.proxyheader import HeaderFirstEndpoint, check_client_ip
from echod.proxytunnel import Proxy, TunnelEndpoint
from echod.resolve import (
    ReactorOfOneFamily,
    family_mismatch,
    ip_version,
    source_family,
)
from echod.reuseport import split_description
from echod.sockopts import PreparingReactor
from echod.tlsclient import (
    ClientTLS,
    TLSClientError,
    connection_creator,
)
from echod.tos import parse_tos, set_tos
from echod.unixnames import abstract_unix
from echod.zones import missing_zone, needs_zone


@dataclass(frozen=True)
class Target:
    """Where to connect, and the host name TLS verifies."""

    host: str | None
    port: int | None
    endpoint: str | None  # a Twisted client endpoint string, when not host:port
    tls: bool
    family: int | None = None  # -4 or -6: the addresses of one IP version only
    source: str | None = None  # --source: the local address to connect from
    source_port: int | None = None  # --source-port: the local port
    proxy: Proxy | None = None  # --proxy: the proxy to tunnel through
    tos: int | None = None  # -T: the IP TOS byte (IPv6 traffic class) to send
    haproxy_protocol: bool = False  # --haproxy-protocol: a PROXY v1 header first
    haproxy_client_ip: str | None = None  # --haproxy-clientip: its source address

    def label(self) -> str:
        """How messages name the peer: C{host:port}, C{[v6]:port} or the endpoint."""
        if self.endpoint is not None:
            return self.endpoint
        return host_port(self.host or "", self.port)


TARGET_FORMS = (
    "expected HOST:PORT, [IPv6]:PORT or a Twisted endpoint such as "
    "tcp:host=HOST:port=PORT"
)


def is_ipv6(text: str) -> bool:
    """Whether C{text} is an IPv6 address."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def checked_port(text: str, port_text: str) -> int:
    """C{port_text} as a port number, or L{ClientError} (usage) naming C{text}."""
    port = int(port_text)
    if not is_port(port):
        raise ClientError(USAGE, f"bad port in {text!r}: ports are 1 to 65535")
    return port


def checked_host(host: str) -> str:
    """C{host} in ASCII (an international name as its A-labels, as curl
    looks it up and sends it in TLS), or L{ClientError} (usage)."""
    try:
        return ascii_host(host)
    except HostNameError as e:
        raise ClientError(USAGE, str(e)) from None


def endpoint_host_port(
    args: list[str], kwargs: dict[str, str]
) -> tuple[str | None, str | None]:
    """The host and port text of a split C{tcp:} or C{ssl:} endpoint string."""
    host = kwargs.get("host", args[0] if args else None)
    port = kwargs.get("port", args[1] if len(args) > 1 else None)
    return host, port


def check_endpoint_host(text: str, host: str | None) -> None:
    """Refuse a bracketed host in an endpoint string, which Twisted would look up."""
    if host is not None and ("[" in host or "]" in host):
        raise ClientError(
            USAGE,
            f"bad host {host!r} in {text!r}: in an endpoint string an IPv6 "
            "address has no brackets and its colons are escaped "
            "(host=\\:\\:1); or give [IPv6]:PORT",
        )


def ssl_target(text: str) -> Target:
    """Twisted's C{ssl:} client endpoint string as a target of echod's own TLS.

    Twisted's C{ssl:} client endpoint verifies nothing unless given a CA
    directory; echod never connects unverified without C{--insecure}, so
    C{ssl:host=H:port=P} (or C{ssl:H:P}) means what C{tls:H:P} means.
    """
    _, args, kwargs = split_description(text)
    other = sorted(set(kwargs) - {"host", "port"})
    if other:
        raise ClientError(
            USAGE,
            f"bad endpoint {text!r}: echod does TLS itself, so {', '.join(other)} "
            "has no place here: use tls:HOST:PORT with --cacert, --cert, --key",
        )
    host, port_text = endpoint_host_port(args, kwargs)
    check_endpoint_host(text, host)
    if not host or port_text is None or not port_text.isdigit():
        raise ClientError(USAGE, f"bad endpoint {text!r}: expected ssl:HOST:PORT")
    return Target(checked_host(host), checked_port(text, port_text), None, True)


def check_endpoint(text: str) -> None:
    """Check the host and port of a C{tcp:} client endpoint string up front.

    Twisted would take a bracketed host as a name to look up (and report a
    refused or failed connection) and a port past 65535 as a connect error.
    """
    kind, args, kwargs = split_description(text)
    if kind != "tcp":
        return
    host, port_text = endpoint_host_port(args, kwargs)
    check_endpoint_host(text, host)
    if host is not None:
        checked_host(host)  # Twisted converts it itself, or fails late
    if host is not None and needs_zone(host.partition("%")[0]):
        # Twisted's tcp: endpoint drops a zone; [fe80::1%eth0]:PORT keeps it.
        address, _, zone = host.partition("%")
        port = port_text or "PORT"
        if not zone:
            raise ClientError(USAGE, missing_zone(host, f"[{host}%eth0]:{port}"))
        raise ClientError(
            USAGE,
            f"Twisted's tcp: endpoint loses the zone of {host}: write "
            f"[{address}%{zone}]:{port}",
        )
    if port_text is not None and port_text.isdigit():
        checked_port(text, port_text)


def parse_target(text: str, tls: bool, family: int | None = None) -> Target:
    """C{host:port}, C{[v6]:port}, C{tls:host:port}, or a client endpoint string.

    C{family} (4 or 6, from C{-4}/C{-6}) goes with a host and port only: an
    endpoint string names its own (C{tcp6:}).
    """
    if text.startswith("tls:"):
        tls, text = True, text[len("tls:") :]
    if text.startswith("ssl:"):
        return of_family(ssl_target(text), family)
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
        if not (closed and is_ipv6(host)):
            raise ClientError(USAGE, f"bad IPv6 address in {text!r}")
    else:
        host, _, port_text = text.rpartition(":")
        if ":" in host and not is_ipv6(host):
            host = ""  # an endpoint string such as tcp:HOST:PORT
    if host and port_text.isdigit() and "=" not in text:
        if needs_zone(host):
            example = f"[{host}%eth0]:{port_text}"
            raise ClientError(USAGE, missing_zone(host, example))
        target = Target(checked_host(host), checked_port(text, port_text), None, tls)
        return of_family(target, family)
    if tls:
        raise ClientError(USAGE, f"TLS needs HOST:PORT, not {text!r}")
    check_endpoint(text)
    if family is not None:
        raise ClientError(
            USAGE,
            f"-{family} goes with HOST:PORT, not the endpoint string {text!r} "
            "(which names its own: tcp:, tcp6:)",
        )
    return Target(None, None, text, False)


def with_source(
    target: Target, source: str | None, source_port: int | None = None
) -> Target:
    """C{target}, connected from the local address C{source} (C{--source})
    and the local port C{source_port} (C{--source-port}).

    The source's IP version is the connection's: a name is looked up to
    addresses of that version alone (as C{-4}/C{-6}), and an address of the
    other version is a usage error.
    """
    if source is None and source_port is None:
        return target
    if target.host is None:
        option = "--source" if source is not None else "--source-port"
        raise ClientError(
            USAGE, f"{option} goes with HOST:PORT, not the endpoint string "
            f"{target.endpoint!r}",
        )  # fmt: skip
    if source is None:
        return replace(target, source_port=source_port)
    try:
        version = source_family(source, target.family, "--source")
    except ValueError as e:
        raise ClientError(USAGE, str(e)) from None
    mismatch = family_mismatch(target.host, version)
    if mismatch is not None:
        raise ClientError(
            USAGE, f"--source {source} is an IPv{version} address, and "
            f"{target.host} is not",
        )  # fmt: skip
    return replace(target, family=version, source=source, source_port=source_port)


def with_tos(target: Target, text: str | None) -> Target:
    """C{target}, its packets marked with the TOS C{-T} names (L{parse_tos})."""
    if text is None:
        return target
    if target.host is None:
        raise ClientError(
            USAGE, f"-T goes with HOST:PORT, not the endpoint string "
            f"{target.endpoint!r}",
        )  # fmt: skip
    try:
        tos = parse_tos(text)
    except ValueError as e:
        raise ClientError(USAGE, str(e)) from None
    if not sockopts.supported():  # it leans on Twisted's tcp module
        raise ClientError(
            USAGE, f"-T needs a Twisted release echod was tested with "
            f"({TESTED_TWISTED[0].short()} to {TESTED_TWISTED[1].short()}); this "
            f"is {installed_twisted().short()}",
        )  # fmt: skip
    return replace(target, tos=tos)


def of_family(target: Target, family: int | None) -> Target:
    """C{target} limited to IP version C{family}; a usage error when its host
    is an address of the other version."""
    assert target.host is not None
    mismatch = family_mismatch(target.host, family)
    if mismatch is not None:
        raise ClientError(USAGE, mismatch)
    return replace(target, family=family)


def local_address(target: Target) -> tuple[str, int] | None:
    """The local address and port to bind before connecting, or None (any).

    A port alone binds the wildcard address (C{""}), which either IP version
    takes, so that a name may still resolve to both.
    """
    if target.source is None and target.source_port is None:
        return None
    return (target.source or "", target.source_port or 0)


def make_endpoint(
    reactor: Any, target: Target, settings: ClientTLS, timeout: float | None
) -> IStreamClientEndpoint:
    """The endpoint for C{target}, TLS-wrapped when asked."""
    if target.endpoint is not None:
        if empty_unix_path(target.endpoint):
            raise ClientError(
                USAGE, f"bad endpoint {target.endpoint!r}: no socket path"
            )
        try:
            endpoint: IStreamClientEndpoint = clientFromString(
                reactor, abstract_unix(target.endpoint, server=False)
            )
        except Exception as e:
            text = target.endpoint
            if str(e).startswith("Unknown endpoint type") and "=" not in text:
                # Most likely HOST:PORT with a port that is not a number.
                raise ClientError(
                    USAGE, f"bad target {text!r}: {TARGET_FORMS}"
                ) from None
            detail = parse_error_message(e)
            raise ClientError(USAGE, f"bad endpoint {text!r}: {detail}") from None
        return with_header(endpoint, target)
    assert target.host is not None and target.port is not None
    if target.proxy is not None:
        proxy = target.proxy
        to_proxy = replace(
            target,
            host=proxy.host,
            port=proxy.port,
            tls=proxy.scheme == "https",  # verified as the proxy's own options say
            proxy=None,
        )
        endpoint = TunnelEndpoint(
            reactor,
            make_endpoint(reactor, to_proxy, proxy.tls, timeout),
            proxy,
            target.host,
            target.port,
            timeout or 30,
            target.family,
        )
        return with_tls(endpoint, target, settings)
    # An IP literal needs no lookup (HostnameEndpoint would still ask the
    # resolver, in a thread, for every connection: a third of a short
    # connection's cost in echod bench --short); and HostnameEndpoint drops a
    # link-local address's zone (fe80::1%eth0), which then cannot be connected.
    bind = local_address(target)
    if target.tos is not None:
        reactor = PreparingReactor(reactor, partial(set_tos, value=target.tos))
    if is_ipv6(target.host):
        endpoint = TCP6ClientEndpoint(
            reactor, target.host, target.port, timeout or 30, bind
        )
    elif ip_version(target.host) == 4 and target.family in (None, 4):
        endpoint = TCP4ClientEndpoint(
            reactor, target.host, target.port, timeout or 30, bind
        )
    elif target.family is not None:
        flag = (
            f"-{target.family}"
            if target.source is None
            else f"--source {target.source}"
        )
        endpoint = OneFamilyEndpoint(
            reactor, target.host, target.port, timeout or 30, target.family, bind, flag
        )
    else:
        endpoint = HostnameEndpoint(
            reactor, target.host, target.port, timeout=timeout or 30, bindAddress=bind
        )
    return with_tls(endpoint, target, settings)


def with_tls(
    endpoint: IStreamClientEndpoint, target: Target, settings: ClientTLS
) -> IStreamClientEndpoint:
    """C{endpoint} with TLS to C{target}'s host over it, if the target asks
    (after the PROXY header, L{with_header})."""
    endpoint = with_header(endpoint, target)
    if not target.tls:
        return endpoint
    assert target.host is not None
    try:
        creator = connection_creator(target.host, settings)
    except TLSClientError as e:
        raise ClientError(USAGE, str(e)) from None
    return wrapClientTLS(creator, endpoint)


def with_header(
    endpoint: IStreamClientEndpoint, target: Target
) -> IStreamClientEndpoint:
    """C{endpoint}, each connection opening with a PROXY v1 header if the
    target asks (C{--haproxy-protocol})."""
    if not target.haproxy_protocol:
        return endpoint
    return HeaderFirstEndpoint(endpoint, target.haproxy_client_ip)


def with_haproxy_protocol(target: Target, asked: bool, client_ip: str | None) -> Target:
    """C{target}, its connections opening with a PROXY v1 header when
    C{--haproxy-protocol} or C{--haproxy-clientip} asks, as curl's."""
    client_ip = check_client_ip(client_ip)
    if not asked and client_ip is None:
        return target
    if target.proxy is not None:
        raise ClientError(
            USAGE, "--haproxy-protocol and --proxy cannot go together: the header "
            "would name the connection to the proxy",
        )  # fmt: skip
    return replace(target, haproxy_protocol=True, haproxy_client_ip=client_ip)


def with_proxy(target: Target, proxy: Proxy | None) -> Target:
    """C{target} reached through C{proxy} (C{--proxy}); a usage error for an
    endpoint string, which names its own way there."""
    if proxy is None:
        return target
    if target.host is None:
        raise ClientError(
            USAGE,
            f"--proxy goes with HOST:PORT, not the endpoint string {target.endpoint!r}",
        )
    mismatch = family_mismatch(proxy.host, target.family)
    if mismatch is not None:
        raise ClientError(USAGE, f"{mismatch} (the proxy)")
    return replace(target, proxy=proxy)


@implementer(IStreamClientEndpoint)
class OneFamilyEndpoint:
    """Twisted's C{HostnameEndpoint} over the addresses of one IP version
    (C{-4}, C{-6}); a name without any is "cannot resolve", saying which."""

    def __init__(
        self,
        reactor: Any,
        host: str,
        port: int,
        timeout: float,
        family: int,
        bind: tuple[str, int] | None = None,
        flag: str | None = None,
    ) -> None:
        self.family = family
        self.flag = flag or f"-{family}"
        """The option that asked for this IP version, for messages."""
        self.endpoint = HostnameEndpoint(
            ReactorOfOneFamily(reactor, family),
            host,
            port,
            timeout=timeout,
            bindAddress=bind,
        )

    def connect(self, protocolFactory: Any) -> defer.Deferred[Any]:
        """Connect to the first address of the family that answers."""

        def no_address(failure: Failure) -> None:
            failure.trap(error.DNSLookupError)
            raise ClientError(
                DNS,
                f"cannot resolve the name to an IPv{self.family} address ({self.flag})",
            )

        d: defer.Deferred[Any] = self.endpoint.connect(protocolFactory)
        return d.addErrback(no_address)


def is_same_address(address: str, host: str) -> bool:
    """Whether C{host} is the address C{address} (zones aside), not a name."""
    try:
        return ipaddress.ip_address(address.partition("%")[0]) == ipaddress.ip_address(
            host.partition("%")[0]
        )
    except ValueError:
        return False
