"""Unit tests of echod.pem."""

from __future__ import annotations

from pathlib import Path

import pytest

from echod.pem import (
    certificate_blocks,
    encrypted_key_error,
    no_pass_phrase,
    read_file,
)


def test_certificate_blocks() -> None:
    one = b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----"
    two = b"-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----"
    assert certificate_blocks(b"junk\n" + one + b"\n" + two + b"\n") == [
        b"junk\n" + one,
        b"\n" + two,
    ]
    assert certificate_blocks(b"-----BEGIN PRIVATE KEY-----\n") == []


def test_read_file_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read key '.*nope': No such file"):
        read_file(tmp_path / "nope", "key", ValueError)


@pytest.mark.parametrize(
    ("text", "encrypted"),
    [
        (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n", True),  # PKCS#8
        (  # OpenSSL's traditional format
            b"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
            b"DEK-Info: AES-256-CBC,00\n\nMHc\n",
            True,
        ),
        (b"-----BEGIN PRIVATE KEY-----\nMIGH\n", False),
        (b"-----BEGIN EC PRIVATE KEY-----\nMHc\n", False),
    ],
)
def test_encrypted_keys_are_named(text: bytes, encrypted: bool) -> None:
    message = encrypted_key_error(Path("k.pem"), text)
    if encrypted:
        assert message is not None
        assert message.startswith("the key 'k.pem' is encrypted with a pass phrase")
    else:
        assert message is None


def test_no_pass_phrase_is_given() -> None:
    assert no_pass_phrase(1024, False, None) == b""
