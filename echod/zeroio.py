"""``echod client -z``, as nc's: connect, finish any TLS handshake, send
nothing, close cleanly."""

from __future__ import annotations

import sys
from typing import Any

from OpenSSL.SSL import Error as SSLError
from twisted.internet import defer
from twisted.python.failure import Failure

from echod.clienterrors import OK, classify
from echod.session import Session, abort, when_usable
from echod.target import Target

ZERO_IO_HANDSHAKE_TIMEOUT = 10.0
"""Seconds C{-z} waits for a TLS handshake without C{--timeout}."""


def run_zero(
    session: Session, target: Target, timeout: float | None, reactor: Any
) -> defer.Deferred[int]:
    """C{-z}, as nc's: prove the connection (and the TLS handshake, within
    C{timeout} seconds), send nothing, close cleanly; 0, or the code of how it
    failed.

    Over TLS the close waits (as long again at most) for the server's answer
    to our close_notify: under TLS 1.3 a server judges the client's
    certificate after the client has finished its handshake, so a refusal
    (no client certificate, or one it does not trust) arrives as an alert
    only then.
    """
    done: defer.Deferred[int] = defer.Deferred()

    def close(_: object) -> None:
        def closed(reason: Failure | None) -> None:
            if waiting.active():
                waiting.cancel()
            if reason is not None and reason.check(SSLError):
                failed(reason)  # the server's alert: refused after all
            elif not done.called:
                done.callback(OK)

        waiting = reactor.callLater(
            timeout or ZERO_IO_HANDSHAKE_TIMEOUT,
            session.transport.abortConnection,  # type: ignore[union-attr]
        )
        session.on_close(closed)
        session.transport.loseConnection()  # type: ignore[union-attr]

    def failed(failure: Failure) -> None:
        if done.called:
            return
        error = classify(failure)
        sys.stderr.write(f"echod client: {target.label()}: {error}\n")
        done.callback(error.code)

    usable = when_usable(session, target.tls)
    if target.tls:
        usable.addTimeout(timeout or ZERO_IO_HANDSHAKE_TIMEOUT, reactor)
    usable.addCallbacks(close, failed)
    done.addCallback(lambda code: code if code == OK else abort(session, code))
    return done
