"""Unit tests of echod.targetoptions: nc's HOST PORT joined."""

from __future__ import annotations

import re

import pytest

from echod.clienterrors import (
    USAGE,
    ClientError,
)
from echod.targetoptions import joined_target


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
