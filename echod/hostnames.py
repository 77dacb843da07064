"""Internationalized host names, as they go on the wire.

A host name outside ASCII (C{bücher.example}) is looked up, sent in the
Host header and checked against a certificate as its A-labels
(C{xn--bcher-kva.example}). The conversion is IDNA 2008 with UTS #46
mapping, non-transitional, as curl does it with libidn2 (and browsers):
C{faß.de} is C{xn--fa-hia.de}, not C{fass.de} as Python's own C{idna} codec
(IDNA 2003) would make it. Labels already in ASCII are left as written, so
C{_service.bücher.example} keeps its underscore.
"""

from __future__ import annotations

import idna


class HostNameError(ValueError):
    """A host name that cannot be written in ASCII; the message says why."""


def ascii_host(host: str) -> str:
    """C{host} with every label outside ASCII as its A-label.

    An ASCII host is returned unchanged. Raises L{HostNameError} for a name
    IDNA 2008 does not allow (a symbol such as U+2603, a label of more than
    63 bytes, an empty label).
    """
    if host.isascii():
        return host
    try:
        mapped = idna.uts46_remap(host, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        ]
        if any(not label for label in labels[:-1]):
            raise idna.IDNAError("Empty Label")
    except idna.IDNAError as e:
        raise HostNameError(f"bad international host name {host!r}: {e}") from None
    return ".".join(labels)


def host_port(host: str, port: object) -> str:
    """C{host:port}, an IPv6 address in brackets (C{[::1]:7})."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
