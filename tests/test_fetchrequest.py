"""Unit tests of echod.fetchrequest: URLs taken apart, request bytes built by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from echod.fetchrequest import (
    URL,
    Request,
    RequestError,
    basic_authorization,
    parse_header,
    parse_url,
    redirect_url,
    without_dot_segments,
)


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://example.test", URL("http", "example.test", 80, "/")),
        ("https://e.test/a/b?x=1&y", URL("https", "e.test", 443, "/a/b?x=1&y")),
        ("http://[::1]:8080/p#frag", URL("http", "::1", 8080, "/p")),
        ("HTTP://Example.test:80/%20x", URL("http", "example.test", 80, "/%20x")),
        ("http://h/?", URL("http", "h", 80, "/?")),
        # RFC 6874 zones; the interface keeps its case (urlsplit lowers it)
        ("http://[fe80::1%25Eth0]:8080/", URL("http", "fe80::1%Eth0", 8080, "/")),
        ("http://[fe80::1%eth0]/", URL("http", "fe80::1%eth0", 80, "/")),
        ("http://u:p@[fe80::1%25v1]/", URL("http", "fe80::1%v1", 80, "/", "u:p")),
        # international names as their A-labels (IDNA 2008, UTS #46), as curl
        ("http://u:p@faß.de/", URL("http", "xn--fa-hia.de", 80, "/", "u:p")),
        ("http://bücher.test/", URL("http", "xn--bcher-kva.test", 80, "/")),
    ],
)  # fmt: skip
def test_parse_url(text: str, url: URL) -> None:
    assert parse_url(text) == url


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        # RFC 3986, 5.2.4's two examples, then the edges
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/", "/"),
        ("/..", "/"),
        ("/../../a", "/a"),  # never above the root
        ("/a/..", "/"),
        ("/a/.", "/a/"),
        ("/a/b/..", "/a/"),
        ("/a//../b", "/a/b"),  # the empty segment is the one removed
        ("/.well-known/..x/...", "/.well-known/..x/..."),  # not dot segments
        ("/a/%2e%2e/b", "/a/%2e%2e/b"),  # encoded dots stay, as curl
    ],
)
def test_without_dot_segments(path: str, resolved: str) -> None:
    assert without_dot_segments(path) == resolved


def test_dot_segments_resolved_unless_path_as_is() -> None:
    """Before sending, as curl; the query is not a path and keeps its dots."""
    url = parse_url("http://h/a/./b/../c?x=/../y")
    assert url.target == "/a/c?x=/../y"
    assert str(url) == "http://h/a/c?x=/../y"  # what -w url_effective shows
    kept = parse_url("http://h/a/./b/../c?x=/../y", path_as_is=True)
    assert kept.target == "/a/./b/../c?x=/../y"
    assert parse_url("http://h/x/../").file_name() == "index.html"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("example.test", "needs http:// or https://"),
        ("ftp://h/", "unsupported scheme"),
        ("http://h/a b", "space"),
        ("http://h/é", r"the character 'é' in it \(write it as %C3%A9\)"),
        ("http://h/?q=\t", r"the character '\\t' in it \(write it as %09\)"),
        ("http://☃.test/", r"bad international host name '☃.test': Codepoint U\+2603"),
        ("http://a..ü/", "bad international host name 'a..ü': Empty Label"),
        ("http://h:99999/", "bad port"),
        ("http://:80/", "no host"),
        ("http://[::1/", r"bad IPv6 address in 'http://\[::1/'"),
        ("http://[zz]/", "bad IPv6 address"),
        ("http://[fe80::1%25]/", r"bad IPv6 zone in 'http://\[fe80::1%25\]/'"),
        ("http://[fe80::1%]/", "bad IPv6"),
    ],
)
def test_bad_urls(text: str, says: str) -> None:
    with pytest.raises(RequestError, match=says):
        parse_url(text)


def test_userinfo_is_kept_decoded_and_never_shown() -> None:
    """user:password@ in the URL (was refused): Basic auth, as curl sends it."""
    url = parse_url("http://us%40er:p%3Ass%20w@h:8080/x")
    assert url.userinfo == "us@er:p:ss w"
    assert str(url) == "http://h:8080/x" and "p:ss" not in repr(url)
    assert parse_url("http://user@h/").userinfo == "user:"
    assert basic_authorization("Aladdin:open sesame") == (
        "Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    )  # RFC 7617's example  # fmt: skip


def test_authority_and_file_name() -> None:
    assert parse_url("http://[::1]:8080/").authority() == "[::1]:8080"
    # the zone names an interface of this machine: not the server's business
    assert parse_url("http://[fe80::1%25v1]:8080/").authority() == "[fe80::1]:8080"
    assert parse_url("https://h:443/").authority() == "h"
    assert parse_url("http://h/dir/").file_name() == "index.html"
    assert parse_url("http://h/a/file.tar.gz?x=1").file_name() == "file.tar.gz"
    assert parse_url("http://h/a/..").file_name() == "index.html"


def test_redirect_url_is_relative_to_the_base() -> None:
    base = parse_url("https://h:8443/a/b?q")
    assert str(redirect_url(base, "/c")) == "https://h:8443/c"
    assert str(redirect_url(base, "d")) == "https://h:8443/a/d"
    assert str(redirect_url(base, "http://other/")) == "http://other/"


def test_a_location_in_utf_8_is_read_as_browsers_and_curl_read_it() -> None:
    """Raw UTF-8 in a Location (the header arrives as Latin-1 text): the host as
    A-labels, the path percent-encoded (was 'bad Location', exit 9)."""
    base = parse_url("http://h/a/b")

    def received(text: str) -> str:
        return text.encode("utf-8").decode("latin-1")  # as the header arrives

    moved = redirect_url(base, received("http://bücher.test/café?q=ü ü"))
    assert str(moved) == "http://xn--bcher-kva.test/caf%C3%A9?q=%C3%BC%20%C3%BC"
    assert str(redirect_url(base, received("/ü"))) == "http://h/%C3%BC"
    # bytes that are not UTF-8 are sent as they came, percent-encoded
    assert str(redirect_url(base, "/caf\xe9")) == "http://h/caf%E9"


def test_request_bytes() -> None:
    url = parse_url("http://h:81/p")
    assert Request(url).head_bytes() == (
        b"GET /p HTTP/1.1\r\nHost: h:81\r\nUser-Agent: echod/0.1.0\r\n"
        b"Accept: */*\r\nConnection: close\r\n\r\n"
    )
    post = Request(url, "POST", (("Accept", "text/plain"), ("X", "1")), b"ab")
    assert post.head_bytes() == (
        b"POST /p HTTP/1.1\r\nHost: h:81\r\nUser-Agent: echod/0.1.0\r\n"
        b"Connection: close\r\nContent-Length: 2\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Accept: text/plain\r\nX: 1\r\n\r\n"
    )
    old = Request(url, "GET", (("User-Agent", ""),), http10=True)
    assert old.head_bytes() == b"GET /p HTTP/1.0\r\nHost: h:81\r\nAccept: */*\r\n\r\n"


def test_body_file_length_and_raw_method(tmp_path: Path) -> None:
    path = tmp_path / "body"
    path.write_bytes(b"x" * 1234)
    request = Request(parse_url("http://h/"), "PUT", body_file=path)
    assert b"Content-Length: 1234\r\n" in request.head_bytes()
    assert b"Content-Type" not in request.head_bytes()
    raw = Request(parse_url("http://h/"), raw=b"HEAD / HTTP/1.1\r\n\r\n")
    assert raw.head_bytes() == b"HEAD / HTTP/1.1\r\n\r\n"
    assert raw.method_sent() == "HEAD"
    assert Request(parse_url("http://h/"), raw=b"\x00junk").method_sent() == "GET"


def test_parse_header() -> None:
    assert parse_header("X-A:  b c ") == ("X-A", "b c")
    assert parse_header("Accept:") == ("Accept", "")
    for bad in ("no colon", ": v", "Bad Name: v"):
        with pytest.raises(RequestError):
            parse_header(bad)
