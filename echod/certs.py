"""``echod cert``: a private CA, a server and a client certificate, to try TLS.

Made with the cryptography library (no shelling out to openssl): P-256 keys,
SHA-256 signatures, a CA valid ten years and leaf certificates valid one year
(with the extensions clients check: subjectAltName, key usage, extended key
usage). Keys are written readable by their owner only.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from echod.cli import parse_arguments

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _alt(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_certificates(
    directory: Path, names: Sequence[str], days: int = 365
) -> list[Path]:
    """Write ca, server and client keys and certificates; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("echod private CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / "ca.key", ca_key)
    _write_cert(directory / "ca.pem", ca)
    written = [directory / "ca.key", directory / "ca.pem"]
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if role == "server" else "echod client"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if role == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_alt(n) for n in names]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(directory / f"{role}.key", key)
        _write_cert(directory / f"{role}.pem", cert)
        written += [directory / f"{role}.key", directory / f"{role}.pem"]
    return written


def main(argv: Sequence[str]) -> int:
    """``echod cert DIRECTORY [NAME...]``."""
    parser = argparse.ArgumentParser(
        prog="echod cert",
        description="Write a private CA, a server certificate for NAMEs and a client "
        "certificate into DIRECTORY, to try TLS and mutual TLS.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument(
        "names",
        nargs="*",
        default=list(DEFAULT_NAMES),
        help="server names (default: localhost 127.0.0.1 ::1)",
    )
    parser.add_argument("--days", type=int, default=365, help="leaf validity (days)")
    args = parse_arguments(parser, argv)
    if isinstance(args, int):
        return args
    try:
        written = make_certificates(args.directory, args.names, args.days)
    except OSError as e:
        sys.stderr.write(f"echod cert: error: {e.strerror}: {e.filename}\n")
        return 1
    d = args.directory
    print("\n".join(str(p) for p in written))
    print(
        "\ntry it:\n"
        f"  twistd -n --pidfile= echod --port ssl:10443 --tls-cert {d}/server.pem "
        f"--tls-key {d}/server.key --tls-client-ca {d}/ca.pem\n"
        f"  echod client --cacert {d}/ca.pem --cert {d}/client.pem "
        f"--key {d}/client.key tls:localhost:10443"
    )
    return 0
