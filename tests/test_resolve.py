"""Unit tests of echod.resolve: the reactor's resolver, collected."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address

from echod.resolve import resolve_host


class FakeResolver:
    """A name resolver that answers at once with fixed addresses."""

    def __init__(self, addresses: list[Any]) -> None:
        self.addresses = addresses
        self.asked: list[tuple[str, int, str]] = []

    def resolveHostName(
        self, receiver: Any, host: str, port: int, transportSemantics: str = "TCP"
    ) -> None:
        self.asked.append((host, port, transportSemantics))
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
