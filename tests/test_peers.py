"""Unit tests of tests.peers, the helpers the end-to-end tests stand on."""

from __future__ import annotations

import socket

from tests.peers import closed_by_peer


def test_closed_by_peer_may_allow_an_alert_first() -> None:
    """The helper the reliability test of garbage to a TLS port relies on:
    bytes before the close count against C{allow_bytes}; EOF is a close."""
    cases = [(b"", 0, True), (b"\x15" * 7, 7, True), (b"\x15" * 7, 0, False),
             (b"x" * 8, 7, False)]  # fmt: skip
    for sent, allowed, closed in cases:
        a, b = socket.socketpair()
        with a, b:
            b.sendall(sent)
            b.close()
            assert closed_by_peer(a, timeout=2, allow_bytes=allowed) is closed
