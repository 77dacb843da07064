"""``echod cert``: a private CA, a server and a client certificate, to try TLS.

Made with the cryptography library (no shelling out to openssl): P-256 keys,
SHA-256 signatures, a CA valid ten years and leaf certificates valid one year
(with the extensions clients check: subjectAltName, key usage, extended key
usage). Keys are written readable by their owner only.

Run again on the same directory, it keeps the CA there (as mkcert keeps its
own) and issues new server and client certificates from it, so that whatever
already trusts that CA goes on trusting what it signs.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from echod.cli import parse_arguments

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_DAYS = 3650
"""The longest leaf validity: the CA's own (ten years)."""

DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


class CertificateError(Exception):
    """What C{echod cert} cannot do, in one line."""


def server_name(text: str) -> str:
    """C{text} as a subjectAltName: an IP address, or a DNS name in ASCII.

    A Unicode name is turned into its A-label (C{xn--}) form, as mkcert does;
    anything else that is not a host name is refused (L{CertificateError}).
    """
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        name = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise CertificateError(f"bad name {text!r}: not a host name") from None
    labels = name.removeprefix("*.").rstrip(".").split(".")
    if len(name) > 253 or not all(DNS_LABEL.fullmatch(label) for label in labels):
        raise CertificateError(
            f"bad name {text!r}: expected a host name (such as echo.example, "
            "or *.example for a wildcard) or an IP address"
        )
    return name


def _name(common: str) -> x509.Name:
    if len(common) > 64:  # the longest common name X.509 allows
        common = "echod server"
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


def new_ca(
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh CA key and its self-signed certificate, valid ten years."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("echod private CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=MAX_DAYS))
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
    return ca_key, ca


def existing_ca(
    key_path: Path, cert_path: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA a previous run left, or L{CertificateError} saying what is wrong."""
    keep = "(move it away to make a new CA)"
    for there, missing in ((cert_path, key_path), (key_path, cert_path)):
        if not missing.exists():
            raise CertificateError(f"{there} is there without {missing.name} {keep}")
    try:
        ca = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        raise CertificateError(f"{cert_path}: not a PEM certificate {keep}") from None
    try:
        ca_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (ValueError, TypeError):
        raise CertificateError(
            f"{key_path}: not an unencrypted PEM private key {keep}"
        ) from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or (
        ca_key.public_key() != ca.public_key()
    ):  # echod's CAs are P-256; another key type is someone else's CA
        raise CertificateError(f"{key_path} is not the key of {cert_path} {keep}")
    return ca_key, ca


def make_certificates(
    directory: Path, names: Sequence[str], days: int = 365
) -> list[Path]:
    """Write server and client keys and certificates, and a CA unless one is there.

    Return the paths written. L{CertificateError} if a name or C{days} is bad
    or the CA there cannot be used.
    """
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"--days {days}: expected 1 to {MAX_DAYS}")
    names = [server_name(n) for n in names]
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(minutes=5)
    if key_path.exists() or cert_path.exists():
        ca_key, ca = existing_ca(key_path, cert_path)
        written = []
    else:
        ca_key, ca = new_ca(now)
        _write_key(key_path, ca_key)
        _write_cert(cert_path, ca)
        written = [key_path, cert_path]
    ca_name = ca.subject
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
    except CertificateError as e:
        sys.stderr.write(f"echod cert: error: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"echod cert: error: {e.strerror}: {e.filename}\n")
        return 1
    d = args.directory
    if d / "ca.pem" not in written:
        print(f"(kept the CA already in {d}: ca.pem, ca.key)")
    print("\n".join(str(p) for p in written))
    print(
        "\ntry it:\n"
        f"  twistd -n --pidfile= echod --port ssl:10443 --tls-cert {d}/server.pem "
        f"--tls-key {d}/server.key --tls-client-ca {d}/ca.pem\n"
        f"  echod client --cacert {d}/ca.pem --cert {d}/client.pem "
        f"--key {d}/client.key tls:localhost:10443"
    )
    return 0
