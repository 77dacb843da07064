"""A network namespace of the test's own, with a link-local IPv6 address.

Loopback has no link-local address, so a test of zones (C{fe80::1%v1}) makes
a namespace with a veth pair and puts C{fe80::1} on one end (without duplicate
address detection, so that it is usable at once). Creating one needs root;
CI runs as root, so there it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.daemon import ON_CI, need_tool


class LinkLocalNamespace:
    """A namespace with C{ADDRESS} on C{INTERFACE}; commands run in it with
    C{prefix}."""

    ADDRESS = "fe80::1"
    INTERFACE = "v1"

    def __init__(self) -> None:
        self.ip = need_tool("ip")
        if os.geteuid() != 0:
            message = "making a network namespace needs root"
            if ON_CI:
                pytest.fail(message)
            pytest.skip(message)
        self.name = f"echod-test-{uuid.uuid4().hex[:8]}"
        self._ip("netns", "add", self.name)
        try:
            self._ip("-n", self.name, "link", "set", "lo", "up")
            self._ip("-n", self.name, "link", "add", "v0", "type", "veth",
                     "peer", "name", self.INTERFACE)  # fmt: skip
            for link in ("v0", self.INTERFACE):
                self._ip("-n", self.name, "link", "set", link, "up")
            self._ip("-n", self.name, "addr", "add", f"{self.ADDRESS}/64",
                     "dev", self.INTERFACE, "nodad")  # fmt: skip
        except BaseException:
            self.close()
            raise

    def _ip(self, *args: str) -> None:
        subprocess.run([self.ip, *args], check=True, capture_output=True, timeout=30)

    @property
    def prefix(self) -> list[str]:
        """What runs a command inside the namespace."""
        return [self.ip, "netns", "exec", self.name]

    def hosts(self, text: str) -> None:
        """Give commands run in the namespace an /etc/hosts of their own: C{ip
        netns exec} bind-mounts /etc/netns/NAME/hosts over it."""
        self._etc.mkdir(parents=True, exist_ok=True)
        (self._etc / "hosts").write_text(text)

    @property
    def _etc(self) -> Path:
        return Path("/etc/netns") / self.name

    @property
    def zoned(self) -> str:
        """The address with its zone, as a client names it."""
        return f"{self.ADDRESS}%{self.INTERFACE}"

    def close(self) -> None:
        """Remove the namespace (its veth pair goes with it) and its files."""
        subprocess.run([self.ip, "netns", "del", self.name], capture_output=True,
                       timeout=30)  # fmt: skip
        shutil.rmtree(self._etc, ignore_errors=True)
