"""Admission control: how many connections, in all and per client address."""

from __future__ import annotations

from collections import Counter

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress


def plain_host(host: str) -> str:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it is."""
    if host.startswith("::ffff:") and "." in host:
        return host[len("::ffff:") :]
    return host


def client_key(address: IAddress) -> str | None:
    """The per-client key of a peer address: its IP, or None (UNIX sockets)."""
    if isinstance(address, (IPv4Address, IPv6Address)):
        return plain_host(address.host)
    return None


class ConnectionLimits:
    """Counts admitted connections and says why a new one must be refused."""

    def __init__(self, max_connections: int, max_per_ip: int, fd_cap: int = 0) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.fd_cap = fd_cap
        """Connections the file limit allows (echod.fdlimit); 0: not checked."""
        self.open = 0
        self.pending = 0
        """Connections accepted that wait for their PROXY header (C{haproxy:}):
        not admitted yet, but holding a socket each."""
        self._per_key: Counter[str] = Counter()

    def _total_refusal(self, held: int) -> str | None:
        """The reason to refuse one more connection when C{held} are held."""
        if self.max_connections and held >= self.max_connections:
            return "max-connections"
        if self.fd_cap and held >= self.fd_cap:
            return "file-limit"
        return None

    def refusal_at_accept(self) -> str | None:
        """The reason to close a connection at once, before its PROXY header
        says whose it is: the totals alone, counting connections that still
        wait for a header (as HAProxy's maxconn counts every accepted one)."""
        return self._total_refusal(self.open + self.pending)

    def refusal(self, key: str | None) -> str | None:
        """The reason to refuse a new connection from C{key}, or None to admit."""
        total = self._total_refusal(self.open)
        if total is not None:
            return total
        if (
            self.max_per_ip
            and key is not None
            and self._per_key[key] >= self.max_per_ip
        ):
            return "max-per-ip"
        return None

    def acquire(self, key: str | None) -> None:
        """Count a connection that was admitted."""
        self.open += 1
        if key is not None:
            self._per_key[key] += 1

    def release(self, key: str | None) -> None:
        """Forget a connection that has ended."""
        self.open -= 1
        if key is not None:
            self._per_key[key] -= 1
            if self._per_key[key] <= 0:
                del self._per_key[key]

    def open_for(self, key: str) -> int:
        """How many connections from C{key} are open."""
        return self._per_key.get(key, 0)
