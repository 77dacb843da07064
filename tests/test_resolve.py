"""Unit tests of echod.resolve: the reactor's resolver, collected."""

from __future__ import annotations

from typing import Any, cast

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

from echod.clienterrors import DNS, TIMEOUT, ClientError
from echod.resolve import (
    FamilyResolver,
    ReactorOfOneFamily,
    addresses_of,
    family_mismatch,
    family_of,
    resolve_host,
    source_family,
)


class FakeResolver:
    """A name resolver that answers at once with fixed addresses."""

    def __init__(self, addresses: list[Any]) -> None:
        self.addresses = addresses
        self.asked: list[tuple[str, int, str]] = []
        self.types: Any = None

    def resolveHostName(
        self,
        receiver: Any,
        host: str,
        port: int,
        addressTypes: Any = None,
        transportSemantics: str = "TCP",
    ) -> None:
        self.asked.append((host, port, transportSemantics))
        self.types = addressTypes
        receiver.resolutionBegan(None)
        for address in self.addresses:
            receiver.addressResolved(address)
        receiver.resolutionComplete()


class FakeReactor:
    def __init__(self, addresses: list[Any]) -> None:
        self.nameResolver = FakeResolver(addresses)


def test_addresses_in_order_without_repeats() -> None:
    reactor = FakeReactor(
        [
            IPv6Address("UDP", "::1", 7),
            IPv4Address("UDP", "127.0.0.1", 7),
            IPv6Address("UDP", "::1", 7),
        ]
    )
    result: list[list[str]] = []
    defer.ensureDeferred(resolve_host(reactor, "localhost", 7, "UDP")).addCallback(
        result.append
    )
    assert result == [["::1", "127.0.0.1"]]
    assert reactor.nameResolver.asked == [("localhost", 7, "UDP")]


def test_no_address_is_an_empty_list() -> None:
    result: list[list[str]] = []
    defer.ensureDeferred(resolve_host(FakeReactor([]), "x.invalid", 80)).addCallback(
        result.append
    )
    assert result == [[]]


def test_a_family_asks_the_resolver_for_its_address_type() -> None:
    reactor = FakeReactor([IPv6Address("TCP", "::1", 7)])
    defer.ensureDeferred(resolve_host(reactor, "localhost", 7, family=6))
    assert reactor.nameResolver.types == [IPv6Address]
    defer.ensureDeferred(resolve_host(reactor, "localhost", 7))
    assert reactor.nameResolver.types is None


def test_the_family_resolver_overrides_what_it_is_asked() -> None:
    """HostnameEndpoint asks for any address type: -4 is IPv4 all the same."""
    reactor = FakeReactor([])
    resolver = cast(IHostnameResolver, reactor.nameResolver)
    FamilyResolver(resolver, 4).resolveHostName(
        Receiver(), "h", 7, addressTypes=None, transportSemantics="TCP"
    )
    assert reactor.nameResolver.types == [IPv4Address]


def test_the_reactor_of_one_family_hands_the_rest_to_the_reactor() -> None:
    reactor = FakeReactor([])
    reactor.seconds = lambda: 42.0  # type: ignore[attr-defined]
    one = ReactorOfOneFamily(reactor, 6)
    assert isinstance(one.nameResolver, FamilyResolver)
    assert one.nameResolver.family == 6
    assert one.seconds() == 42.0


@pytest.mark.parametrize(
    ("host", "family", "says"),
    [
        ("127.0.0.1", 6, "-6 asks for IPv6, and 127.0.0.1 is an IPv4 address"),
        ("fe80::1%eth0", 4, "-4 asks for IPv4, and fe80::1%eth0 is an IPv6 address"),
        ("127.0.0.1", 4, None),
        ("::1", 6, None),
        ("example.test", 6, None),
        ("127.0.0.1", None, None),
    ],
)
def test_family_mismatch(host: str, family: int | None, says: str | None) -> None:
    assert family_mismatch(host, family) == says


@implementer(IResolutionReceiver)
class Receiver:
    def resolutionBegan(self, resolution: Any) -> None:
        pass

    def addressResolved(self, address: Any) -> None:
        pass

    def resolutionComplete(self) -> None:
        pass


def test_family_of() -> None:
    assert family_of(None, None, "--source") == (None, "")
    assert family_of(6, None, "--source") == (6, "-6")
    assert family_of(None, "127.0.0.2", "--source") == (4, "--source 127.0.0.2")
    assert family_of(None, "fe80::1%eth0", "--interface") == (
        6,
        "--interface fe80::1%eth0",
    )
    assert family_of(4, "127.0.0.2", "--source") == (4, "-4")


def test_source_family() -> None:
    assert source_family("127.0.0.2", None, "--source") == 4
    assert source_family("fe80::1%eth0", 6, "--interface") == 6
    with pytest.raises(ValueError, match=r"--interface 'eth0': not an IP address"):
        source_family("eth0", None, "--interface")
    with pytest.raises(ValueError, match="--source ::1 is an IPv6 address, and -4"):
        source_family("::1", 4, "--source")


def outcome(d: defer.Deferred[Any]) -> Any:
    """What a Deferred that has fired gave: its result, or its Failure."""
    got: list[Any] = []
    d.addBoth(got.append)
    assert got, "not fired"
    return got[0]


def test_addresses_of_a_name() -> None:
    reactor = FakeReactor([IPv4Address("UDP", "127.0.0.1", 7)])
    found = outcome(defer.ensureDeferred(
        addresses_of(reactor, "localhost", 7, semantics="UDP")
    ))  # fmt: skip
    assert found == ["127.0.0.1"]
    assert reactor.nameResolver.asked == [("localhost", 7, "UDP")]


@pytest.mark.parametrize(
    ("family", "flag", "says"),
    [
        (None, "", "cannot resolve the name 'x.invalid'"),
        (6, "", "cannot resolve the name 'x.invalid' to an IPv6 address (-6)"),
        (4, "--interface 127.0.0.2",
         "cannot resolve the name 'x.invalid' to an IPv4 address (--interface "
         "127.0.0.2)"),
    ],
)  # fmt: skip
def test_no_address_is_a_dns_error_naming_the_host(
    family: int | None, flag: str, says: str
) -> None:
    failure = outcome(defer.ensureDeferred(
        addresses_of(FakeReactor([]), "x.invalid", 80, family, flag=flag)
    ))  # fmt: skip
    assert isinstance(failure, Failure) and isinstance(failure.value, ClientError)
    assert (failure.value.code, str(failure.value)) == (DNS, says)


def test_a_resolver_error_is_a_dns_error_with_its_words() -> None:
    class Broken:
        def resolveHostName(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("resolver gone")

    reactor = FakeReactor([])
    reactor.nameResolver = Broken()  # type: ignore[assignment]
    failure = outcome(defer.ensureDeferred(addresses_of(reactor, "h.test", 1)))
    assert isinstance(failure.value, ClientError) and failure.value.code == DNS
    assert str(failure.value) == "cannot resolve the name 'h.test': resolver gone"


def test_a_lookup_that_outlasts_the_timeout() -> None:
    """A resolver that never answers: TIMEOUT once the time is up, not before."""

    class Silent:
        def resolveHostName(self, *args: Any, **kwargs: Any) -> None:
            pass

    clock = MemoryReactorClock()
    clock.nameResolver = Silent()  # type: ignore[assignment]
    d = defer.ensureDeferred(addresses_of(clock, "slow.test", 1, timeout=5.0))
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    failure = outcome(d)
    assert isinstance(failure.value, ClientError) and failure.value.code == TIMEOUT
    assert str(failure.value) == "name lookup timed out ('slow.test')"
