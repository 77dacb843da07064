"""``echod fetch -w FORMAT``: curl's ``--write-out``, for scripts.

``echod fetch -s -o /dev/null -w '%{http_code}\\n' URL`` prints the status as
curl does, ``000`` when there was no response. The format takes curl's
variables (L{VARIABLES}), ``%%`` for a percent sign and the escapes ``\\n``,
``\\r``, ``\\t`` and ``\\\\``; ``@FILE`` reads the format from FILE (``@-``:
stdin). An unknown variable is a usage error, before anything is sent
(curl warns and leaves it out).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from echod.fetch import FetchResult


@dataclass(frozen=True)
class Outcome:
    """What C{-w} reports: the result when there was one, and the exit."""

    result: FetchResult | None
    exit_code: int
    error: str = ""
    elapsed: float = 0.0
    """Seconds from the start to the end, for a fetch that failed."""
    retries: int = 0
    """Tries made again after transient failures (C{--retry})."""


def _final_status(o: Outcome) -> str:
    if o.result is None:
        return "000"
    return f"{o.result.head.status:03d}"


def _seconds(step: str) -> Callable[[Outcome], str]:
    def value(o: Outcome) -> str:
        if o.result is None:
            return f"{o.elapsed:.6f}" if step == "total" else "0.000000"
        seconds = getattr(o.result.timing, step)
        return f"{seconds or 0.0:.6f}"

    return value


def _address(which: str, part: int) -> Callable[[Outcome], str]:
    """The IP address (0) or port (1) of C{result.peer_address} or
    C{result.local_address}: empty and 0 without one (no connection; our end
    of a UNIX socket), as curl."""

    def value(o: Outcome) -> str:
        address = getattr(o.result, which) if o.result is not None else None
        if address is None:
            return "" if part == 0 else "0"
        return str(address[part])

    return value


def _redirects(o: Outcome) -> str:
    if o.result is None:
        return "0"
    return str(max(0, sum(1 for h in o.result.heads if h.status >= 200) - 1))


def _header(name: str) -> Callable[[Outcome], str]:
    return lambda o: (o.result.head.header(name) or "") if o.result else ""


def _speed(o: Outcome) -> str:
    if o.result is None or not o.result.timing.total:
        return "0"
    return f"{o.result.body_bytes / o.result.timing.total:.0f}"


VARIABLES: dict[str, Callable[[Outcome], str]] = {
    "http_code": _final_status,
    "response_code": _final_status,
    "http_version": lambda o: o.result.head.http_version if o.result else "0",
    "num_redirects": _redirects,
    "num_retries": lambda o: str(o.retries),
    "url_effective": lambda o: str(o.result.url) if o.result else "",
    "scheme": lambda o: o.result.url.scheme.upper() if o.result else "",
    "content_type": _header("content-type"),
    "redirect_url": _header("location"),
    "remote_ip": _address("peer_address", 0),
    "remote_port": _address("peer_address", 1),
    "local_ip": _address("local_address", 0),
    "local_port": _address("local_address", 1),
    "size_download": lambda o: str(o.result.body_bytes) if o.result else "0",
    "size_header": lambda o: (
        str(sum(len(h.raw) for h in o.result.heads)) if o.result else "0"
    ),
    "size_request": lambda o: str(len(o.result.request)) if o.result else "0",
    "speed_download": _speed,
    "time_namelookup": _seconds("dns"),
    "time_connect": _seconds("connect"),
    "time_appconnect": _seconds("tls"),
    "time_starttransfer": _seconds("first_byte"),
    "time_total": _seconds("total"),
    "exitcode": lambda o: str(o.exit_code),
    "errormsg": lambda o: o.error,
}
"""curl's C{--write-out} variables that a fetch knows, by name."""

_PIECE = re.compile(r"%\{([^}]*)\}|%%|\\[nrt\\]|[^%\\]+|.", re.DOTALL)
_ESCAPES = {"%%": "%", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\"}


class WriteOutError(ValueError):
    """A C{-w} format names a variable echod does not know."""


@dataclass(frozen=True)
class WriteOut:
    """A parsed C{-w} format: text and variables, in order."""

    pieces: tuple[tuple[bool, str], ...]
    """(is a variable, text or variable name)."""

    @classmethod
    def parse(cls, text: str) -> WriteOut:
        """The format C{text}; L{WriteOutError} for an unknown variable."""
        pieces: list[tuple[bool, str]] = []
        for match in _PIECE.finditer(text):
            name = match.group(1)
            if name is not None:
                if name not in VARIABLES:
                    known = ", ".join(sorted(VARIABLES))
                    raise WriteOutError(
                        f"-w: unknown variable %{{{name}}} (known: {known})"
                    )
                pieces.append((True, name))
            else:
                piece = match.group(0)
                pieces.append((False, _ESCAPES.get(piece, piece)))
        return cls(tuple(pieces))

    def render(self, outcome: Outcome) -> str:
        """The format with each variable's value for C{outcome}."""
        return "".join(
            VARIABLES[text](outcome) if variable else text
            for variable, text in self.pieces
        )
