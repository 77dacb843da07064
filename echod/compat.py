"""Which Twisted releases echod's refinements of Twisted internals were tested with."""

from __future__ import annotations

from functools import cache

from twisted.python.versions import Version

import twisted

TESTED_TWISTED = (Version("Twisted", 26, 4, 0), Version("Twisted", 26, 10, 0))
"""The oldest and newest Twisted releases the refinements were tested with."""


def installed_twisted() -> Version:
    """The running Twisted's version."""
    parts = [int(p) for p in twisted.__version__.split(".")[:3] if p.isdigit()]
    parts += [0] * (3 - len(parts))
    return Version("Twisted", *parts)


def twisted_tested(version: Version | None = None) -> bool:
    """True if C{version} (default: the running one) is in the tested range.

    Outside it echod uses Twisted's public paths only: slower, never wrong.
    """
    version = version or installed_twisted()
    low, high = TESTED_TWISTED
    return bool(low <= version) and bool(version <= high)


@cache
def running_twisted_tested() -> bool:
    """L{twisted_tested} for the running Twisted, worked out once: it is asked
    for every connection, and the version does not change under a process."""
    return twisted_tested()
