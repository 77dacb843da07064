"""Certificates for tests, made with the real openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.daemon import need_tool


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for localhost (P-256, two days)."""
    openssl = need_tool("openssl")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert
