"""Reference: the minimal Twisted echo (twisted.protocols.wire.Echo style).

No half-close (the tail is lost at EOF) and no backpressure.
"""

from __future__ import annotations

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    """Writes back what it reads."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def main() -> None:
    factory = protocol.Factory.forProtocol(Echo)
    reactor.listenTCP(int(sys.argv[1]), factory, backlog=4096, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
