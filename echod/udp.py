"""UDP echo (RFC 862) with the guards that keep it from being a reflector.

A UDP echo answers whoever a datagram claims to come from, so a forged source
address turns it into a traffic reflector. echod therefore never answers:

- a source address C{--allow}/C{--deny} leaves out (L{echod.access});
- source port 0 (not a real sender) or the classic small-service ports
  (echo 7, discard 9, daytime 13, quote 17, chargen 19, time 37), whose
  services answer in turn and would start a loop;
- datagrams larger than the maximum size (dropped, never truncated);
- a source address over its rate: a token bucket per source address allows
  C{rate} datagrams a second with a burst of C{rate}.

Every drop is counted by reason in L{EchoStats.udp_dropped}.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from echod.access import EVERYONE, AccessList
from echod.logs import worth_logging
from echod.settings import UDPSettings
from echod.stats import EchoStats

log = Logger(namespace="echod")

REFLECTING_PORTS = frozenset({0, 7, 9, 13, 17, 19, 37})
"""Source ports never answered: 0 and the small services that answer back."""

MAX_TRACKED_SOURCES = 65536
"""At most this many source addresses are tracked by the rate limiter."""


class SourceRateLimiter:
    """A token bucket per source address, with a bounded table of sources."""

    def __init__(
        self, rate: int, clock: IReactorTime, max_sources: int = MAX_TRACKED_SOURCES
    ) -> None:
        self.rate = float(rate)
        self.clock = clock
        self.max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, source: str) -> bool:
        """Take one token for C{source}; False when it has none left."""
        now = self.clock.seconds()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._forget_full(now)
                if len(self._buckets) >= self.max_sources:
                    return False
            tokens = self.rate
        else:
            tokens, then = bucket
            # A wall clock stepped back (the reactor's clock is the wall
            # clock) must not leave the source owing an hour of tokens.
            elapsed = max(now - then, 0.0)
            tokens = min(self.rate, tokens + elapsed * self.rate)
        if tokens < 1.0:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1.0, now)
        return True

    def _forget_full(self, now: float) -> None:
        """Drop the sources whose buckets have refilled: they owe nothing."""
        refill = self.rate
        full = [
            source
            for source, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * refill >= self.rate
        ]
        for source in full:
            del self._buckets[source]

    def __len__(self) -> int:
        return len(self._buckets)


class UDPEchoProtocol(DatagramProtocol):
    """Echoes datagrams back to their source, behind the reflection guards."""

    noisy = False

    def __init__(
        self,
        settings: UDPSettings,
        stats: EchoStats,
        clock: IReactorTime,
        access: AccessList = EVERYONE,
    ) -> None:
        self.settings = settings
        self.access = access
        self.stats = stats
        self.limiter = SourceRateLimiter(settings.rate, clock)

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        """Echo C{datagram} to C{addr} unless a guard says drop."""
        host, port = addr[0], addr[1]
        if not self.access.permits(host):
            self._drop("denied", host, port)
        elif port in REFLECTING_PORTS:
            self._drop("source-port", host, port)
        elif len(datagram) > self.settings.max_size:
            self._drop("size", host, port)
        elif not self.limiter.allow(host):
            self._drop("rate", host, port)
        else:
            self.stats.udp_datagrams += 1
            assert self.transport is not None
            self.transport.write(datagram, addr)  # type: ignore[call-arg]

    def _drop(self, reason: str, host: str, port: int) -> None:
        dropped = self.stats.udp_dropped
        dropped[reason] += 1
        if worth_logging(dropped[reason]):
            log.warn(
                "udp dropped datagram from {peer}: {reason} ({count} so far)",
                peer=f"{host}:{port}",
                reason=reason,
                count=dropped[reason],
                event="udp-dropped",
            )


def listen_udp(
    reactor: Any, settings: UDPSettings, protocol: DatagramProtocol, max_packet: int
) -> IListeningPort:
    """Listen for UDP on the settings' interface and port.

    Twisted's C{listenUDP} binds C{(interface, port)} as given, which cannot
    carry a link-local IPv6 address's zone (C{fe80::1%eth0}: EINVAL). Such an
    address is bound here with the scope id that getaddrinfo gives, and the
    socket handed to Twisted with C{adoptDatagramPort}.
    """
    if "%" not in settings.interface:
        port: IListeningPort = reactor.listenUDP(
            settings.port,
            protocol,
            interface=settings.interface,
            maxPacketSize=max_packet,
        )
        return port
    try:
        address = socket.getaddrinfo(
            settings.interface, settings.port, socket.AF_INET6, socket.SOCK_DGRAM,
            0, socket.AI_NUMERICHOST,
        )[0][4]  # fmt: skip
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.bind(address)
            adopted: IListeningPort = reactor.adoptDatagramPort(
                sock.fileno(), socket.AF_INET6, protocol, max_packet
            )  # a duplicate of the descriptor: ours is closed on leaving
            return adopted
    except OSError as e:  # socket.gaierror too
        raise CannotListenError(settings.interface, settings.port, e) from None
