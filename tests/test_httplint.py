"""Unit tests of echod.httplint: what a raw response head did wrong."""

from __future__ import annotations

import pytest

from echod.httplint import lint_head


@pytest.mark.parametrize(
    ("raw", "warnings"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", []),
        (b"HTTP/1.1 200 OK\nA: b\r\n\n",
         ["2 line(s) end with a bare LF instead of CRLF"]),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n",
         ["Content-Length appears 2 times"]),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         ["conflicting Content-Length headers: 1, 2"]),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         ["both Transfer-Encoding and Content-Length (Content-Length is ignored)"]),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n  folded\r\n\r\n",
         ["obsolete line folding (a header line starts with space)"]),
        (b"HTTP/1.1 200 OK\r\nA : b\r\nnocolon\r\n\r\n",
         ["whitespace before the colon in b'A'",
          "a header line without a colon: b'nocolon'"]),
    ],
)  # fmt: skip
def test_lint_head(raw: bytes, warnings: list[str]) -> None:
    assert lint_head(raw) == warnings
