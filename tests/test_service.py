"""Unit tests of echod.service: listening, and draining at stop."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.service import Application
from twisted.internet.address import IPv4Address
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.logger import FileLogObserver, ILogObserver

from echod.echo import EchoProtocol
from echod.logs import ClassicText
from echod.notify import SystemdNotifier
from echod.service import (
    FLUSH_GRACE,
    EchoService,
    ListenError,
    with_backlog,
)
from echod.settings import EchoSettings


def started_service(**settings: object) -> tuple[EchoService, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    service = EchoService(EchoSettings(ports=("tcp:1234",), **settings), reactor)  # type: ignore[arg-type]
    service.listen()
    service.startService()
    return service, reactor


def open_connection(service: EchoService, transport: StringTransport) -> EchoProtocol:
    protocol = service.factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 9))
    assert isinstance(protocol, EchoProtocol)
    if isinstance(transport, StringTransportWithDisconnection):
        transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol


def test_stop_with_no_connections_is_immediate() -> None:
    service, _ = started_service()
    fired: list[object] = []
    service.stopService().addCallback(fired.append)
    assert fired == [None]
    assert service.factory.draining


def test_connections_get_the_drain_time_then_are_finished() -> None:
    service, clock = started_service(drain_timeout=5.0)
    transport = StringTransportWithDisconnection()
    protocol = open_connection(service, transport)
    fired: list[object] = []
    service.stopService().addCallback(fired.append)
    clock.advance(4.9)
    protocol.dataReceived(b"still served while draining")
    assert transport.value() == b"still served while draining"
    assert fired == []
    clock.advance(0.1)  # drain time over: finish() flushes and closes
    assert fired == [None]
    assert protocol.end_reason == "drain"
    assert service.stats.closed["drain"] == 1


def test_connection_ending_early_ends_the_stop_early() -> None:
    service, clock = started_service(drain_timeout=60.0)
    protocol = open_connection(service, StringTransportWithDisconnection())
    fired: list[object] = []
    service.stopService().addCallback(fired.append)
    clock.advance(1)
    protocol.readConnectionLost()  # the client sends EOF; echod closes
    assert fired == [None]
    assert not clock.getDelayedCalls()


def test_connections_that_will_not_flush_are_aborted() -> None:
    service, clock = started_service(drain_timeout=1.0)
    transport = StringTransport()  # never reports the connection lost by itself
    protocol = open_connection(service, transport)
    fired: list[object] = []
    service.stopService().addCallback(fired.append)
    clock.advance(1.0)
    assert transport.disconnecting and not transport.disconnected
    clock.advance(FLUSH_GRACE)
    assert transport.disconnected  # aborted
    assert protocol.end_reason == "drain-abort"
    clock.advance(1.0)
    assert fired == [None]


def test_draining_refuses_new_connections() -> None:
    service, _ = started_service(drain_timeout=60.0)
    open_connection(service, StringTransportWithDisconnection())
    service.stopService()
    refused = service.factory.buildProtocol(IPv4Address("TCP", "192.0.2.2", 9))
    assert not isinstance(refused, EchoProtocol)


def test_listen_failure_names_the_endpoint_and_releases_the_others() -> None:
    reactor = MemoryReactorClock()
    service = EchoService(EchoSettings(ports=("tcp:1", "tcp:2")), reactor)

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("no room")

    original = reactor.listenTCP
    calls: list[int] = []

    def listen_once(port: int, *args: object, **kwargs: object) -> object:
        calls.append(port)
        if port == 2:
            refuse()
        return original(port, *args, **kwargs)  # type: ignore[arg-type]

    reactor.listenTCP = listen_once  # type: ignore[assignment,method-assign]
    with pytest.raises(ListenError, match="cannot listen on 'tcp:2': no room"):
        service.listen()
    assert service.listening == []


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("tcp:10000", "tcp:10000:backlog=64"),
        ("tcp:10000:backlog=7", "tcp:10000:backlog=7"),
        ("tcp6:10000:interface=\\:\\:1", "tcp6:10000:interface=\\:\\:1:backlog=64"),
        ("unix:/run/e.sock", "unix:/run/e.sock:backlog=64"),
        ("haproxy:tcp:10000", "haproxy:tcp:10000:backlog=64"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
        ("tcp", "tcp"),
    ],
)
def test_with_backlog(given: str, used: str) -> None:
    assert with_backlog(given, 64) == used


def test_under_twistd_echod_writes_the_text_log_itself(tmp_path: Path) -> None:
    """The fast text log is what twistd logs with (the application's
    ILogObserver), writing to twistd's --logfile; with --syslog or --logger
    (writes_log off) twistd's own observer stays."""
    application = Application("echod")
    log_file = tmp_path / "echod.log"
    settings = EchoSettings(ports=("tcp:1234",), log_file=log_file, writes_log=True)
    EchoService(settings, MemoryReactorClock()).setServiceParent(application)
    observer = application.getComponent(ILogObserver)
    assert isinstance(observer, FileLogObserver)
    assert isinstance(observer.formatEvent, ClassicText)
    observer({"log_format": "hello {who}", "who": "log", "log_time": 0.0})
    assert log_file.read_text().endswith(" [-#-] hello log\n")
    untouched = Application("echod")
    EchoService(
        EchoSettings(ports=("tcp:1234",)), MemoryReactorClock()
    ).setServiceParent(untouched)
    assert untouched.getComponent(ILogObserver) is None


class RecordingNotifier(SystemdNotifier):
    """A notifier that keeps what it would send."""

    def __init__(self) -> None:
        super().__init__({})
        self.sent: list[tuple[str, ...]] = []

    def notify(self, *fields: str) -> None:
        self.sent.append(fields)


def test_ready_waits_for_the_reactor_to_run() -> None:
    """twistd starts services before the reactor installs its stop signal
    handlers; READY=1 then would let systemd's SIGTERM kill, not drain."""
    reactor = MemoryReactorClock()
    notifier = RecordingNotifier()
    service = EchoService(EchoSettings(ports=("tcp:1234",)), reactor, notifier)
    service.listen()
    service.startService()
    assert notifier.sent == []
    reactor.run()  # MemoryReactor: runs the when-running hooks
    assert [fields[0] for fields in notifier.sent] == ["READY=1"]


def test_no_ready_when_stopped_before_the_reactor_ran() -> None:
    reactor = MemoryReactorClock()
    notifier = RecordingNotifier()
    service = EchoService(EchoSettings(ports=("tcp:1234",)), reactor, notifier)
    service.listen()
    service.startService()
    service.stopService()
    reactor.run()
    assert "READY=1" not in [fields[0] for fields in notifier.sent]
