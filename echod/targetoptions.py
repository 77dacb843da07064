"""The target and TLS options shared by ``echod client`` and ``echod bench``:
nc's C{HOST PORT}, C{-4}/C{-6}, C{--source}, C{--tls} and its files, and the
endpoint they make."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint

from echod.cli import (
    add_family_options,
    is_port,
    options_apply,
    parse_arguments,
    port_number,
)
from echod.clienterrors import USAGE, ClientError
from echod.proxytunnel import (
    Proxy,
    checked_credentials,
    parse_proxy,
    with_proxy_tls,
)
from echod.target import (
    Target,
    is_ipv6,
    make_endpoint,
    parse_target,
    with_haproxy_protocol,
    with_proxy,
    with_source,
    with_tos,
)
from echod.tlsclient import TLS_VERSIONS, ClientTLS

DEFAULT_TARGET = "localhost:10000"


def add_target_arguments(p: argparse.ArgumentParser, nc_letters: bool = False) -> None:
    """The target and its TLS options, shared by ``echod client`` and ``bench``.

    C{nc_letters}: C{--source} is also nc's C{-s} (``bench`` has C{-s} for
    its size).
    """
    p.add_argument(
        "target",
        nargs="?",
        default=DEFAULT_TARGET,
        help="HOST:PORT, tls:HOST:PORT, or a Twisted client endpoint "
        f"(default {DEFAULT_TARGET})",
    )
    p.add_argument(
        "port",
        nargs="?",
        help="the port, when TARGET is a host alone: HOST PORT, as nc takes them",
    )
    add_family_options(p, long=False)
    p.add_argument(
        *(["-s"] if nc_letters else []),
        "--source",
        metavar="ADDRESS",
        help="connect from this local address (as nc -s); its IP version is "
        "the connection's",
    )
    p.add_argument(
        "-p",
        "--source-port",
        metavar="PORT",
        type=port_number,
        help="connect from this local port (as nc -p)",
    )
    p.add_argument(
        "-T",
        "--tos",
        metavar="TOS",
        help="mark the packets with this IP TOS (IPv6 traffic class), as nc -T: "
        "ef, af11 ... af43, cs0 ... cs7, lowdelay, throughput, reliability, "
        "lowcost, or a number (0x for hex)",
    )
    p.add_argument(
        "--proxy",
        metavar="URL",
        help="through this proxy: http://[USER:PASSWORD@]HOST[:PORT] (CONNECT; a "
        "bare HOST:PORT too), socks5://[USER:PASSWORD@]HOST[:PORT] or socks5h://"
        "[USER:PASSWORD@]HOST[:PORT] (the proxy looks the name up), socks4://"
        "[USER@]HOST[:PORT] (IPv4), as curl -x",
    )
    add_proxy_tls_arguments(p)
    add_haproxy_arguments(p)
    if nc_letters:
        p.add_argument(
            "-x",
            dest="nc_proxy",
            metavar="HOST:PORT",
            help="nc's -x: through this proxy, SOCKS5 unless -X connect says HTTP "
            "(the same as --proxy socks5h://HOST:PORT)",
        )
        p.add_argument(
            "-X",
            dest="nc_proxy_protocol",
            metavar="PROTOCOL",
            help="nc's -X: 5 (SOCKS5, the default), 4 (SOCKS4) or connect "
            "(HTTP CONNECT)",
        )
    p.add_argument("--tls", action="store_true", help="connect with TLS (verified)")
    p.add_argument(
        "--cacert", type=Path, help="trust this CA file instead of the system's"
    )
    p.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    p.add_argument("--key", type=Path, help="client key (mutual TLS)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate (warns)",
    )
    add_tls_version_arguments(p)


def add_proxy_tls_arguments(p: Any, user_letter: str | None = None) -> None:
    """curl's C{--proxy-user USER[:PASSWORD]} (C{-U} with C{user_letter}),
    C{--proxy-cacert FILE} and C{--proxy-insecure}, on C{p}."""
    names = ["--proxy-user"] if user_letter is None else [user_letter, "--proxy-user"]
    p.add_argument(
        *names,
        metavar="USER[:PASSWORD]",
        help="the proxy's credentials, as curl's (the password asked on the "
        "terminal when not given; no percent-encoding, unlike in the URL)",
    )
    p.add_argument(
        "--proxy-cacert",
        type=Path,
        metavar="FILE",
        help="trust this CA file for an https:// proxy's certificate, as curl's",
    )
    p.add_argument(
        "--proxy-insecure",
        action="store_true",
        help="do not verify an https:// proxy's certificate (warns), as curl's",
    )


def add_haproxy_arguments(p: Any) -> None:
    """curl's C{--haproxy-protocol} and C{--haproxy-clientip IP}, on C{p}."""
    p.add_argument(
        "--haproxy-protocol",
        action="store_true",
        help="open each connection with a PROXY protocol v1 header of its own "
        "addresses, as a load balancer would (before TLS), as curl's",
    )
    p.add_argument(
        "--haproxy-clientip",
        metavar="IP",
        help="the header's source address instead (implies --haproxy-protocol)",
    )


def add_tls_version_arguments(p: Any) -> None:
    """curl's C{--tlsv1.2}, C{--tlsv1.3} (the oldest version offered; the
    last given wins) and C{--tls-max VERSION}, on C{p} (a parser or group)."""
    for version in TLS_VERSIONS:
        p.add_argument(
            f"--tlsv{version}",
            dest="tls_min",
            action="store_const",
            const=version,
            help=f"TLS {version} or later, as curl's",
        )
    p.add_argument(
        "--tls-max",
        choices=list(TLS_VERSIONS),
        metavar="VERSION",
        help="TLS VERSION (1.2 or 1.3) at most, as curl's",
    )


NC_PROXY_SCHEMES = {"5": "socks5h", "4": "socks4", "connect": "http"}
"""nc's C{-X} protocols, as the schemes of C{--proxy}. nc's SOCKS5 gives the
proxy the name to look up, as C{socks5h://} does; its SOCKS4 an IPv4
address looked up here, as C{socks4://}."""


def proxy_of(args: argparse.Namespace) -> Proxy | None:
    """The proxy C{--proxy}, or nc's C{-x} and C{-X}, ask for, verified as
    C{--proxy-cacert} and C{--proxy-insecure} say; L{ClientError} (usage)
    for both at once or a protocol echod does not speak."""
    proxy = with_proxy_user(proxy_asked(args), getattr(args, "proxy_user", None))
    return with_proxy_tls(
        proxy,
        getattr(args, "proxy_cacert", None),
        getattr(args, "proxy_insecure", False),
    )


def with_proxy_user(proxy: Proxy | None, text: str | None) -> Proxy | None:
    """C{proxy} with C{--proxy-user}'s credentials, which replace the URL's
    (curl's C{-U}): C{USER:PASSWORD}, split at the first colon, or C{USER},
    whose password is asked on the terminal (not for SOCKS4, which has none);
    L{ClientError} (usage) without a proxy, or a terminal to ask on."""
    if text is None:
        return proxy
    if proxy is None:
        raise ClientError(USAGE, "--proxy-user applies to --proxy")
    user, colon, password = text.partition(":")
    if not colon and proxy.scheme != "socks4":
        if not sys.stdin.isatty():
            raise ClientError(
                USAGE,
                f"--proxy-user {user}: no password, and no terminal to ask for it: "
                "give --proxy-user USER:PASSWORD",
            )
        try:
            password = getpass.getpass(f"Enter proxy password for user '{user}':")
        except (EOFError, KeyboardInterrupt):
            raise ClientError(USAGE, "no proxy password given") from None
        colon = ":"
    return checked_credentials(proxy, user, password if colon else None)


def proxy_asked(args: argparse.Namespace) -> Proxy | None:
    """The proxy of C{--proxy}, or of nc's C{-x} and C{-X}."""
    nc_proxy = getattr(args, "nc_proxy", None)
    protocol = getattr(args, "nc_proxy_protocol", None)
    if protocol is not None and nc_proxy is None:
        raise ClientError(USAGE, "-X names the protocol of the proxy -x gives")
    if nc_proxy is None:
        return parse_proxy(args.proxy) if args.proxy is not None else None
    if args.proxy is not None:
        raise ClientError(USAGE, "--proxy and -x cannot go together")
    scheme = NC_PROXY_SCHEMES.get((protocol or "5").lower())
    if scheme is None:
        raise ClientError(
            USAGE, f"-X {protocol}: echod speaks 5 (SOCKS5), 4 (SOCKS4) and "
            "connect (HTTP)",
        )  # fmt: skip
    if "://" in nc_proxy:
        raise ClientError(USAGE, f"-x takes HOST:PORT, not a URL: --proxy {nc_proxy}")
    return parse_proxy(f"{scheme}://{nc_proxy}")


def joined_target(target: str, port: str | None) -> str:
    """nc's C{HOST PORT} as one target: C{HOST:PORT}, C{[IPv6]:PORT}.

    C{target} keeps a C{udp:} or C{tls:} in front; a target that already has
    its port, or is an endpoint string, is refused (L{ClientError}, usage).
    """
    if port is None:
        return target
    if not (port.isdigit() and is_port(int(port))):
        raise ClientError(USAGE, f"bad port {port!r}: a port is a number, 1 to 65535")
    host, prefix = target, ""
    for kind in ("udp:", "tls:"):
        if host.startswith(kind):
            host, prefix = host[len(kind) :], prefix + kind
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if is_ipv6(host.partition("%")[0]):
        return f"{prefix}[{host}]:{port}"
    if not host or ":" in host or "=" in host:
        raise ClientError(
            USAGE,
            f"{target!r} and the port {port}: give HOST PORT, or HOST:PORT "
            "alone (an endpoint string names its own port)",
        )
    return f"{prefix}{host}:{port}"


def parse_target_arguments(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> argparse.Namespace | int:
    """The options of a parser with L{add_target_arguments}, C{HOST PORT}
    joined into C{args.target}; or the exit code once the reason is out."""
    args = parse_arguments(parser, argv)
    if isinstance(args, int):
        return args
    try:
        args.target = joined_target(args.target, args.port)
    except ClientError as e:
        sys.stderr.write(f"{parser.prog}: error: {e}\n")
        return e.code
    return args


def tls_options_given(args: argparse.Namespace) -> list[str]:
    """The TLS options of L{add_target_arguments} that C{args} gives."""
    options = [
        ("--cacert", args.cacert),
        ("--cert", args.cert),
        ("--key", args.key),
        ("--insecure", args.insecure),
        (f"--tlsv{args.tls_min}", args.tls_min),
        ("--tls-max", args.tls_max),
    ]
    return [option for option, value in options if value]


def check_tls_options_apply(args: argparse.Namespace, target: Target) -> None:
    """Refuse TLS options for a target without TLS: they would be ignored,
    and the connection would be in the clear where TLS was asked for."""
    given = tls_options_given(args)
    if given and not target.tls:
        raise ClientError(
            USAGE,
            f"{options_apply(given)} to TLS targets: add --tls, or write tls:HOST:PORT",
        )


def client_tls(args: argparse.Namespace) -> ClientTLS:
    """The client TLS settings the TLS options of C{args} ask for."""
    return ClientTLS(
        args.cacert, args.cert, args.key, args.insecure, args.tls_min, args.tls_max
    )


def target_endpoint(
    args: argparse.Namespace, reactor: Any, prog: str
) -> tuple[Target, IStreamClientEndpoint] | int:
    """The target of L{add_target_arguments} and its endpoint.

    Or the exit code, once the reason is written to stderr in one line.
    """
    settings = client_tls(args)
    try:
        target = parse_target(args.target, args.tls, args.family)
        target = with_source(target, args.source, args.source_port)
        target = with_tos(target, args.tos)
        target = with_proxy(target, proxy_of(args))
        target = with_haproxy_protocol(
            target, args.haproxy_protocol, args.haproxy_clientip
        )
        check_tls_options_apply(args, target)
        return target, make_endpoint(reactor, target, settings, args.timeout)
    except ClientError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return e.code
