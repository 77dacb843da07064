"""Unit tests of echod.pem."""

from __future__ import annotations

from pathlib import Path

import pytest

from echod.pem import certificate_blocks, read_file


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
