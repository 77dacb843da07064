"""Unit tests of echod.target: targets parsed and checked, endpoints made."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from echod import sockopts
from echod.clienterrors import (
    USAGE,
    ClientError,
)
from echod.target import (
    Target,
    local_address,
    make_endpoint,
    parse_target,
    with_source,
    with_tos,
)
from echod.tlsclient import ClientTLS


@pytest.mark.parametrize(
    ("text", "tls", "target"),
    [
        ("localhost:10000", False, Target("localhost", 10000, None, False)),
        ("[::1]:7", False, Target("::1", 7, None, False)),
        ("tls:example.test:443", False, Target("example.test", 443, None, True)),
        ("example.test:443", True, Target("example.test", 443, None, True)),
        (
            "unix:path=/run/echo.sock",
            False,
            Target(None, None, "unix:path=/run/echo.sock", False),
        ),
        (
            "tcp:host=localhost:port=7",
            False,
            Target(None, None, "tcp:host=localhost:port=7", False),
        ),
        ("tcp:127.0.0.1:7", False, Target(None, None, "tcp:127.0.0.1:7", False)),
        ("::1:7", False, Target("::1", 7, None, False)),
        # Twisted's ssl: client endpoint verifies nothing: it is echod's TLS.
        (
            "ssl:host=example.test:port=443",
            False,
            Target("example.test", 443, None, True),
        ),
        ("ssl:example.test:443", False, Target("example.test", 443, None, True)),
        ("ssl:host=\\:\\:1:port=443", False, Target("::1", 443, None, True)),
        # international names: A-labels, as looked up and sent in TLS
        ("bücher.test:7", False, Target("xn--bcher-kva.test", 7, None, False)),
        ("tls:faß.de:443", False, Target("xn--fa-hia.de", 443, None, True)),
        ("ssl:bücher.test:443", False, Target("xn--bcher-kva.test", 443, None, True)),
    ],
)
def test_parse_target(text: str, tls: bool, target: Target) -> None:
    assert parse_target(text, tls) == target


def test_parse_target_with_a_family() -> None:
    """-4/-6: kept for a name; an address of the other version, or an endpoint
    string (which names its own family), is a usage error."""
    assert parse_target("h.test:7", False, 6) == Target("h.test", 7, None, False, 6)
    assert parse_target("tls:h.test:7", False, 4).family == 4
    assert parse_target("ssl:h.test:7", False, 4).family == 4
    for text, family, says in (
        ("127.0.0.1:7", 6, "-6 asks for IPv6, and 127.0.0.1 is an IPv4 address"),
        ("[::1]:7", 4, "-4 asks for IPv4, and ::1 is an IPv6 address"),
        ("tcp:h.test:7", 4, "-4 goes with HOST:PORT, not the endpoint string"),
        ("unix:path=/s", 6, "-6 goes with HOST:PORT"),
    ):
        with pytest.raises(ClientError, match=says) as e:
            parse_target(text, False, family)
        assert e.value.code == USAGE


@pytest.mark.parametrize("text", ["localhost:0", "localhost:65536", "[::1]:99999"])
def test_a_port_out_of_range_is_a_usage_error(text: str) -> None:
    with pytest.raises(ClientError, match=r"bad port in .*: ports are 1 to 65535") as e:
        parse_target(text, False)
    assert e.value.code == USAGE


@pytest.mark.parametrize("text", ["[zz]:7", "[::1:7", "[192.0.2.1]:7"])
def test_brackets_hold_an_ipv6_address(text: str) -> None:
    with pytest.raises(ClientError, match=r"bad IPv6 address in ") as e:
        parse_target(text, False)
    assert e.value.code == USAGE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tcp:host=localhost:port=0", "bad port in "),
        ("tcp:localhost:65536", "bad port in "),
        ("ssl:localhost:65536", "bad port in "),
        ("tcp:host=[::1]:port=7", "bad host '\\[' in "),
        ("ssl:host=[::1:port=7", "bad host '\\[' in "),
        ("ssl:localhost", "expected ssl:HOST:PORT"),
        ("ssl:localhost:443:privateKey=k.pem", "privateKey has no place here"),
    ],
)
def test_endpoint_strings_are_checked_up_front(text: str, message: str) -> None:
    with pytest.raises(ClientError, match=message) as e:
        parse_target(text, False)
    assert e.value.code == USAGE


def test_labels_bracket_ipv6() -> None:
    assert Target("::1", 7, None, False).label() == "[::1]:7"
    assert Target("localhost", 7, None, False).label() == "localhost:7"
    assert Target(None, None, "unix:path=/x", False).label() == "unix:path=/x"


def test_tls_needs_host_and_port() -> None:
    with pytest.raises(ClientError) as e:
        parse_target("unix:path=/x", True)
    assert e.value.code == USAGE


def test_an_ipv6_literal_is_connected_without_a_lookup() -> None:
    """HostnameEndpoint would resolve it, and lose a link-local zone."""
    reactor = MemoryReactor()
    for host in ("fe80::1%eth0", "::1"):
        endpoint = make_endpoint(
            reactor, Target(host, 7, None, False), ClientTLS(), None
        )
        assert isinstance(endpoint, TCP6ClientEndpoint)
        endpoint.connect(Factory.forProtocol(Protocol))
    assert [c[0] for c in reactor.tcpClients] == ["fe80::1%eth0", "::1"]
    named = make_endpoint(
        reactor, Target("localhost", 7, None, False), ClientTLS(), None
    )
    assert isinstance(named, HostnameEndpoint)
    # An IPv4 address too: HostnameEndpoint would ask the resolver (a thread)
    # for each connection, the most of a short connection's cost in bench.
    four = make_endpoint(
        reactor, Target("127.0.0.1", 7, None, False), ClientTLS(), None
    )
    assert isinstance(four, TCP4ClientEndpoint)
    sixonly = Target("127.0.0.1", 7, None, False, family=6)  # refused elsewhere
    assert not isinstance(make_endpoint(reactor, sixonly, ClientTLS(), None),
                          TCP4ClientEndpoint)  # fmt: skip


def test_with_source_sets_the_family_of_the_connection() -> None:
    target = parse_target("h.test:7", False)
    assert with_source(target, "192.0.2.1") == Target(
        "h.test", 7, None, False, 4, "192.0.2.1"
    )
    assert with_source(target, "fe80::1%eth0").family == 6
    assert with_source(target, None) == target
    for given, source, says in (
        (parse_target("h.test:7", False, 6), "192.0.2.1", "and -6 asks for IPv6"),
        (parse_target("[::1]:7", False), "192.0.2.1", "and ::1 is not"),
        (parse_target("unix:path=/s", False), "192.0.2.1", "goes with HOST:PORT"),
        (target, "h.test", "not an IP address"),
    ):
        with pytest.raises(ClientError, match=says) as e:
            with_source(given, source)
        assert e.value.code == USAGE


def test_a_source_port_binds_any_address_of_either_version() -> None:
    target = parse_target("h.test:7", False)
    assert local_address(target) is None
    alone = with_source(target, None, 40000)
    assert (alone.family, local_address(alone)) == (None, ("", 40000))
    both = with_source(target, "192.0.2.1", 40000)
    assert (both.family, local_address(both)) == (4, ("192.0.2.1", 40000))
    assert local_address(with_source(target, "192.0.2.1")) == ("192.0.2.1", 0)
    with pytest.raises(ClientError, match="--source-port goes with HOST:PORT"):
        with_source(parse_target("unix:path=/s", False), None, 40000)


def test_tos_goes_with_host_and_port_on_a_tested_twisted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = parse_target("127.0.0.1:7", False)
    assert with_tos(target, "ef").tos == 0xB8
    assert with_tos(target, None) is target
    with pytest.raises(ClientError, match="-T goes with HOST:PORT"):
        with_tos(parse_target("unix:path=/s", False), "ef")
    # It sets the option through Twisted's tcp.Connector (echod.sockopts):
    # on a release not tested, a clear refusal rather than a traceback.
    monkeypatch.setattr(sockopts, "running_twisted_tested", lambda: False)
    with pytest.raises(ClientError, match="-T needs a Twisted release echod was"):
        with_tos(target, "ef")
