"""Unit tests of echod.limits."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from echod.limits import ConnectionLimits, client_key


def test_client_key() -> None:
    assert client_key(IPv4Address("TCP", "192.0.2.1", 5)) == "192.0.2.1"
    assert client_key(IPv6Address("TCP", "2001:db8::1", 5)) == "2001:db8::1"
    assert client_key(UNIXAddress(b"/s")) is None
    # a dual-stack listener sees IPv4 clients as IPv4-mapped IPv6
    assert client_key(IPv6Address("TCP", "::ffff:192.0.2.1", 5)) == "192.0.2.1"


def test_no_limits_admit_everything() -> None:
    limits = ConnectionLimits(0, 0)
    for _ in range(1000):
        assert limits.refusal("a") is None
        limits.acquire("a")


def test_total_and_per_key_limits() -> None:
    limits = ConnectionLimits(max_connections=3, max_per_ip=2)
    limits.acquire("a")
    limits.acquire("a")
    assert limits.refusal("a") == "max-per-ip"
    assert limits.refusal("b") is None
    limits.acquire("b")
    assert limits.refusal("c") == "max-connections"
    limits.release("a")
    assert limits.refusal("a") is None
    assert limits.open_for("a") == 1
    limits.release("a")
    assert limits.open_for("a") == 0
    assert limits.open == 1
