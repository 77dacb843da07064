"""IPv6 zones: a link-local address (fe80::/10) names its interface.

Linux refuses to bind or connect a link-local address without a zone (the
interface: C{fe80::1%eth0}), with a bare "Invalid argument". echod's clients
and the daemon's C{--udp} say what is missing before they try.
"""

from __future__ import annotations

import ipaddress


def needs_zone(host: str) -> bool:
    """True for a link-local IPv6 address written without its zone."""
    if "%" in host:
        return False
    try:
        return ipaddress.IPv6Address(host).is_link_local
    except ValueError:
        return False


def missing_zone(host: str, example: str) -> str:
    """The one-line complaint for C{host}, ending with how to write it."""
    return (
        f"{host} is a link-local address: it needs its zone, the interface it "
        f"is on, as in {example}"
    )
