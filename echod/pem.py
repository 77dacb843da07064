"""Reading PEM files for TLS, on the server and the client side alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

END_CERTIFICATE = b"-----END CERTIFICATE-----"
ENCRYPTED_KEY_MARKS = (
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----",
    b"Proc-Type: 4,ENCRYPTED",
)
"""How PKCS#8 and OpenSSL's traditional PEM mark a key that needs a pass phrase."""


def no_pass_phrase(*_: object) -> bytes:
    """A pass phrase callback that gives none: OpenSSL's own asks on the
    terminal, which would block a script (and a daemon, at start and on every
    reload; the daemon refuses an encrypted key by its PEM marks first)."""
    return b""


def encrypted_key_error(path: Path, data: bytes) -> str | None:
    """Why a key file cannot be used if it is encrypted, else None."""
    if not any(mark in data for mark in ENCRYPTED_KEY_MARKS):
        return None
    return (
        f"the key {str(path)!r} is encrypted with a pass phrase, which echod does "
        f"not ask for: decrypt it first (openssl pkey -in KEY -out KEY.plain)"
    )


def read_file(path: Path, what: str, error: type[Exception]) -> bytes:
    """The bytes of C{path}, or C{error} saying which file could not be read."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise error(f"cannot read {what} {str(path)!r}: {e.strerror}") from None


def certificate_blocks(data: bytes) -> list[bytes]:
    """Each PEM certificate in C{data} (a CA bundle may hold several)."""
    return [
        block + END_CERTIFICATE
        for block in data.split(END_CERTIFICATE)
        if b"-----BEGIN CERTIFICATE" in block
    ]


def load_certificates(
    path: Path, parse: Callable[[bytes], T], error: type[Exception]
) -> list[T]:
    """Every certificate of a CA file, parsed; C{error} if one is bad or none is."""
    certificates = []
    for block in certificate_blocks(read_file(path, "CA file", error)):
        try:
            certificates.append(parse(block))
        except Exception:
            raise error(f"bad certificate in CA file {str(path)!r}") from None
    if not certificates:
        raise error(f"no certificate in CA file {str(path)!r}")
    return certificates
