"""Unit tests of echod.session: how the peer is named."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address

from echod.session import Session, reached
from echod.target import Target


class PeerTransport:
    def __init__(self, host: str) -> None:
        self.host = host

    def getPeer(self) -> IPv4Address | IPv6Address:
        kind = IPv6Address if ":" in self.host else IPv4Address
        return kind("TCP", self.host, 7)


@pytest.mark.parametrize(
    ("target", "peer", "shown"),
    [
        (Target("localhost", 7, None, False), "127.0.0.1", "localhost:7 (127.0.0.1)"),
        (Target("dual.test", 7, None, False), "::1", "dual.test:7 (::1)"),
        (Target("127.0.0.1", 7, None, False), "127.0.0.1", "127.0.0.1:7"),
        (Target("fe80::1%v1", 7, None, False), "fe80::1", "[fe80::1%v1]:7"),
        (Target(None, None, "unix:path=/s", False), "127.0.0.1", "unix:path=/s"),
    ],
)
def test_reached_names_the_address_that_answered(
    target: Target, peer: str, shown: str
) -> None:
    session = Session()
    session.transport = PeerTransport(peer)  # type: ignore[assignment]
    assert reached(target, session) == shown
