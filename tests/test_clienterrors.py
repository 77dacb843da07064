"""Unit tests of echod.clienterrors: a failure's exit code and line."""

from __future__ import annotations

import errno

import pytest
from OpenSSL.SSL import Error as SSLError
from twisted.internet import error
from twisted.python.failure import Failure

from echod.clienterrors import (
    DNS,
    REFUSED,
    RESET,
    TIMEOUT,
    TLS,
    UNREACHABLE,
    USAGE,
    classify,
)


@pytest.mark.parametrize(
    ("exception", "code"),
    [
        (error.DNSLookupError("x"), DNS),
        (error.ConnectionRefusedError(), REFUSED),
        (error.TimeoutError(), TIMEOUT),
        (error.NoRouteError(), UNREACHABLE),
        (SSLError([("SSL routines", "", "certificate verify failed")]), TLS),
        (error.ConnectionLost(), RESET),
        (error.ConnectError(errno.ENOENT, "No such file or directory"), REFUSED),
        (error.ConnectError(errno.EACCES, "Permission denied"), UNREACHABLE),
    ],
)
def test_classify(exception: Exception, code: int) -> None:
    assert classify(Failure(exception)).code == code


def test_a_source_address_that_cannot_be_bound_is_a_usage_error() -> None:
    e = classify(error.ConnectBindError(errno.EADDRNOTAVAIL, "bind"))
    assert e.code == USAGE
    assert str(e) == ("cannot bind the source address: Cannot assign requested address")
