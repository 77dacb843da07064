"""Unit tests of echod.zones: which addresses need a zone."""

from __future__ import annotations

import pytest

from echod.zones import missing_zone, needs_zone


@pytest.mark.parametrize(
    ("host", "needs"),
    [
        ("fe80::1", True),
        ("FE80::1", True),
        ("febf::1", True),  # fe80::/10 ends at febf
        ("fe80::1%eth0", False),
        ("fec0::1", False),
        ("::1", False),
        ("2001:db8::1", False),
        ("127.0.0.1", False),
        ("169.254.1.1", False),  # IPv4 link-local needs no zone
        ("localhost", False),
        ("", False),
    ],
)
def test_needs_zone(host: str, needs: bool) -> None:
    assert needs_zone(host) is needs


def test_missing_zone_says_how() -> None:
    assert missing_zone("fe80::1", "[fe80::1%eth0]:7") == (
        "fe80::1 is a link-local address: it needs its zone, the interface it is "
        "on, as in [fe80::1%eth0]:7"
    )
