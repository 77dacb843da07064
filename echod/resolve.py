"""Name lookup through the reactor's resolver, for the clients."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer


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
    reactor: Any, host: str, port: int, semantics: str = "TCP"
) -> list[str]:
    """The addresses of C{host}, in the resolver's order, without repeats.

    Empty when the name has none; the resolver's own errors propagate.
    """
    receiver = AddressCollector()
    reactor.nameResolver.resolveHostName(
        receiver, host, port, transportSemantics=semantics
    )
    found = await receiver.done
    return list(dict.fromkeys(address.host for address in found))
