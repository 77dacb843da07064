"""Unit tests of echod.targetoptions: nc's HOST PORT joined."""

from __future__ import annotations

import re

import pytest

from echod.clienterrors import (
    USAGE,
    ClientError,
)
from echod.proxytunnel import parse_proxy
from echod.targetoptions import joined_target, with_proxy_user


@pytest.mark.parametrize(
    ("target", "port", "joined"),
    [
        ("localhost", None, "localhost"),
        ("localhost", "7", "localhost:7"),
        ("127.0.0.1", "65535", "127.0.0.1:65535"),
        ("::1", "7", "[::1]:7"),
        ("[::1]", "7", "[::1]:7"),
        ("fe80::1%eth0", "7", "[fe80::1%eth0]:7"),
        ("tls:localhost", "443", "tls:localhost:443"),
        ("udp:::1", "7", "udp:[::1]:7"),
        ("tcp:localhost:7", None, "tcp:localhost:7"),
    ],
)
def test_host_and_port_as_nc_takes_them(target: str, port: str, joined: str) -> None:
    assert joined_target(target, port) == joined


@pytest.mark.parametrize(
    ("target", "port", "says"),
    [
        ("localhost", "0", "bad port '0': a port is a number, 1 to 65535"),
        ("localhost", "http", "bad port 'http': a port is a number, 1 to 65535"),
        ("localhost:7", "7", "'localhost:7' and the port 7: give HOST PORT"),
        ("tcp:host=localhost", "7", "'tcp:host=localhost' and the port 7: give"),
        ("udp:", "7", "'udp:' and the port 7: give HOST PORT"),
    ],
)
def test_host_and_port_refused(target: str, port: str, says: str) -> None:
    with pytest.raises(ClientError, match=re.escape(says)) as e:
        joined_target(target, port)
    assert e.value.code == USAGE


def test_proxy_user_replaces_the_url_s_and_splits_at_the_first_colon() -> None:
    proxy = parse_proxy("socks5://old:word@p.test")
    given = with_proxy_user(proxy, "new:p@ss:w0rd")
    assert given is not None and (given.user, given.password) == ("new", "p@ss:w0rd")
    assert with_proxy_user(proxy, None) is proxy
    socks4 = with_proxy_user(parse_proxy("socks4://p.test"), "me")  # no password
    assert socks4 is not None and (socks4.user, socks4.password) == ("me", None)
    empty = with_proxy_user(parse_proxy("http://p.test"), "me:")
    assert empty is not None and (empty.user, empty.password) == ("me", "")
