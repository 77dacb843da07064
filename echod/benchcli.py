"""``echod bench``: load-test any echo server, every byte verified.

Opens C{--connections} connections to the target (the targets and TLS
options of ``echod client``), runs ping-pong or stream traffic for
C{--duration} seconds (L{echod.loadgen}), or short connections one after
another (C{--short}, L{echod.shortload}), then prints requests per second,
MB/s, latency percentiles and what was verified. The exit code is 0 only if
every byte of every connection came back in order and every connection
ended with the server's EOF; 1 if any did not; a connection failure exits
with ``echod client``'s codes (4 refused, 6 timed out, 7 TLS, ...); Ctrl-C
shows the figures so far and exits 130.

It is a Python client: on a small machine it, not the server, may be the
limit. bench/run.py's C generator measures servers; this proves a path.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from echod.clienterrors import OK, USAGE, classify
from echod.fdlimit import raise_file_limit
from echod.loadgen import LoadResult, LoadRun, LoadSettings
from echod.reactor import install_if_unset
from echod.shortload import ShortConnectionRun
from echod.targetoptions import (
    add_target_arguments,
    parse_target_arguments,
    target_endpoint,
)

FAILED = 1
"""Exit code: some byte did not come back, or not in order."""
INTERRUPTED = 130
"""Exit code: stopped by SIGINT (Ctrl-C) or SIGTERM; the figures so far are shown."""
FD_RESERVE = 32
"""File descriptors kept free beside the connections."""
MAX_IN_FLIGHT = 2 << 30
"""Most bytes all connections may have sent and not yet had back (2 GiB).

A connection queues its whole message (ping-pong) or its window and a write
(stream) before the server answers; past this, a run would take the machine's
memory instead of measuring anything.
"""


def parser() -> argparse.ArgumentParser:
    """The options of ``echod bench``."""
    p = argparse.ArgumentParser(
        prog="echod bench",
        description="Load-test an echo server: many connections, every byte "
        "verified; prints req/s, MB/s and latency percentiles.",
        epilog="exit status: 0 every byte of every connection came back, in "
        "order; 1 some did not (each problem on a line); 2 bad option; 3 name "
        "not resolved; 4 refused; 5 unreachable; 6 timed out; 7 TLS failure; "
        "8 reset; 130 interrupted (the figures so far are shown)",
    )
    add_target_arguments(p)
    p.add_argument("-c", "--connections", type=int, default=10, help="default 10")
    p.add_argument(
        "-s",
        "--size",
        type=int,
        default=1024,
        help="bytes per message (ping-pong) or per write (stream); default 1024",
    )
    p.add_argument(
        "-d", "--duration", type=float, default=5.0, help="seconds; default 5"
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="stream (up to --window bytes in flight per connection) "
        "instead of ping-pong",
    )
    p.add_argument(
        "--short",
        action="store_true",
        help="short connections instead: each sends one message, half-closes, "
        "reads the echo to the server's close and closes, and a new one takes "
        "its place (-c at a time): connections a second",
    )
    p.add_argument(
        "--window",
        type=int,
        default=4 * 1024 * 1024,
        help="stream: bytes in flight per connection; default 4 MiB",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds for connecting, and for the last echoes after the end; "
        "default 10",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def check(args: argparse.Namespace, file_limit: int) -> str | None:
    """Why C{args} cannot run (the target's kind, the numbers), or None."""
    if args.target.startswith("udp:"):
        return (
            "echod bench loads stream echo servers (TCP, TLS, UNIX); for UDP "
            "echo, probe it with: echod client --udp --count N HOST:PORT"
        )
    if args.connections < 1 or args.size < 1 or args.window < 1:
        return "--connections, --size and --window must be at least 1"
    if args.short and args.stream:
        return "--short and --stream cannot go together"
    if args.short and args.source_port is not None:
        return (
            "--source-port gives one connection its port, and --short opens "
            "one after another: leave the port to the system"
        )
    if args.source_port is not None and args.connections > 1:
        return (
            f"--source-port gives one connection its port, and -c asks for "
            f"{args.connections}: use -c 1, or leave the port to the system"
        )
    if not (0 < args.duration < math.inf and 0 < args.timeout < math.inf):
        return "--duration and --timeout must be numbers of seconds more than 0"
    each = args.size + (args.window if args.stream else 0)
    if args.connections * each > MAX_IN_FLIGHT:
        return (
            f"{args.connections} connections with {each:,} bytes in flight each "
            f"would hold more than {MAX_IN_FLIGHT >> 20} MiB: lower --connections, "
            "--size or --window"
        )
    if file_limit and args.connections > file_limit - FD_RESERVE:
        return (
            f"--connections {args.connections} needs more file descriptors than "
            f"the limit allows ({file_limit}; see ulimit -n)"
        )
    return None


def microseconds(seconds: list[float | None]) -> list[float | None]:
    """Each of C{seconds} in microseconds to a tenth (None stays None)."""
    return [None if value is None else round(value * 1e6, 1) for value in seconds]


def figures(result: LoadResult, label: str) -> dict[str, Any]:
    """The result as plain figures (the --json output)."""
    s = result.settings
    elapsed = result.elapsed or s.duration

    p50, p99, p999, most = microseconds(result.percentiles(0.5, 0.99, 0.999, 1.0))
    connect_p50, connect_most = microseconds(result.connect_times.percentiles(0.5, 1.0))
    handshake_p50, handshake_most = microseconds(
        result.handshake_times.percentiles(0.5, 1.0)
    )
    mode = "short" if s.short else "stream" if s.stream else "pingpong"
    return {
        "target": label,
        "mode": mode,
        "connections": s.connections,
        "size": s.size,
        "seconds": round(elapsed, 3),
        "requests": result.requests,
        "req_per_s": round(result.requests / elapsed, 1),
        "mb_per_s": round(result.bytes_in_time / elapsed / 1e6, 2),
        "p50_us": p50,
        "p99_us": p99,
        "p999_us": p999,
        "max_us": most,
        "connect_p50_us": connect_p50,
        "connect_max_us": connect_most,
        "handshake_p50_us": handshake_p50,
        "handshake_max_us": handshake_most,
        "bytes_sent": result.bytes_sent,
        "bytes_verified": result.bytes_verified,
        "clean_connections": result.clean,
        "opened_connections": result.opened if s.short else s.connections,
        "mismatches": [vars(m) for m in result.mismatches],
        "problems": result.problems,
        "ok": result.ok,
    }


def report(f: dict[str, Any]) -> str:
    """The result for a person: a few aligned lines."""
    if f["mode"] == "short":
        lines = [
            f"echod bench: {f['target']}, short connections, {f['connections']} at a "
            f"time x {f['size']:,} B, {f['seconds']:g} s",
            f"connections {f['requests']:,} ({f['req_per_s']:,.0f}/s)",
        ]
        if f["p50_us"] is not None:
            lines.append(
                f"each       p50 {f['p50_us']:,.0f} µs, p99 {f['p99_us']:,.0f} µs, "
                f"p99.9 {f['p999_us']:,.0f} µs, max {f['max_us']:,.0f} µs (connect "
                "to the server's close)"
            )
    else:
        lines = [
            f"echod bench: {f['target']}, {f['mode']}, {f['connections']} "
            f"connections x {f['size']:,} B, {f['seconds']:g} s"
        ]
    if f["mode"] == "pingpong":
        lines.append(f"requests   {f['requests']:,} ({f['req_per_s']:,.0f}/s)")
        if f["p50_us"] is not None:
            lines.append(
                f"latency    p50 {f['p50_us']:,.0f} µs, p99 {f['p99_us']:,.0f} µs, "
                f"p99.9 {f['p999_us']:,.0f} µs, max {f['max_us']:,.0f} µs"
            )
    if f["connect_p50_us"] is not None:
        steps = (
            "connect"
            if f["target"].startswith("unix:")
            else "name lookup and TCP connect"
        )
        together = "" if f["mode"] == "short" else f"; all {f['connections']} at once"
        lines.append(
            f"connect    p50 {f['connect_p50_us']:,.0f} µs, max "
            f"{f['connect_max_us']:,.0f} µs ({steps}{together})"
        )
    if f["handshake_p50_us"] is not None:
        lines.append(
            f"handshake  p50 {f['handshake_p50_us']:,.0f} µs, max "
            f"{f['handshake_max_us']:,.0f} µs (TLS, from the TCP connect)"
        )
    lines.append(f"throughput {f['mb_per_s']:,.2f} MB/s each way")
    verdict = (
        "every byte back, in order" if f["ok"] else "NOT every byte back (see below)"
    )
    lines.append(
        f"verified   {f['bytes_verified']:,} of {f['bytes_sent']:,} bytes sent: "
        f"{verdict}; {f['clean_connections']:,}/{f['opened_connections']:,} "
        "connections ended cleanly"
    )
    for m in f["mismatches"]:
        lines.append(
            f"mismatch   connection {m['connection']} at byte {m['offset']:,}: "
            f"expected 0x{m['expected']:02x}, got 0x{m['got']:02x}"
        )
    lines += [f"problem    {p}" for p in f["problems"]]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run ``echod bench``; the result is the exit code."""
    args = parse_target_arguments(parser(), argv)
    if isinstance(args, int):
        return args
    complaint = check(args, raise_file_limit())
    if complaint is not None:
        sys.stderr.write(f"echod bench: error: {complaint}\n")
        return USAGE
    install_if_unset()  # echod's lean reactor, as the daemon's
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    resolved = target_endpoint(args, reactor, "echod bench")
    if isinstance(resolved, int):
        return resolved
    target, endpoint = resolved
    load = LoadSettings(
        connections=args.connections,
        size=args.size,
        duration=args.duration,
        stream=args.stream,
        window=args.window,
        drain_timeout=args.timeout,
        short=args.short,
    )

    def connect(factory: Factory) -> Any:
        d = endpoint.connect(factory)
        d.addTimeout(args.timeout, reactor)
        return d

    outcome: list[int] = []
    runs: list[LoadRun | ShortConnectionRun] = []

    def show(result: LoadResult) -> None:
        f = figures(result, target.label())
        print(json.dumps(f) if args.json else report(f))

    def finished(result: LoadResult) -> None:
        show(result)
        outcome.append(OK if result.ok else FAILED)

    def failed(failure: Failure) -> None:
        e = classify(failure)
        sys.stderr.write(f"echod bench: {target.label()}: {e}\n")
        outcome.append(e.code)

    def go() -> None:
        kind = ShortConnectionRun if args.short else LoadRun
        runs.append(kind(load, reactor, connect, now=time.monotonic))
        d = runs[0].start()
        d.addCallbacks(finished, failed)
        d.addBoth(lambda _: None if interrupted else reactor.stop())

    interrupted: list[bool] = []

    def shutting_down() -> None:
        if not outcome:  # stopped by a signal (Ctrl-C) before the end
            interrupted.append(True)
            if runs:
                runs[0].interrupt()

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    reactor.callWhenRunning(go)
    reactor.run()
    if interrupted or not outcome:
        if runs and runs[0].started:
            show(runs[0].result)
        sys.stderr.write("echod bench: interrupted\n")
        return INTERRUPTED
    return outcome[0]
