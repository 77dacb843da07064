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


def private_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A private CA: (key, certificate)."""
    openssl = need_tool("openssl")
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


def issue(
    directory: Path, ca: tuple[Path, Path], name: str, san: str = "DNS:localhost"
) -> tuple[Path, Path]:
    """A key and a certificate for C{name} (subjectAltName C{san}) signed by C{ca}."""
    openssl = need_tool("openssl")
    key, csr, cert = (directory / f"{name}{s}" for s in (".key", ".csr", ".pem"))
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    subprocess.run(
        [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey",
         str(ca[0]), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
         "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert
