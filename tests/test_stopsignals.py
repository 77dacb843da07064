"""Tests of echod.stopsignals: a second stop signal on Twisted's own reactors."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from echod.stopsignals import STOP_SIGNALS, stop_once
from tests.daemon import DaemonStarter


@pytest.fixture
def saved_handlers() -> Iterator[None]:
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


class FakeReactor:
    """What stop_once uses of a reactor: its shutdown triggers, callFromThread."""

    def __init__(self) -> None:
        self.before_shutdown: list[Any] = []
        self.called: list[Any] = []

    def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> None:
        assert (phase, event) == ("before", "shutdown")
        self.before_shutdown.append(f)

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.called.append((f, args, kwargs))


def reactor_handlers(reached: list[int]) -> None:
    """Handlers as a reactor installs them, noting each signal that reaches one."""
    for number in STOP_SIGNALS:
        signal.signal(number, lambda number, frame: reached.append(number))


def send(number: int) -> None:
    """Call the handler installed for C{number}, as the signal would."""
    handler: Any = signal.getsignal(number)
    handler(number, None)


def test_only_the_first_signal_reaches_the_reactor_s_handler(
    saved_handlers: None,
) -> None:
    reached: list[int] = []
    reactor_handlers(reached)
    reactor = FakeReactor()
    stop_once(reactor)
    for number in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):
        send(number)
    assert reached == [signal.SIGTERM]
    logged = [kwargs["signal"] for _, _, kwargs in reactor.called]
    assert logged == ["SIGTERM", "SIGINT"]  # "again; already stopping"


def test_no_signal_reaches_it_once_a_stop_has_begun(saved_handlers: None) -> None:
    reached: list[int] = []
    reactor_handlers(reached)
    reactor = FakeReactor()
    stop_once(reactor)
    for trigger in reactor.before_shutdown:  # reactor.stop() fires them
        trigger()
    send(signal.SIGTERM)
    assert reached == []


def test_a_handler_the_reactor_did_not_install_is_left_alone(
    saved_handlers: None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a background job
    stop_once(FakeReactor())
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("reactor", ["epoll", "poll", "asyncio"])
def test_a_daemon_on_twisted_s_reactor_signalled_twice_stops_once(
    reactor: str, tmp_path: Path
) -> None:
    """Twisted's own handlers stop the reactor for every signal; the second
    logged a critical ReactorNotRunning traceback."""
    starter = DaemonStarter(tmp_path, twistd_args=[f"--reactor={reactor}"])
    try:
        daemon = starter("--port", "tcp:0:interface=127.0.0.1")
        daemon.check_signalled_twice_stops_once()
    finally:
        starter.cleanup()
