"""Unit tests of echod.reactor: the lean epoll dispatch behaves as the stock one."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import capturedLogs

from echod.reactor import LeanEPollReactor, describe, enable_busy_poll
from tests.daemon import DaemonStarter


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if data == b"boom":
            raise RuntimeError("handler failed")
        self.transport.write(data)


def received(sock: socket.socket, expected: bytes) -> Any:
    """A condition for spin(): C{sock} has received exactly C{expected} so far."""
    got = bytearray()

    def check() -> bool:
        with contextlib.suppress(BlockingIOError):
            got.extend(sock.recv(65536))
        return bytes(got) == expected

    return check


def spin(reactor: Any, until: Any, turns: int = 200) -> None:
    for _ in range(turns):
        if until():
            return
        reactor.iterate(0.01)
    raise AssertionError("condition not reached")


def test_echoes_through_the_lean_dispatch() -> None:
    reactor: Any = LeanEPollReactor()
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    client.setblocking(False)
    try:
        client.sendall(b"lean")
        spin(reactor, received(client, b"lean"))
    finally:
        client.close()
        port.stopListening()


def test_a_failing_handler_drops_only_its_connection() -> None:
    reactor: Any = LeanEPollReactor()
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    address = ("127.0.0.1", port.getHost().port)
    bad, good = socket.create_connection(address), socket.create_connection(address)
    bad.setblocking(False)
    good.setblocking(False)
    try:
        spin(reactor, lambda: len(reactor.getReaders()) >= 3)
        with capturedLogs() as events:
            bad.sendall(b"boom")
            good.sendall(b"fine")
            spin(reactor, received(good, b"fine"))

            def bad_closed() -> bool:
                try:
                    return bad.recv(1) == b""
                except BlockingIOError:
                    return False
                except ConnectionResetError:
                    return True

            spin(reactor, bad_closed)
        assert any("handler failed" in str(e.get("log_failure")) for e in events)
    finally:
        bad.close()
        good.close()
        port.stopListening()


def test_describe() -> None:
    assert describe(LeanEPollReactor()) == "echod.reactor.LeanEPollReactor"


class BrokenOnLoss(Echo):
    def connectionLost(self, reason: object = None) -> None:
        raise RuntimeError("connectionLost failed")


def test_a_failing_disconnect_does_not_stop_the_batch() -> None:
    """An exception while disconnecting one selectable spares the others' events."""
    reactor: Any = LeanEPollReactor()
    bad_factory = Factory.forProtocol(BrokenOnLoss)
    good_factory = Factory.forProtocol(Echo)
    bad_port = reactor.listenTCP(0, bad_factory, interface="127.0.0.1")
    good_port = reactor.listenTCP(0, good_factory, interface="127.0.0.1")
    bad = socket.create_connection(("127.0.0.1", bad_port.getHost().port))
    good = socket.create_connection(("127.0.0.1", good_port.getHost().port))
    good.setblocking(False)
    try:
        spin(reactor, lambda: len(reactor.getReaders()) >= 4)
        with capturedLogs() as events:
            bad.sendall(b"boom")  # the handler raises, then so does connectionLost
            good.sendall(b"fine")
            spin(reactor, received(good, b"fine"))
        assert any("connectionLost failed" in str(e.get("log_failure")) for e in events)
    finally:
        bad.close()
        good.close()
        bad_port.stopListening()
        good_port.stopListening()


class PollLog:
    """Records the timeout of every poll a reactor makes, then polls."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.real = reactor.doPoll
        self.polls: list[tuple[float, float | None]] = []
        reactor.doPoll = self

    def __call__(self, timeout: float | None) -> int:
        # While stopping (running false) every reactor polls with False: not
        # a turn of the running loop, so not recorded.
        if timeout is not False:
            self.polls.append((time.monotonic(), timeout))
        events: int = self.real(timeout)
        return events


def run_for(reactor: Any, seconds: float) -> None:
    """Run C{reactor} (its own main loop) for C{seconds}, then stop it."""
    reactor.callLater(seconds, reactor.stop)
    started = time.monotonic()
    reactor.run(installSignalHandlers=False)
    assert time.monotonic() - started < seconds + 5


def test_the_lean_loop_runs_timers_thread_calls_and_stops() -> None:
    reactor: Any = LeanEPollReactor()
    calls: list[str] = []

    def later() -> None:
        calls.append("timer")
        # a timed call added by a timed call, and a call from another thread
        reactor.callLater(0.05, calls.append, "nested")
        threading.Thread(
            target=reactor.callFromThread, args=(calls.append, "thread")
        ).start()

    reactor.callLater(0.05, later)
    run_for(reactor, 0.5)
    assert sorted(calls) == ["nested", "thread", "timer"]
    assert calls[0] == "timer"


def test_the_lean_loop_sleeps_until_the_next_timed_call() -> None:
    reactor: Any = LeanEPollReactor()
    reactor.callLater(0.3, lambda: None)
    log = PollLog(reactor)
    run_for(reactor, 0.6)
    timeouts = [t for _, t in log.polls]
    # Without I/O, one long sleep per timed call: never a busy turn.
    assert len(timeouts) < 10
    assert all(t is None or t > 0 for t in timeouts)
    assert timeouts[0] is not None and 0.2 < timeouts[0] <= 0.3


def test_an_error_in_a_turn_is_logged_and_the_loop_goes_on() -> None:
    reactor: Any = LeanEPollReactor()
    real = reactor.doPoll
    failed: list[bool] = []

    def poll_failing_once(timeout: float | None) -> None:
        if not failed:
            failed.append(True)
            raise RuntimeError("turn failed")
        real(timeout)

    reactor.doPoll = poll_failing_once
    calls: list[str] = []
    reactor.callLater(0.1, calls.append, "after")
    with capturedLogs() as events:
        run_for(reactor, 0.3)
    assert calls == ["after"]
    assert any("turn failed" in str(e.get("log_failure")) for e in events)


def busy_turns(busy_poll: float) -> tuple[list[tuple[float, float | None]], float]:
    """Polls made around one echoed message, and when the echo was seen."""
    reactor: Any = LeanEPollReactor()
    if busy_poll:
        enable_busy_poll(reactor, busy_poll)
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    seen: list[float] = []

    def send() -> None:
        client.sendall(b"ping")

    def check() -> None:
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            if client.recv(10) == b"ping":
                seen.append(time.monotonic())
                return
        reactor.callLater(0.001, check)

    reactor.callLater(0.1, send)
    reactor.callLater(0.1, check)
    log = PollLog(reactor)
    try:
        run_for(reactor, 0.6)
    finally:
        client.close()
        port.stopListening()
    assert seen, "the echo never came back"
    return log.polls, seen[0]


def test_busy_poll_spins_after_io_then_sleeps_again() -> None:
    polls, echoed = busy_turns(0.05)
    spinning = [at for at, t in polls if t == 0]
    assert spinning, "no zero-timeout poll after the echo"
    # It spins for about the busy-poll time after the last event...
    assert max(spinning) - echoed < 0.05 + 0.2
    # ...and then sleeps: the last polls wait again.
    assert polls[-1][1] is None or polls[-1][1] > 0


def test_a_wall_clock_stepped_back_does_not_prolong_the_spin() -> None:
    """The reactor's clock is the wall clock; the spin's end is measured on
    the monotonic one. Stepped back an hour just after an echo, the loop
    still sleeps again after the busy-poll time (it spun until stopped)."""
    reactor: Any = LeanEPollReactor()
    step = [0.0]
    reactor.seconds = lambda: time.time() - step[0]  # the loop reads it as it starts
    enable_busy_poll(reactor, 0.05)
    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    echoed: list[float] = []

    def send_and_step_back() -> None:
        try:
            client.settimeout(5)
            client.sendall(b"ping")
            if client.recv(10) == b"ping":  # blocks this thread, not the reactor
                echoed.append(time.monotonic())
            step[0] = 3600.0
            time.sleep(0.5)
        finally:
            reactor.callFromThread(reactor.stop)  # timed calls wait an hour now

    log = PollLog(reactor)
    worker = threading.Thread(target=send_and_step_back)
    reactor.callWhenRunning(worker.start)
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        worker.join(5)
        client.close()
        port.stopListening()
    assert echoed
    spinning_late = [at for at, t in log.polls if t == 0 and at > echoed[0] + 0.25]
    assert not spinning_late, f"{len(spinning_late)} zero-timeout polls"
    assert log.polls[-1][1] != 0  # it went back to sleep


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
def test_timed_calls_keep_their_delays_when_the_wall_clock_steps(step: float) -> None:
    """Stepped back, a call due in 0.3 s would wait an hour more; stepped
    forward, it would fire at once. It fires 0.3 s after it was made."""
    reactor: Any = LeanEPollReactor()
    offset = [0.0]
    reactor.seconds = lambda: time.time() + offset[0]
    made = time.monotonic()
    fired: list[float] = []
    reactor.callLater(0.3, lambda: fired.append(time.monotonic() - made))
    reactor.callLater(0.1, offset.__setitem__, 0, step)
    reactor.callLater(0.6, reactor.stop)  # it keeps its delay too
    guard = threading.Timer(5, reactor.callFromThread, [reactor.stop])
    guard.start()  # without the refinement the stop waits an hour
    try:
        with capturedLogs() as events:
            reactor.run(installSignalHandlers=False)
    finally:
        guard.cancel()
    assert time.monotonic() - made < 4
    assert len(fired) == 1 and 0.29 < fired[0] < 0.5, fired
    said = [e["step"] for e in events if "stepped" in e.get("log_format", "")]
    assert said == [pytest.approx(step, abs=0.1)]


def test_without_busy_poll_the_loop_never_spins() -> None:
    polls, _ = busy_turns(0.0)
    # The 1 ms check timer makes the loop wake often, but it always waits.
    assert all(t is None or t > 0 for _, t in polls)


def test_the_turn_loop_is_specialised_by_cpython() -> None:
    """Lesson 9: CPython 3.11 never specialises a while loop entered once.

    In a fresh interpreter (other tests enter the loop too), after a few
    thousand turns _run_turns must hold specialised attribute loads (it
    fails with the loop written "while self._started:").
    """
    if sys.version_info < (3, 11):
        pytest.skip("CPython specialises bytecode from 3.11 on")
    script = """
import dis
from echod.reactor import LeanEPollReactor
reactor = LeanEPollReactor()
left = [5000]
def again():
    left[0] -= 1
    if left[0]:
        reactor.callLater(0, again)
    else:
        reactor.stop()
reactor.callLater(0, again)
reactor.run(installSignalHandlers=False)
code = dis.get_instructions(LeanEPollReactor._run_turns, adaptive=True)
print(sorted({i.opname for i in code if i.opname.startswith("LOAD_ATTR_")}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.strip() not in ("", "[]"), out.stdout + out.stderr


def test_busy_poll_needs_the_lean_reactor() -> None:
    from twisted.internet.epollreactor import EPollReactor

    with pytest.raises(ValueError, match="--busy-poll needs echod's own reactor"):
        enable_busy_poll(EPollReactor(), 0.001)


def test_a_second_stop_signal_while_stopping_is_no_error() -> None:
    """systemd signals every process of a unit, and ``echod serve --workers``
    passes the signal on too: a worker gets SIGTERM twice."""
    reactor: Any = LeanEPollReactor()
    stops: list[str] = []
    reactor.addSystemEventTrigger("before", "shutdown", stops.append, "shutdown")
    reactor.callLater(0.05, reactor.sigTerm, signal.SIGTERM)
    reactor.callLater(0.05, reactor.sigTerm, signal.SIGTERM)
    reactor.callLater(0.05, reactor.sigInt, signal.SIGINT)
    with capturedLogs() as events:
        run_for(reactor, 5.0)
    assert stops == ["shutdown"]
    assert [e.get("log_failure") for e in events if e.get("log_failure")] == []
    assert reactor._exitSignal == signal.SIGINT  # twistd exits by the last one


def test_a_daemon_signalled_twice_stops_once(start_daemon: DaemonStarter) -> None:
    start_daemon(
        "--port", "tcp:0:interface=127.0.0.1"
    ).check_signalled_twice_stops_once()
