#!/usr/bin/env python3
"""In-process microbenchmarks behind docs/PERFORMANCE.md (lessons 4, 7 and 11)
and the closing notes.

    python bench/micro.py

1. a reactor turn with no I/O: Twisted's stock loop body against echod's lean
   loop (LeanEPollReactor._run_turns), and an empty poll for scale;
2. the Python of one readable event on a write-through echo connection, with
   the socket's recv and send replaced by C built-ins: Twisted's doRead chain
   against a fused read-and-echo call (the refinement measured and not kept);
3. send + recv of 1 KiB over loopback by read size, in a fresh process
   (glibc's mmap threshold at its start value) and after one large block was
   freed (the threshold raised, as twistd's start-up leaves it);
4. one connection's close line as twistd's text log makes it: Twisted's
   formatter against echod's ClassicText (lesson 11; the same text);
5. an accepted connection's protocol built by the echo factory, directly and
   through a listener's ListenerFactory (what the per-listener count costs).

Warm caches, one core: these figures are lower bounds of what a request costs
a daemon that sleeps between requests. Best of 5 repetitions each.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable

REPEATS = 5


def best(run: Callable[[int], None], count: int) -> float:
    """Microseconds per call of the fastest of REPEATS runs of C{run(count)}."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run(count)
        times.append(time.perf_counter() - started)
    return min(times) / count * 1e6


def reactor_turns() -> None:
    from twisted.internet.base import _topHandler

    from echod.reactor import LeanEPollReactor

    reactor = LeanEPollReactor()
    reactor.callLater(3600, lambda: None)  # a pending timer, as the idle sweeper
    reactor.running = reactor._started = True

    def stock(count: int) -> None:
        for _ in range(count):
            with _topHandler:
                reactor.runUntilCurrent()
                t2 = reactor.timeout()
                reactor.doIteration(reactor.running and t2 and 0)

    class EnoughTurnsError(Exception):
        pass

    def lean(count: int) -> None:
        left = [count]
        real = reactor.doPoll

        def poll(timeout: float | None) -> None:
            real(0)
            left[0] -= 1
            if not left[0]:
                raise EnoughTurnsError

        reactor.doPoll = poll
        try:
            reactor._run_turns()
        except EnoughTurnsError:
            pass
        finally:
            del reactor.doPoll

    def empty(count: int) -> None:
        for _ in range(count):
            reactor.doPoll(0)

    n = 100_000
    print("1. a reactor turn without I/O, µs")
    print(f"   stock loop body    {best(stock, n):.3f}")
    print(f"   lean loop          {best(lean, n):.3f}  (with a Python poll wrapper)")
    print(f"   the poll alone     {best(empty, n):.3f}")


def event_path() -> None:
    from twisted.internet import main

    from echod.echo import EchoFactory
    from echod.reactor import LeanEPollReactor
    from echod.settings import EchoSettings
    from echod.stats import EchoStats
    from echod.writethrough import BUFFER_SIZE, WriteThroughEchoProtocol

    reactor = LeanEPollReactor()
    factory = EchoFactory(
        EchoSettings(), EchoStats(), reactor, WriteThroughEchoProtocol
    )
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    for _ in range(50):
        reactor.iterate(0)
    [protocol] = factory.connections
    transport = protocol.transport
    message = b"x" * 1024
    real_socket = transport.socket

    class Stub:
        """recv and send as C built-ins: only the Python around them is timed."""

        recv = {BUFFER_SIZE: message}.get

    transport.socket = Stub()
    protocol._send = len

    def fused() -> object:
        try:
            data = Stub.recv(BUFFER_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not data:
            return main.CONNECTION_DONE
        protocol.dataReceived(data)
        return None

    def chain(count: int) -> None:
        do_read = transport.doRead
        for _ in range(count):
            do_read()

    def fused_calls(count: int) -> None:
        for _ in range(count):
            fused()

    def nothing(count: int) -> None:
        for _ in range(count):
            pass

    n = 500_000
    loop = best(nothing, n)
    print("2. Python of one readable event (socket calls stubbed), µs")
    print(f"   Twisted's doRead chain  {best(chain, n) - loop:.3f}")
    print(f"   fused read-and-echo     {best(fused_calls, n) - loop:.3f}")
    transport.socket = real_socket
    client.close()
    port.stopListening()


RECV_PROBE = """
import socket, sys, time
if sys.argv[1] == "raised":
    block = bytes(4 << 20)
    del block  # glibc raises its mmap threshold when a mmapped block is freed
listener = socket.create_server(("127.0.0.1", 0))
a = socket.create_connection(listener.getsockname())
b, _ = listener.accept()
a.setblocking(False)
b.setblocking(False)
message = b"x" * 1024
for size in (262144, 65536, 4096):
    times = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20000):
            a.send(message)
            b.recv(size)
        times.append(time.perf_counter() - started)
    print(f"{size}:{min(times) / 20000 * 1e6:.2f}")
buffer = bytearray(262144)
view = memoryview(buffer)
times = []
for _ in range(5):
    started = time.perf_counter()
    for _ in range(20000):
        a.send(message)
        data = bytes(view[: b.recv_into(buffer)])
    times.append(time.perf_counter() - started)
print(f"into:{min(times) / 20000 * 1e6:.2f}")
"""


def recv_sizes() -> None:
    print("3. send + recv of 1 KiB over loopback, by read size, µs")
    for state in ("fresh", "raised"):
        out = subprocess.run(
            [sys.executable, "-c", RECV_PROBE, state],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cells = ", ".join(
            f"{int(size) // 1024} KiB {us}" if size.isdigit() else f"recv_into {us}"
            for size, us in (line.split(":") for line in out.split())
        )
        print(f"   {state:6s}  {cells}")


def log_lines() -> None:
    """Lesson 11: one connection's close line, made by Twisted's text log
    formatter and by echod's (the same text)."""
    import time as clock

    from twisted.logger import (
        LogLevel,
        formatEventAsClassicLogText,
        formatTime,
        timeFormatRFC3339,
    )

    from echod.logs import ClassicText

    event = {
        "log_format": "closed {peer} in={bytes_in} out={bytes_out} "
        "duration={duration:.3f}s reason={reason}",
        "log_time": clock.time(),
        "log_level": LogLevel.info,
        "log_namespace": "echod",
        "peer": "127.0.0.1:45880",
        "bytes_in": 64,
        "bytes_out": 64,
        "duration": 0.000123,
        "reason": "eof",
        "event": "closed",
    }
    classic = ClassicText()

    def twisted_line(when: float | None) -> str:
        return formatTime(when, timeFormatRFC3339)

    assert classic(event) == formatEventAsClassicLogText(event, formatTime=twisted_line)

    def theirs(count: int) -> None:
        for _ in range(count):
            formatEventAsClassicLogText(event, formatTime=twisted_line)

    def ours(count: int) -> None:
        for _ in range(count):
            classic(event)

    n = 20_000
    print("4. a connection's close line, formatted (the same text), µs")
    print(f"   Twisted's formatter   {best(theirs, n):.3f}")
    print(f"   echod's ClassicText   {best(ours, n):.3f}")


def listener_accept() -> None:
    """What counting per listener adds to an accept: the echo factory's
    buildProtocol, called directly and through a listener's ListenerFactory
    (echod_listener_connections_total)."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import MemoryReactorClock

    from echod.echo import EchoFactory, ListenerFactory
    from echod.settings import EchoSettings
    from echod.stats import EchoStats

    factory = EchoFactory(EchoSettings(), EchoStats(), MemoryReactorClock())
    door = ListenerFactory(factory, "tcp:10000")
    peer = IPv4Address("TCP", "127.0.0.1", 40000)

    def accepts(through: EchoFactory | ListenerFactory) -> Callable[[int], None]:
        def run(count: int) -> None:
            for _ in range(count):
                protocol = through.buildProtocol(peer)
                factory.limits.release(protocol.key)  # type: ignore[attr-defined]

        return run

    n = 200_000
    print("5. an accepted connection's protocol built, µs")
    print(f"   the echo factory        {best(accepts(factory), n):.3f}")
    print(f"   through the listener's  {best(accepts(door), n):.3f}")


def main() -> None:
    reactor_turns()
    event_path()
    recv_sizes()
    log_lines()
    listener_accept()


if __name__ == "__main__":
    main()
