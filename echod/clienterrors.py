"""How echod's clients fail: exit codes, and the one line that says why.

Exit codes (also in the README): 0 fine, 1 a probe saw a lost or wrong echo,
2 bad usage, 3 name not found, 4 connection refused, 5 network or host
unreachable, 6 timeout, 7 TLS failure (certificate or handshake), 8 reset
by the peer. ``echod fetch`` and ``echod bench`` use these and add their own.
"""

from __future__ import annotations

import errno
import os

from OpenSSL.SSL import Error as SSLError
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.python.failure import Failure

from echod.tlsclient import CertificateRejectedError

OK, PROBE_FAILED, USAGE, DNS, REFUSED, UNREACHABLE, TIMEOUT, TLS, RESET = range(9)


class ClientError(Exception):
    """A failure with the exit code it maps to."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def classify(failure: Failure | BaseException) -> ClientError:
    """The exit code and one-line message for a connection failure."""
    e = failure.value if isinstance(failure, Failure) else failure
    if isinstance(e, ClientError):
        return e
    if isinstance(e, error.DNSLookupError):
        return ClientError(DNS, f"cannot resolve the name: {e}")
    if isinstance(e, error.ConnectBindError):
        why = os.strerror(e.osError) if isinstance(e.osError, int) else e
        return ClientError(USAGE, f"cannot bind the source address: {why}")
    if isinstance(e, error.ConnectionRefusedError):
        return ClientError(REFUSED, "connection refused")
    if isinstance(e, (error.TimeoutError, defer.TimeoutError, defer.CancelledError)):
        return ClientError(TIMEOUT, "timed out")
    if isinstance(e, error.NoRouteError):
        return ClientError(UNREACHABLE, "no route to host")
    os_error = (
        getattr(e, "osError", None) if isinstance(e, error.ConnectError) else None
    )
    if os_error in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return ClientError(UNREACHABLE, f"unreachable: {e}")
    if os_error in (errno.ENOENT, errno.ENOTDIR):
        # a UNIX socket path with nothing there: as a TCP port nobody listens on
        return ClientError(REFUSED, "connection refused: no such socket file")
    if os_error in (errno.EACCES, errno.EPERM):
        return ClientError(UNREACHABLE, "permission denied")
    if isinstance(e, VerificationError):
        return ClientError(TLS, f"TLS failure: the certificate does not match: {e}")
    if isinstance(e, CertificateRejectedError):
        return ClientError(TLS, f"TLS failure: {e}")
    if isinstance(e, SSLError):
        reason = "; ".join(str(x[2]) for x in e.args[0] if len(x) > 2) if e.args else ""
        return ClientError(TLS, f"TLS failure: {reason or e}")
    if isinstance(e, (error.ConnectionLost, ConnectionResetError)):
        return ClientError(RESET, "connection reset by the peer")
    if isinstance(e, error.ConnectError):
        text = str(e)
        if "unreachable" in text.lower():
            return ClientError(UNREACHABLE, text)
        if "refused" in text.lower():
            return ClientError(REFUSED, "connection refused")
        return ClientError(UNREACHABLE, text)
    return ClientError(RESET, f"connection failed: {e}")
