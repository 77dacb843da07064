"""Name lookup through the reactor's resolver, for the clients.

Also C{-4} and C{-6} (as curl, nc and ncat have them): a lookup of one IP
version only, for L{resolve_host} and for Twisted's C{HostnameEndpoint}.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from zope.interface import implementer

from echod.clienterrors import DNS, TIMEOUT, ClientError

ADDRESS_TYPES: dict[int, type[IAddress]] = {4: IPv4Address, 6: IPv6Address}
"""The Twisted address type of each IP version C{-4}/C{-6} can ask for."""


class AddressCollector:
    """An IResolutionReceiver that collects what the reactor's resolver finds."""

    def __init__(self) -> None:
        self.found: list[Any] = []
        self.done: defer.Deferred[list[Any]] = defer.Deferred()

    def resolutionBegan(self, resolution: Any) -> None:
        """Nothing to do."""

    def addressResolved(self, address: Any) -> None:
        """Keep the address."""
        self.found.append(address)

    def resolutionComplete(self) -> None:
        """Hand over what was found."""
        self.done.callback(self.found)


async def resolve_host(
    reactor: Any,
    host: str,
    port: int,
    semantics: str = "TCP",
    family: int | None = None,
) -> list[str]:
    """The addresses of C{host}, in the resolver's order, without repeats.

    Only those of IP version C{family} (4 or 6) when it is given. Empty when
    the name has none; the resolver's own errors propagate.
    """
    receiver = AddressCollector()
    types = None if family is None else [ADDRESS_TYPES[family]]
    reactor.nameResolver.resolveHostName(
        receiver, host, port, addressTypes=types, transportSemantics=semantics
    )
    found = await receiver.done
    return list(dict.fromkeys(address.host for address in found))


async def addresses_of(
    reactor: Any,
    host: str,
    port: int,
    family: int | None = None,
    *,
    timeout: float | None = None,
    semantics: str = "TCP",
    flag: str = "",
) -> list[str]:
    """The addresses of the name C{host} (L{resolve_host}), at least one, for
    the clients: a lookup that finds none, fails or outlasts C{timeout}
    seconds is a L{ClientError} (DNS, TIMEOUT) naming C{host}, and C{flag},
    the option that asked for IP version C{family}, when one did."""
    lookup = defer.ensureDeferred(resolve_host(reactor, host, port, semantics, family))
    if timeout is not None:
        lookup.addTimeout(timeout, reactor)
    which = ""
    if family is not None:
        which = f" to an IPv{family} address ({flag or f'-{family}'})"
    try:
        found = await lookup
    except defer.TimeoutError:
        raise ClientError(TIMEOUT, f"name lookup timed out ({host!r})") from None
    except Exception as e:
        raise ClientError(
            DNS, f"cannot resolve the name {host!r}{which}: {e}"
        ) from None
    if not found:
        raise ClientError(DNS, f"cannot resolve the name {host!r}{which}")
    return found


def family_of(
    family: int | None, source: str | None, option: str
) -> tuple[int | None, str]:
    """The IP version a connection keeps to, and the option that says so:
    C{-4}/C{-6}, or else the version of the source address given with
    C{option} (C{--source}, C{--interface}); C{(None, "")} for any."""
    if family is not None:
        return family, f"-{family}"
    if source is not None:
        return source_family(source, None, option), f"{option} {source}"
    return None, ""


def ip_version(host: str) -> int | None:
    """4 or 6 for an IP address (an IPv6 one perhaps with its zone), None for
    a name."""
    try:
        return ipaddress.ip_address(host.partition("%")[0]).version
    except ValueError:
        return None


def source_family(source: str, family: int | None, option: str) -> int:
    """The IP version of C{source}, a local address given with C{option}
    (C{--source}, C{--interface}); ValueError, saying why, when it is not an
    IP address, or not of the version C{-4}/C{-6} (C{family}) asks for."""
    version = ip_version(source)
    if version is None:
        raise ValueError(
            f"{option} {source!r}: not an IP address (interface and host names "
            "are not taken)"
        )
    if family not in (None, version):
        raise ValueError(
            f"{option} {source} is an IPv{version} address, and -{family} asks "
            f"for IPv{family}"
        )
    return version


def family_mismatch(
    host: str, family: int | None, asked: str | None = None
) -> str | None:
    """Why C{-4}/C{-6} cannot reach C{host}, an address of the other IP
    version; None for a name, or an address of the version asked for.

    C{asked} says what asked for C{family} (C{-6 asks for IPv6} unless given).
    """
    version = ip_version(host)
    if family is None or version in (None, family):
        return None
    asked = asked or f"-{family} asks for IPv{family}"
    return f"{asked}, and {host} is an IPv{version} address"


@implementer(IHostnameResolver)
class FamilyResolver:
    """A name resolver that finds the addresses of one IP version only."""

    def __init__(self, resolver: IHostnameResolver, family: int) -> None:
        self.resolver = resolver
        self.family = family

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        """Resolve C{hostName} with the resolver, to this family's addresses."""
        return self.resolver.resolveHostName(
            resolutionReceiver,
            hostName,
            portNumber,
            [ADDRESS_TYPES[self.family]],
            transportSemantics,
        )


@implementer(IReactorPluggableNameResolver)
class ReactorOfOneFamily:
    """The reactor, with a name resolver of one IP version.

    Twisted's C{HostnameEndpoint} (happy eyeballs over every address found)
    has no option for the address family: it asks the reactor it is given
    for its C{nameResolver}. This gives it a L{FamilyResolver} and hands
    everything else to the real reactor.
    """

    def __init__(self, reactor: Any, family: int) -> None:
        self._reactor = reactor
        self.nameResolver: IHostnameResolver = FamilyResolver(
            reactor.nameResolver, family
        )

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        """Not done here: install it on the real reactor."""
        raise NotImplementedError("install a name resolver on the reactor itself")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)
