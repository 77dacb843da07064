"""curl's C{--retry}: which failures of a fetch are tried again, and when.

A transient failure, as curl counts it: a timeout, a name that did not
resolve, an HTTP 408, 429, 500, 502, 503 or 504 response; a refused
connection too with C{--retry-connrefused}. The first wait is one second and
each next one twice the last, up to ten minutes (curl's), or C{--retry-delay}
each time; a C{Retry-After} header (seconds or an HTTP date) on a response
being retried sets the wait instead, as curl. C{--retry-max-time} starts no
try after that many seconds from the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from echod.clienterrors import DNS, REFUSED, TIMEOUT

RETRY_STATUSES = frozenset((408, 429, 500, 502, 503, 504))
"""The HTTP statuses curl's C{--retry} tries again."""

FIRST_WAIT = 1.0
LONGEST_WAIT = 600.0
"""curl's: one second first, doubled each time, never more than ten minutes."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a transient failure is tried again, and how long
    between the tries (C{--retry}, C{--retry-delay}, C{--retry-max-time},
    C{--retry-connrefused})."""

    retries: int = 0
    delay: float | None = None  # None: curl's doubling from one second
    max_time: float | None = None  # no try starts after this since the first
    connection_refused: bool = False

    def retries_status(self, status: int) -> bool:
        """Whether a response of this status is tried again (if tries are left)."""
        return self.retries > 0 and status in RETRY_STATUSES

    def retries_error(self, code: int) -> bool:
        """Whether a failure with this exit code is tried again."""
        if self.retries == 0:
            return False
        return code in (TIMEOUT, DNS) or (self.connection_refused and code == REFUSED)

    def wait(self, done: int, retry_after: str | None = None, now: float = 0) -> float:
        """Seconds to wait before the try after C{done} retries (0 for the
        first retry): C{Retry-After} when given and readable, else the fixed
        delay, else curl's doubling. C{now} (POSIX time) reads a date."""
        after = retry_after_seconds(retry_after, now)
        if after is not None:
            return after
        if self.delay is not None:
            return self.delay
        return min(FIRST_WAIT * 2.0**done, LONGEST_WAIT)

    def may_start(self, elapsed: float, wait: float) -> bool:
        """Whether a try that would start C{wait} seconds from now, C{elapsed}
        seconds after the first, is within C{--retry-max-time}."""
        return self.max_time is None or elapsed + wait <= self.max_time


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A C{Retry-After} header in seconds from C{now}: its delay-seconds, or
    its HTTP date (never less than 0); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
