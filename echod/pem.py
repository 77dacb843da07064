"""Reading PEM files for TLS, on the server and the client side alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

END_CERTIFICATE = b"-----END CERTIFICATE-----"


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
