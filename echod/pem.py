"""Reading PEM files for TLS, on the server and the client side alike."""

from __future__ import annotations

from pathlib import Path

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
