"""Unit tests of echod.tap: options become one settings object."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from echod.echo import ListenerFactory
from echod.reactor import LeanEPollReactor
from echod.service import EchoService
from echod.settings import EchoSettings, UDPSettings
from echod.tap import Options, makeService


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


def test_defaults() -> None:
    settings = parse().settings()
    assert settings == EchoSettings()
    assert settings.ports == ("tcp:10000",)
    assert settings.idle_timeout > 0


def test_every_option() -> None:
    settings = parse(
        "-p",
        "tcp:7",
        "--port",
        "unix:/run/echo.sock",
        "--idle-timeout",
        "2.5",
        "--max-connections",
        "100",
        "--max-per-ip",
        "4",
        "--drain-timeout",
        "0",
        "--udp",
        "7",
        "--udp",
        "[::1]:7007",
        "--udp-rate",
        "10",
        "--udp-max-size",
        "512",
        "--log-format",
        "json",
        "--backlog",
        "128",
        "--busy-poll",
        "50",
        "--tos",
        "ef",
    ).settings()
    assert settings == EchoSettings(
        ports=("tcp:7", "unix:/run/echo.sock"),
        idle_timeout=2.5,
        max_connections=100,
        max_per_ip=4,
        drain_timeout=0.0,
        backlog=128,
        udp=(
            UDPSettings(port=7, interface="", rate=10, max_size=512),
            UDPSettings(port=7007, interface="::1", rate=10, max_size=512),
        ),
        log_format="json",
        busy_poll=50e-6,
        tos=0xB8,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-timeout", "soon"], "--idle-timeout must be a number, not 'soon'"),
        (["--max-per-ip", "-3"], "--max-per-ip must be at least 0"),
        (["--udp-rate", "0"], "--udp-rate must be at least 1"),
        (["--udp-max-size", "70000"], "--udp-max-size must be at most 65507"),
        (["--udp", "1.2.3.4:99999"], "--udp port must be 0-65535"),
        # these three were "cannot listen on ..." (exit 1), the first on ':'
        (["--udp", "[::1"], "--udp: bad IPv6 address in '[::1'"),
        (["--udp", "[::1:7"], "--udp: bad IPv6 address in '[::1:7'"),
        (["--udp", "[zz]:7"], "--udp: bad IPv6 address in '[zz]:7'"),
        (["--udp", "[1.2.3.4]:7"], "--udp: bad IPv6 address in '[1.2.3.4]:7'"),
        (["--udp", "1.2.3.4.5:7"], "--udp: '1.2.3.4.5' is not an IP address"),
        (["--udp", "localhost:7"], "--udp: 'localhost' is not an IP address"),
        # was "cannot listen on ...: [Errno 22] Invalid argument." (exit 1)
        (
            ["--udp", "[fe80::1]:7"],
            "--udp: fe80::1 is a link-local address: it needs its zone, the "
            "interface it is on, as in --udp [fe80::1%eth0]:7",
        ),
        (["--log-format", "yaml"], "--log-format must be one of text, json"),
        (["--busy-poll", "-1"], "--busy-poll must be at least 0"),
        (["--tos", "ef2"], "--tos 'ef2': not a TOS: a DiffServ name"),
        # were accepted: a timeout that never fires, a drain that never ends
        (["--idle-timeout", "inf"], "--idle-timeout must be a finite number"),
        (["--drain-timeout", "1e400"], "--drain-timeout must be a finite number"),
        # was "cannot listen on 'tcp:10000': signed integer is greater than maximum"
        (["--backlog", "99999999999"], "--backlog must be at most 2147483647"),
        # were ignored: the echo was in the clear where TLS was asked for
        (
            ["--tls-cert", "c.pem", "--tls-key", "k.pem"],
            "--tls-cert and --tls-key apply to TLS listeners (ssl:, tls:, "
            "haproxy:ssl:, haproxy:tls:) and no --port is one",
        ),
        (
            ["-p", "tcp:7", "-p", "haproxy:tcp:8", "--tls-min-version", "1.3"],
            "--tls-min-version applies to TLS listeners",
        ),
        (["-p", "unix:/e.sock", "--tls-client-ca", "ca.pem"], "--tls-client-ca"),
        (["--tls-handshake-timeout", "3"], "--tls-handshake-timeout applies to TLS"),
        (
            ["--udp-rate", "5", "--udp-max-size", "512"],
            "--udp-rate and --udp-max-size apply to UDP echo, which is off: add "
            "--udp [INTERFACE:]PORT",
        ),
    ],
)
def test_bad_values_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_tls_options_with_a_tls_listener() -> None:
    for port in ("ssl:443", "tls:/etc/echod/tls", "haproxy:ssl:443", "haproxy:tls:/d"):
        settings = parse(
            "-p", "tcp:7", "-p", port, "--tls-min-version", "1.3"
        ).settings()
        assert settings.tls_min_version == "1.3"


def test_allow_and_deny_add_up_into_one_access_list() -> None:
    settings = parse(
        "--allow", "10.0.0.0/8,192.0.2.7", "--allow", "::1", "--deny", "10.0.0.7"
    ).settings()
    assert settings.access.describe() == (
        "allow=10.0.0.0/8,192.0.2.7/32,::1/128 deny=10.0.0.7/32"
    )
    assert parse().settings().access.describe() == "allow=all deny=none"


def test_settings_are_immutable() -> None:
    settings = parse().settings()
    with pytest.raises(AttributeError):
        settings.max_per_ip = 3  # type: ignore[misc]


def test_make_service_binds_every_listener() -> None:
    reactor = MemoryReactorClock()
    service = makeService(parse("-p", "tcp:1234", "-p", "tcp6:1235"), reactor)
    assert isinstance(service, EchoService)
    assert [port for port, *_ in reactor.tcpServers] == [1234, 1235]
    assert [backlog for _, _, backlog, _ in reactor.tcpServers] == [4096, 4096]
    # one echo factory for all listeners, each listener its own way in (counted)
    first, second = (server[1] for server in reactor.tcpServers)
    assert isinstance(first, ListenerFactory) and isinstance(second, ListenerFactory)
    assert first.echo_factory is second.echo_factory is service.factory
    assert (first.endpoint, second.endpoint) == ("tcp:1234", "tcp6:1235")


def test_make_service_bad_endpoint_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        makeService(parse("-p", "carrier-pigeon:1"), MemoryReactorClock())
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith(
        "twistd echod: error: bad endpoint 'carrier-pigeon:1': "
    )


def test_make_service_busy_poll_sets_the_lean_reactor() -> None:
    reactor = LeanEPollReactor()
    service = makeService(
        parse("-p", "tcp:0:interface=127.0.0.1", "--busy-poll", "75"), reactor
    )
    try:
        assert reactor.busy_poll == pytest.approx(75e-6)
    finally:
        for _, port in service.listening:  # type: ignore[attr-defined]
            port.stopListening()


def test_make_service_busy_poll_on_another_reactor_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        makeService(parse("--busy-poll", "75"), MemoryReactorClock())
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("twistd echod: error: --busy-poll needs echod's own reactor")
