"""The layers of a connection's transport: a protocol's transport, and the
transports under it (TLS over a PROXY header over TCP, ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_LAYERS = 4
"""More than echod ever stacks: TLS, the PROXY header, an access check, TCP."""


def layers(transport: Any) -> Iterator[Any]:
    """C{transport}, then each transport under it (a wrapper's C{transport}),
    at most L{MAX_LAYERS}."""
    for _ in range(MAX_LAYERS):
        if transport is None:
            return
        yield transport
        transport = getattr(transport, "transport", None)
