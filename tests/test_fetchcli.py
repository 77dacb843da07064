"""Unit tests of echod.fetchcli: option handling and how bytes are shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from echod.fetchcli import (
    build,
    bypasses_proxy,
    parse_connect_to,
    parse_local_port,
    parse_resolve,
    parser,
    prefixed,
    proxy_hint,
    visible,
)
from echod.fetchrequest import RequestError, parse_url
from echod.proxytunnel import Proxy


def test_visible_writes_out_line_endings_and_odd_bytes() -> None:
    assert visible(b"A\r\nB\n\t\\\x00\xff") == "A\\r\\n\nB\\n\n\\t\\\\\\x00\\xff"


def test_prefixed() -> None:
    assert prefixed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", "> ", False) == (
        "> GET / HTTP/1.1\n> Host: h\n> \n"
    )
    assert prefixed(b"A\r\n\r\n", "> ", True) == "> A\\r\\n\n> \\r\\n\n"


def test_parse_resolve() -> None:
    assert parse_resolve("h:443:127.0.0.1") == ("h", 443, "127.0.0.1")
    assert parse_resolve("h:80:[::1]") == ("h", 80, "::1")
    with pytest.raises(RequestError):
        parse_resolve("h:x:1.2.3.4")


def test_parse_local_port() -> None:
    assert parse_local_port(None) is None
    assert parse_local_port("40000") == range(40000, 40001)
    assert parse_local_port("1-65535") == range(1, 65536)
    for text in ("0", "65536", "9-8", "x", "1-", "-2", "1-2-3", " 1"):
        with pytest.raises(RequestError, match="bad --local-port"):
            parse_local_port(text)


def test_build(tmp_path: Path) -> None:
    command = build(parser().parse_args(["-O", "-L", "--raw", "http://h/a/f.bin"]))
    assert command.output == Path("f.bin")
    assert command.options.follow_redirects and command.options.raw_body
    assert command.request.method == "GET"
    assert build(parser().parse_args(["-d", "x", "http://h/"])).request.method == "POST"
    assert build(parser().parse_args(["-o", "-", "http://h/"])).output is None
    unlimited = build(parser().parse_args(["--max-redirs", "-1", "http://h/"]))
    assert unlimited.options.max_redirects is None  # curl's -1
    assert (
        build(
            parser().parse_args(["--read-timeout", "0", "http://h/"])
        ).options.read_timeout
        is None
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-d", "x", "--data-file", "f", "http://h/"], "cannot go together"),
        (["-d", "x", "--data-raw", "y", "http://h/"], "cannot go together"),
        (["-d", "@", "http://h/"], "-d @ needs a file name"),
        (["-I", "-d", "x", "http://h/"], r"-I \(HEAD\) and a body"),
        (["-d", "@/nonexistent", "http://h/"], "cannot read the data file"),
        (["-o", "a", "-O", "http://h/"], "cannot go together"),
        (["--max-time", "0", "http://h/"], "--max-time must be a number of seconds"),
        # nan was taken: --max-time nan never timed out (a fetch hung 10
        # minutes), --connect-timeout nan ended in "unexpected failure" (exit 1).
        (["--max-time", "nan", "http://h/"], "--max-time must be a number of"),
        (["--max-time", "inf", "http://h/"], "--max-time must be a number of"),
        (["--connect-timeout", "nan", "http://h/"], "--connect-timeout must be a"),
        (["--read-timeout", "nan", "http://h/"], "--read-timeout must be a number"),
        (["--read-timeout", "-1", "http://h/"], "--read-timeout must be a number"),
        (["--max-redirs", "-2", "http://h/"], "--max-redirs is a number of redirects"),
        (["--max-header-size", "10", "http://h/"], "--max-header-size is at least"),
        (["-X", "G T", "http://h/"], "bad method"),
        (
            ["--request-file", "/nonexistent", "http://h/"],
            "cannot read the request file",
        ),
        (["--unix-socket", "", "http://h/"], "--unix-socket: no socket path"),
        (["-x", "ftp://p", "http://h/"], "echod speaks http://, https://, socks5"),
        (["-x", "p:1", "--unix-socket", "/s", "http://h/"], "cannot go together"),
        (["--abstract-unix-socket", "", "http://h/"], "no socket path"),
        (["--abstract-unix-socket", "x" * 107, "http://h/"], "108 bytes: a UNIX"),
        (["--unix-socket", "/s", "-6", "http://h/"], "-6 applies to TCP connections"),
        (
            ["--unix-socket", "/s", "--interface", "127.0.0.1", "http://h/"],
            "--interface applies to TCP connections, not to --unix-socket",
        ),
        (
            ["--unix-socket", "/s", "--connect-to", "::h:81", "http://h/"],
            "--connect-to applies to TCP connections",
        ),
    ],
)
def test_bad_options(args: list[str], says: str) -> None:
    with pytest.raises(RequestError, match=says):
        build(parser().parse_args(args))


def test_a_proxy() -> None:
    command = build(parser().parse_args(["-x", "socks5h://p:9050", "http://h/"]))
    assert command.options.proxy == Proxy("socks5h", "p", 9050)
    assert build(parser().parse_args(["http://h/"])).options.proxy is None


def test_unix_sockets() -> None:
    """A path as given; an abstract name after the NUL that marks one."""
    given = build(parser().parse_args(["--unix-socket", "/run/s", "http://h/"]))
    assert given.options.unix_socket == "/run/s"
    abstract = ["--abstract-unix-socket", "echo", "http://h/"]
    assert build(parser().parse_args(abstract)).options.unix_socket == "\0echo"
    longest = "/" + "x" * 106  # 107 bytes: the most Linux takes
    taken = build(parser().parse_args(["--unix-socket", longest, "http://h/"]))
    assert taken.options.unix_socket == longest
    assert build(parser().parse_args(["http://h/"])).options.unix_socket is None


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("example.com", "example.com", True),
        ("www.example.com", "example.com", True),
        ("www.example.com", ".example.com", True),
        ("EXAMPLE.com", "example.COM", True),
        ("badexample.com", "example.com", False),
        ("example.com", "www.example.com", False),
        ("anything", "*", True),
        ("anything", " a.test , * ", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("::1", "[::1]", True),
        ("fe80::1%eth0", "fe80::/10", True),
        ("example.com", "", False),
        ("example.com", ",,", False),
    ],
)
def test_bypasses_proxy_reads_no_proxy_as_curl(
    host: str, no_proxy: str, bypassed: bool
) -> None:
    assert bypasses_proxy(host, no_proxy) is bypassed


def test_proxy_hint_names_the_variable_curl_would_use() -> None:
    http = parse_url("http://example.com/")
    https = parse_url("https://example.com/")
    assert proxy_hint(http, {}) == ""
    assert proxy_hint(http, {"http_proxy": "p"}).startswith(" (http_proxy is set")
    # curl ignores upper-case HTTP_PROXY (CGI's HTTP_PROXY header clash)
    assert proxy_hint(http, {"HTTP_PROXY": "p"}) == ""
    assert proxy_hint(http, {"https_proxy": "p"}) == ""
    assert proxy_hint(https, {"HTTPS_PROXY": "p"}).startswith(" (HTTPS_PROXY is")
    assert proxy_hint(https, {"ALL_PROXY": "p"}).startswith(" (ALL_PROXY is set")
    assert proxy_hint(https, {"https_proxy": "p", "NO_PROXY": "example.com"}) == ""
    assert proxy_hint(https, {"https_proxy": ""}) == ""


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("example.test:443:10.0.0.5:8443", ("example.test", 443, "10.0.0.5", 8443)),
        ("::10.0.0.5:", ("", None, "10.0.0.5", None)),
        ("[::1]:80:[fe80::1%eth0]:81", ("::1", 80, "fe80::1%eth0", 81)),
        ("bücher.test:80::8080", ("xn--bcher-kva.test", 80, "", 8080)),
    ],
)
def test_parse_connect_to(
    text: str, parsed: tuple[str, int | None, str, int | None]
) -> None:
    assert parse_connect_to(text) == parsed


@pytest.mark.parametrize(
    "text", ["x:80", "x:80:y", "x:0:y:1", "x:80:y:65536", "[::1:80:y:1", "x:a:y:1"]
)
def test_parse_connect_to_refuses(text: str) -> None:
    with pytest.raises(RequestError, match="bad --connect-to"):
        parse_connect_to(text)
