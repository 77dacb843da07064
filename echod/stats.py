"""Counters shared by every listener of one daemon."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

REFUSAL_REASONS = (
    "max-connections",
    "max-per-ip",
    "file-limit",
    "draining",
    "bad-proxy-header",
    "denied",
)
"""Every reason an echo connection is refused for (each is always exported)."""

UDP_DROP_REASONS = ("denied", "source-port", "size", "rate")
"""Every reason a UDP datagram is dropped for (each is always exported)."""

RELOADED = ("tls", "access")
"""What SIGHUP reloads: the TLS key pairs, the access files (each always exported)."""

MAX_TLS_KINDS = 64
"""The most (terminated, version, cipher) kinds counted apart. A proxy's PROXY
v2 header names its version and cipher in free text; past this many kinds
(a real deployment has a handful) the rest count as version and cipher
C{other}, so neither memory nor the metric's series grow with what headers
say."""


@dataclass
class EchoStats:
    """What the daemon has done since it started; one instance per daemon."""

    connections_open: int = 0
    connections_total: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    """Refused connections by reason (L{REFUSAL_REASONS})."""
    closed: Counter[str] = field(default_factory=Counter)
    """Closed connections by why they ended (client closed, idle timeout, ...)."""
    tls_handshake_failures: int = 0
    """TLS connections that ended in an OpenSSL error before any byte echoed."""
    tls_sessions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """Ended TLS connections whose handshake finished, by where TLS ended
    (C{echod}, or C{proxy} per a PROXY v2 header), version and cipher."""
    bytes_in: int = 0
    bytes_out: int = 0
    udp_datagrams: int = 0
    udp_dropped: Counter[str] = field(default_factory=Counter)
    """Dropped datagrams by reason (L{UDP_DROP_REASONS})."""
    metrics_refused: int = 0
    """Connections to the metrics listener refused (too many open at once)."""
    accepted_by: Counter[str] = field(default_factory=Counter)
    """Connections accepted, by the endpoint string of the listener they came by."""
    reloads: Counter[tuple[str, bool]] = field(default_factory=Counter)
    """SIGHUP reloads by what (L{RELOADED}) and whether they took."""
    reload_failing: set[str] = field(default_factory=set)
    """The kinds (L{RELOADED}) whose last reload was refused: their old
    state stays in force."""

    def tls_kind(self, key: tuple[str, str, str]) -> tuple[str, str, str]:
        """What a TLS session (where it ended, version, cipher) counts as:
        itself, or C{other} once L{MAX_TLS_KINDS} kinds are counted."""
        if key in self.tls_sessions or len(self.tls_sessions) < MAX_TLS_KINDS:
            return key
        return (key[0], "other", "other")

    def note_tls_session(self, key: tuple[str, str, str]) -> None:
        """Count an ended TLS session (see L{tls_kind})."""
        self.tls_sessions[self.tls_kind(key)] += 1

    def note_reload(self, what: str, took: bool) -> None:
        """A reload of C{what} (L{RELOADED}) took, or was refused."""
        self.reloads[what, took] += 1
        if took:
            self.reload_failing.discard(what)
        else:
            self.reload_failing.add(what)

    def summary(self) -> str:
        """One line that sums the counters up, for the log at stop."""
        refused = ", ".join(f"{k}={v}" for k, v in sorted(self.refused.items()))
        closed = ", ".join(f"{k}={v}" for k, v in sorted(self.closed.items()))
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(self.udp_dropped.items()))
        return (
            f"connections={self.connections_total} open={self.connections_open} "
            f"bytes_in={self.bytes_in} bytes_out={self.bytes_out} "
            f"closed=[{closed}] refused=[{refused}] "
            f"tls_handshake_failures={self.tls_handshake_failures} "
            f"udp_datagrams={self.udp_datagrams} udp_dropped=[{dropped}]"
        )
