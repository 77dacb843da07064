"""Packets on loopback seen by the real tcpdump: the TOS byte (IPv6: traffic
class) each packet to a port carried. Capturing needs root; CI runs as root."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.daemon import ON_CI, need_tool

TOS = re.compile(r"\((?:tos|class) (0x[0-9a-f]+)")
INLINE = re.compile(r"\) (\S+ > \S+: .*)$")
ADDRESSES = re.compile(r"^\S+\.(\d+) > \S+\.(\d+): (.*)$")


class Capture:
    """What tcpdump saw: (TOS, flags or protocol) of each packet to C{port}."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: list[str] = []

    def to_port(self) -> list[tuple[int, str]]:
        """Each packet sent to the port, in order: (its TOS byte, or IPv6
        traffic class, and the rest of tcpdump's line: TCP flags, or UDP)."""
        return self._packets(to_port=True)

    def from_port(self) -> list[tuple[int, str]]:
        """Each packet sent from the port (the server's), as L{to_port}."""
        return self._packets(to_port=False)

    def _packets(self, to_port: bool) -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []
        tos: int | None = None
        for line in self.lines:
            if line.startswith("IP"):  # IPv4 and IPv6 headers (-t: no time)
                marked = TOS.search(line)
                tos = int(marked.group(1), 16) if marked else 0  # none shown: 0
                inline = INLINE.search(line)  # IPv6: the addresses follow
                if inline is None:
                    continue  # IPv4: on the next line
                line = inline.group(1)
            addresses = ADDRESSES.match(line.strip())
            if addresses is not None and tos is not None:
                if int(addresses.group(2 if to_port else 1)) == self.port:
                    seen.append((tos, addresses.group(3)))
                tos = None
        return seen


@contextmanager
def capture(port: int, protocol: str = "tcp") -> Iterator[Capture]:
    """tcpdump on loopback for C{protocol} packets to or from C{port}, while
    the block runs; the packets are read once it ends."""
    tcpdump = need_tool("tcpdump")
    if os.geteuid() != 0:
        message = "capturing packets needs root"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)
    process = subprocess.Popen(
        [tcpdump, "-i", "lo", "-n", "-t", "-v", "-l", "-U", f"{protocol} port {port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    started = process.stderr.readline()  # "listening on lo, ..." once it captures
    assert "listening on lo" in started, started
    seen = Capture(port)
    try:
        yield seen
        time.sleep(0.3)  # the last packets reach tcpdump's output
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    seen.lines = out.splitlines()
