"""Endpoint-string errors in the words of the string, not of Twisted's parsers."""

from __future__ import annotations

import re


def parse_error_message(error: Exception) -> str:
    """What Twisted's endpoint parsers raised, in the words of an endpoint string.

    The parsers are Python functions (or endpoint classes) called with the
    string's fields as arguments, so a missing or unknown field arrives as a
    C{TypeError} about C{_parseTCP()} or C{TCP4ClientEndpoint.__init__()},
    and a port that is not a number as C{int()}'s complaint.
    """
    message = str(error) or error.__class__.__name__
    if isinstance(error, TypeError):
        missing = re.search(
            r"missing \d+ required positional arguments?: (.+)", message
        )
        if missing:
            return f"missing {missing.group(1)}"
        unknown = re.search(r"unexpected keyword argument ('.+')", message)
        if unknown:
            return f"unknown parameter {unknown.group(1)}"
    not_int = re.fullmatch(r"invalid literal for int\(\) with base 10: (.+)", message)
    if not_int:
        return f"{not_int.group(1)} is not a number"
    return message


def empty_unix_path(description: str) -> bool:
    """True for a C{unix:} endpoint string whose socket path is empty.

    Twisted's parsers take an empty path; binding or connecting then fails
    with a bare "Invalid argument" or a lock-file error.
    """
    kind, _, rest = description.partition(":")
    if kind != "unix":
        return False
    for part in rest.split(":"):
        name, equals, value = part.partition("=")
        if not equals:  # the path, given by position
            return part == ""
        if name in ("address", "path"):  # by name: server, client
            return value == ""
    return False
