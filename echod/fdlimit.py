"""The file limit: raised to the hard limit at start, and the connections it allows.

Each connection holds a file descriptor. Past the process's limit, accept()
fails with EMFILE; Twisted then closes waiting clients with a reserved
descriptor, but echod would neither log nor count them. So, as HAProxy derives
its maxconn from the file limit, echod refuses (logged, counted, reason
C{file-limit}) once open connections reach the limit less L{RESERVE}, which
is kept for listeners, logs, metrics scrapes, TLS files read on reload and
Twisted's own reserved descriptor.
"""

from __future__ import annotations

import resource

RESERVE = 64
CEILING = 1 << 20  # when the hard limit is unlimited


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return CEILING if soft == resource.RLIM_INFINITY else soft


def connection_cap(file_limit: int) -> int:
    """How many connections a file limit allows (0: not checked)."""
    if file_limit <= 0:
        return 0
    return max(1, file_limit - RESERVE)
