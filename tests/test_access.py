"""Unit tests of echod.access: --allow and --deny."""

from __future__ import annotations

from pathlib import Path

import pytest

from echod.access import (
    AccessFileError,
    AccessList,
    AccessSources,
    parse_networks,
    read_networks,
)


def networks(*texts: str) -> AccessList:
    allow = tuple(n for t in texts if not t.startswith("!") for n in parse_networks(t))
    deny = tuple(n for t in texts if t.startswith("!") for n in parse_networks(t[1:]))
    return AccessList(allow, deny)


@pytest.mark.parametrize(
    ("rules", "host", "permitted"),
    [
        ((), "192.0.2.7", True),  # no list: everyone
        (("10.0.0.0/8",), "10.1.2.3", True),
        (("10.0.0.0/8",), "192.0.2.7", False),
        (("10.0.0.0/8",), "::ffff:10.1.2.3", True),  # IPv4-mapped, on a tcp6 port
        (("10.0.0.0/8",), "::1", False),  # an IPv6 client and IPv4 networks
        (("::1", "127.0.0.1"), "::1", True),
        (("fe80::/10",), "fe80::1%eth0", True),  # the zone aside
        (("!192.0.2.7",), "192.0.2.7", False),  # --deny alone
        (("!192.0.2.7",), "192.0.2.8", True),
        (("10.0.0.0/8", "!10.0.0.7"), "10.0.0.7", False),  # deny wins, as in ncat
        (("10.0.0.0/8", "!10.0.0.7"), "10.0.0.8", True),
        (("10.0.0.0/8",), None, True),  # a UNIX socket: no address
    ],
)
def test_permits(rules: tuple[str, ...], host: str | None, permitted: bool) -> None:
    assert networks(*rules).permits(host) is permitted


def test_parse_networks() -> None:
    parsed = parse_networks("10.0.0.1/8, 192.0.2.7,2001:db8::/32")
    assert [str(n) for n in parsed] == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]


@pytest.mark.parametrize("value", ["example.com", "10.0.0.0/33", "", "10.0.0.0/8,"])
def test_parse_networks_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or network"):
        parse_networks(value)


def test_describe() -> None:
    assert AccessList().describe() == "allow=all deny=none"
    rules = networks("10.0.0.0/8", "::1", "!10.0.0.7")
    assert rules.describe() == "allow=10.0.0.0/8,::1/128 deny=10.0.0.7/32"


def test_read_networks(tmp_path: Path) -> None:
    listed = tmp_path / "allow.txt"
    listed.write_text(
        "# the office\n10.0.0.0/8 192.0.2.7  # gateway\n\n::1,fe80::/10\n"
    )
    assert [str(n) for n in read_networks(str(listed))] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "::1/128",
        "fe80::/10",
    ]
    listed.write_text("10.0.0.0/8\nexample.com\n")
    with pytest.raises(ValueError, match=r"allow.txt, line 2: 'example.com' is not"):
        read_networks(str(listed))
    listed.write_bytes(b"\x80\xff")
    with pytest.raises(ValueError, match="is not a text file of addresses"):
        read_networks(str(listed))


def test_sources_load_the_files_as_they_are_now(tmp_path: Path) -> None:
    allow, deny = tmp_path / "allow", tmp_path / "deny"
    allow.write_text("10.0.0.0/8\n")
    deny.write_text("10.0.0.7\n")
    sources = AccessSources(
        parse_networks("192.0.2.1"), (), (str(allow),), (str(deny),)
    )
    first = sources.load()
    assert first.describe() == "allow=192.0.2.1/32,10.0.0.0/8 deny=10.0.0.7/32"
    assert first.sources is sources and sources.files() == (str(allow), str(deny))
    assert first == AccessList(first.allow, first.deny)  # the sources aside
    allow.write_text("172.16.0.0/12\n")
    assert sources.load().describe() == (
        "allow=192.0.2.1/32,172.16.0.0/12 deny=10.0.0.7/32"
    )
    deny.unlink()
    with pytest.raises(AccessFileError, match=r"^--denyfile: cannot read .*/deny: No"):
        sources.load()
    deny.write_text("bad\n")
    with pytest.raises(AccessFileError, match=r"^--denyfile: .*/deny, line 1: 'bad'"):
        sources.load()
