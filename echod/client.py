"""``echod client``: poke any TCP, TLS or UDP service, echo or not.

Three modes, chosen by how it is run (and C{-z}, as nc's: connect, close):

- on a terminal: an ``input>`` prompt with line editing and history
  (readline). Replies are printed as they arrive, above the line being typed,
  which is then redrawn; ``exit`` or Ctrl-D quits (Ctrl-D first half-closes
  and prints what is still coming);
- not on a terminal: a pipe like ``nc -N``: stdin goes to the peer byte for
  byte, the peer's bytes to stdout, both with backpressure; at the end of
  stdin the connection is half-closed; it exits when the peer closes;
- ``--count N``: a probe that sends N messages, checks each echo and prints
  round-trip times and a summary, like ping.

The modes live in L{echod.interactive}, L{echod.pipe}, L{echod.probe} and
L{echod.zeroio}; over UDP (C{--udp}, L{echod.udpclient}) each message or line
is a datagram. Exit codes: L{echod.clienterrors}.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from echod import udpclient
from echod.clienterrors import OK, USAGE, ClientError, classify
from echod.interactive import run_interactive
from echod.pipe import StdinToPeer, run_pipe
from echod.probe import Probe
from echod.reactor import install_if_unset
from echod.session import Session, connected_line, reached, when_usable
from echod.settings import MAX_UDP_PAYLOAD
from echod.target import Target, parse_target, with_source, with_tos
from echod.targetoptions import (
    add_target_arguments,
    parse_target_arguments,
    target_endpoint,
    tls_options_given,
)
from echod.zeroio import run_zero


def tls_said(session: Any, insecure: bool) -> str:
    """What C{-v} adds to the connected line once the handshake is done:
    C{, TLS verified (TLSv1.3, TLS_AES_256_GCM_SHA384)}, or C{, TLS not
    verified (TLSv1.2, ...; --insecure)}."""
    said = ", TLS not verified" if insecure else ", TLS verified"
    why = "; --insecure" if insecure else ""
    try:
        handle = session.transport.getHandle()
        version, cipher = handle.get_protocol_version_name(), handle.get_cipher_name()
    except Exception:  # a transport without them: say less
        return said + (" (--insecure)" if insecure else "")
    return f"{said} ({version}, {cipher}{why})"


def parser() -> argparse.ArgumentParser:
    """The options of ``echod client``."""
    p = argparse.ArgumentParser(
        prog="echod client",
        description="Talk to a TCP, TLS or UDP service: a prompt on a terminal, a "
        "pipe otherwise (like nc -N), or an echo probe with --count.",
    )
    add_target_arguments(p, nc_letters=True)
    p.add_argument(
        "-u",
        "--udp",
        action="store_true",
        help="UDP (also udp:HOST:PORT): each line, or each probe message, one datagram",
    )
    p.add_argument(
        "-w",
        "--timeout",
        type=float,
        default=None,
        help="seconds for connecting, and for an idle peer or stdout (pipe mode; "
        "as nc -w)",
    )
    p.add_argument(
        "-z",
        "--zero-io",
        action="store_true",
        help="connect (and finish the TLS handshake), send nothing, close: "
        "exit 0 if the port answers (as nc -z)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say on stderr where the connection went, and from where (as nc -v)",
    )
    p.add_argument(
        "-C",
        "--crlf",
        action="store_true",
        help="end each line typed or piped with CR LF, as SMTP, HTTP and most "
        "line protocols want: an LF without a CR before it goes as CR LF (as "
        "ncat -C)",
    )
    p.add_argument("--count", type=int, help="probe: send this many messages")
    p.add_argument("--size", type=int, default=64, help="probe: bytes per message")
    p.add_argument(
        "--interval", type=float, default=0.0, help="probe: seconds between messages"
    )
    return p


MAX_PROBE_SIZE = 64 << 20
"""The largest probe message (64 MiB): it is built, and checked, in memory."""


def check_numbers(args: argparse.Namespace) -> str | None:
    """Why the numbers in C{args} cannot be used, or None."""
    if args.count is not None and (args.count < 1 or args.size < 1):
        return "--count and --size must be at least 1"
    if args.size > MAX_PROBE_SIZE:
        return f"--size {args.size}: at most {MAX_PROBE_SIZE} bytes (64 MiB)"
    if args.size > MAX_UDP_PAYLOAD and is_udp(args):
        return (
            f"--size {args.size}: a UDP datagram holds at most {MAX_UDP_PAYLOAD} bytes"
        )
    if args.timeout is not None and not 0 < args.timeout < math.inf:
        return "--timeout must be a number of seconds more than 0"
    if not 0 <= args.interval < math.inf:
        return "--interval must be a number of seconds, 0 or more"
    if args.zero_io and is_udp(args):
        return (
            "-z proves a connection, and UDP has none: probe a UDP echo with "
            "--udp --count 1"
        )
    if args.zero_io and args.count is not None:
        return "-z sends nothing, and --count sends messages: give one"
    if args.crlf and (args.zero_io or args.count is not None):
        given = "-z" if args.zero_io else "--count"
        return f"-C ends the lines typed or piped, and {given} sends none"
    return None


def is_udp(args: argparse.Namespace) -> bool:
    """Whether ``echod client`` is to speak UDP: C{--udp}, or C{udp:HOST:PORT}."""
    return bool(args.udp) or args.target.startswith("udp:")


def udp_target(args: argparse.Namespace) -> Target:
    """The target of ``echod client --udp`` (or ``udp:HOST:PORT``): no TLS."""
    tls = args.tls or args.target.startswith("udp:tls:")
    given = ["--tls"] * bool(tls) + tls_options_given(args)
    if args.proxy is not None or args.nc_proxy is not None:
        raise ClientError(
            USAGE, "--proxy tunnels TCP: a UDP target goes direct (no SOCKS5 UDP)"
        )
    if args.haproxy_protocol or args.haproxy_clientip is not None:
        raise ClientError(
            USAGE, "--haproxy-protocol goes with TCP: a PROXY v1 header has no UDP"
        )
    if given:
        raise ClientError(
            USAGE, f"{', '.join(given)}: no TLS over UDP (echod has no DTLS)"
        )
    text = args.target.removeprefix("udp:")
    target = with_source(
        parse_target(text, False, args.family), args.source, args.source_port
    )
    target = with_tos(target, args.tos)
    if target.endpoint is not None:
        raise ClientError(
            USAGE, f"bad UDP target {text!r}: expected HOST:PORT or [IPv6]:PORT"
        )
    return target


def main(argv: Sequence[str]) -> int:
    """Run ``echod client``; the result is the exit code."""
    args = parse_target_arguments(parser(), argv)
    if isinstance(args, int):
        return args
    complaint = check_numbers(args)
    if complaint is not None:
        sys.stderr.write(f"echod client: error: {complaint}\n")
        return USAGE
    install_if_unset()  # echod's lean reactor, as the daemon's
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    udp = is_udp(args)
    connect: Callable[[], defer.Deferred[Any]]
    if udp:
        try:
            target = udp_target(args)
        except ClientError as e:
            sys.stderr.write(f"echod client: error: {e}\n")
            return e.code
        host, port, family = target.host, target.port, target.family
        assert host is not None and port is not None

        def connect() -> defer.Deferred[Any]:
            return defer.ensureDeferred(
                udpclient.connect_udp(
                    reactor,
                    host,
                    port,
                    family,
                    target.source,
                    target.source_port,
                    target.tos,
                )
            )

    else:
        resolved = target_endpoint(args, reactor, "echod client")
        if isinstance(resolved, int):
            return resolved
        target, endpoint = resolved

        def connect() -> defer.Deferred[Any]:
            return endpoint.connect(Factory.forProtocol(Session))

    interactive = args.count is None and not args.zero_io and sys.stdin.isatty()
    result: list[int] = []
    connected = threading.Event()
    session_box: list[Session] = []

    def go() -> defer.Deferred[Any]:
        d = connect()
        if args.timeout:
            d.addTimeout(args.timeout, reactor)
        d.addCallback(started)
        d.addErrback(failed)
        return d

    def started(session: Any) -> Any:
        session_box.append(session)
        if args.verbose:
            line = connected_line(target, session, udp)
            if target.tls and not udp:
                when_usable(session, True).addCallbacks(
                    lambda _: sys.stderr.write(
                        f"echod client: {line}{tls_said(session, args.insecure)}\n"
                    ),
                    lambda _: None,  # the mode reports the failure
                )
            else:
                sys.stderr.write(f"echod client: {line}\n")
        if args.zero_io:
            d = run_zero(session, target, args.timeout, reactor)
        elif args.count is not None:
            d = (udpclient.DatagramProbe if udp else Probe)(
                reactor,
                session,
                target.label(),
                args.count,
                args.size,
                args.interval,
                args.timeout or 5.0,
                reached(target, session),
            ).start()
        elif interactive:
            connected.set()
            return None
        else:
            bridge = udpclient.LinesToPeer if udp else StdinToPeer
            d = run_pipe(reactor, session, args.timeout, bridge, args.crlf)
        d.addCallback(result.append)
        d.addBoth(lambda _: reactor.stop())
        return None

    def failed(failure: Failure) -> None:
        e = classify(failure)
        sys.stderr.write(f"echod client: {target.label()}: {e}\n")
        result.append(e.code)
        connected.set()
        reactor.stop()

    reactor.callWhenRunning(go)
    if interactive:
        thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
        )
        thread.start()
        connected.wait()
        if result:
            thread.join(5)
            return result[0]
        session = session_box[0]
        ending = b"\r\n" if args.crlf else b"\n"
        code = run_interactive(reactor, session, reached(target, session), ending)
        reactor.callFromThread(reactor.stop)
        thread.join(5)
        return code
    reactor.run()
    return result[0] if result else OK
