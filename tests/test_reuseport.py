"""echod.reuseport: several processes, one port."""

from __future__ import annotations

import signal
import socket

import pytest

from echod.reuseport import ReusePortAddress, reuse_port_address, split_description
from tests.daemon import DaemonStarter
from tests.peers import connect, free_port, round_trip


def test_split_description_undoes_escapes() -> None:
    assert split_description(r"tcp6:7:interface=\:\::backlog=9") == (
        "tcp6",
        ["7"],
        {"interface": "::", "backlog": "9"},
    )


def test_reuse_port_address() -> None:
    assert reuse_port_address("tcp:7", 50) == ReusePortAddress(
        socket.AF_INET, "0.0.0.0", 7, 50
    )
    assert reuse_port_address(r"tcp6:7:interface=\:\:1:backlog=3", 50) == (
        ReusePortAddress(socket.AF_INET6, "::1", 7, 3)
    )
    assert reuse_port_address("unix:/run/e.sock", 50) is None
    with pytest.raises(ValueError, match=r"unknown parameter 'reuse' \(with --reuse"):
        reuse_port_address("tcp:7:reuse=1", 50)


def test_two_daemons_share_a_port(start_daemon: DaemonStarter) -> None:
    port = free_port()
    endpoint = f"tcp:{port}:interface=127.0.0.1"
    first = start_daemon("--reuse-port", "--port", endpoint)
    second = start_daemon("--reuse-port", "--port", endpoint)
    first.tcp_port()
    second.tcp_port()
    for i in range(40):
        with connect("127.0.0.1", port) as sock:
            assert round_trip(sock, b"%d" % i) == b"%d" % i
    closed = [len(d.wait_for(r"closed .*reason=", count=1)) for d in (first, second)]
    assert all(closed), "the kernel spread connections over both"
    assert first.stop() in (0, -signal.SIGTERM)
    for _ in range(10):  # the other one serves everyone now
        with connect("127.0.0.1", port) as sock:
            assert round_trip(sock, b"after") == b"after"
