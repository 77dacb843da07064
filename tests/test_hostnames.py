"""Unit tests of echod.hostnames: international host names as A-labels."""

from __future__ import annotations

import pytest

from echod.hostnames import HostNameError, ascii_host


@pytest.mark.parametrize(
    ("host", "ascii"),
    [
        ("example.test", "example.test"),
        ("Example.TEST", "Example.TEST"),  # ASCII is left as written
        ("bücher.test", "xn--bcher-kva.test"),
        ("BÜCHER.test.", "xn--bcher-kva.test."),  # UTS #46 maps case; the root dot
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008 (curl, browsers), not fass.de
        ("例え。テスト", "xn--r8jz45g.xn--zckzah"),  # an ideographic full stop
        ("_srv.bücher.test", "_srv.xn--bcher-kva.test"),  # ASCII labels untouched
    ],
)
def test_ascii_host(host: str, ascii: str) -> None:
    assert ascii_host(host) == ascii


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("☃.test", r"bad international host name '☃.test': Codepoint U\+2603"),
        ("a..bücher", "Empty Label"),
        ("ü" * 64 + ".test", "Label too long"),
    ],
)
def test_names_idna_2008_refuses(host: str, says: str) -> None:
    with pytest.raises(HostNameError, match=says):
        ascii_host(host)
