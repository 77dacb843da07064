"""Unit tests of echod.writeout: curl's -w variables, escapes and errors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from echod.fetch import FetchResult, ResponseHead, Timing
from echod.fetchrequest import parse_url
from echod.writeout import VARIABLES, Outcome, WriteOut, WriteOutError


def head(status: int, *headers: tuple[str, str]) -> ResponseHead:
    raw = f"HTTP/1.1 {status} X\r\n".encode() + b"".join(
        f"{n}: {v}\r\n".encode() for n, v in headers
    )
    return ResponseHead(raw + b"\r\n", "1.1", status, "X", tuple(headers))


def result() -> FetchResult:
    timing = Timing(start=0.0, dns=0.001, connect=0.002, tls=None, first_byte=0.004)
    timing.total = 0.5
    heads = [
        head(301, ("location", "/b")),
        head(100),
        head(200, ("content-type", "text/plain")),
    ]
    return FetchResult(
        parse_url("https://example.test:8443/b"), b"GET /b HTTP/1.1\r\n\r\n", heads,
        1000, [], timing, "[2001:db8::1]:8443",
        ("2001:db8::1", 8443), ("192.0.2.9", 40000),
    )  # fmt: skip


def test_every_variable_of_a_fetch() -> None:
    text = WriteOut.parse(
        "%{http_code} %{response_code} %{http_version} %{num_redirects} "
        "%{url_effective} %{scheme} %{content_type} [%{redirect_url}] "
        "%{remote_ip} %{remote_port} %{local_ip} %{local_port} %{size_download} "
        "%{size_request} %{speed_download} %{time_namelookup} %{time_connect} "
        "%{time_appconnect} %{time_starttransfer} %{time_total} %{exitcode} "
        "[%{errormsg}]"
    ).render(Outcome(result(), 0))
    size_header = sum(len(h.raw) for h in result().heads)
    assert text == (
        "200 200 1.1 1 https://example.test:8443/b HTTPS text/plain [] "
        "2001:db8::1 8443 192.0.2.9 40000 1000 19 2000 0.001000 0.002000 "
        "0.000000 0.004000 0.500000 0 []"
    )
    assert WriteOut.parse("%{size_header}").render(Outcome(result(), 0)) == str(
        size_header
    )


def test_over_a_unix_socket() -> None:
    """What curl says: the path and the URL's port for the server's end,
    empty and 0 for ours."""
    over_unix = replace(result(), peer="/run/s", peer_address=("/run/s", 8443),
                        local_address=None)  # fmt: skip
    text = WriteOut.parse("[%{remote_ip}] %{remote_port} [%{local_ip}] %{local_port}")
    assert text.render(Outcome(over_unix, 0)) == "[/run/s] 8443 [] 0"


def test_no_response() -> None:
    """curl's figures for a fetch that never got a response: 000, the exit
    code and its message, the time it took."""
    failed = Outcome(None, 4, "connection refused", 0.25)
    rendered = {
        name: WriteOut.parse(f"%{{{name}}}").render(failed) for name in VARIABLES
    }
    assert rendered["http_code"] == rendered["response_code"] == "000"
    assert (rendered["exitcode"], rendered["errormsg"]) == ("4", "connection refused")
    assert rendered["time_total"] == "0.250000"
    assert rendered["time_connect"] == "0.000000"
    assert rendered["remote_ip"] == rendered["url_effective"] == ""
    assert rendered["remote_port"] == rendered["size_download"] == "0"


def test_escapes_and_plain_text() -> None:
    out = WriteOut.parse("a%%b\\n\\t\\r\\\\ 100% \\x {braces} %{exitcode}")
    assert out.render(Outcome(None, 7)) == "a%b\n\t\r\\ 100% \\x {braces} 7"


@pytest.mark.parametrize("text", ["%{nope}", "%{http_code", "%{}"])
def test_an_unknown_variable_is_refused(text: str) -> None:
    if text == "%{http_code":  # not a variable at all: text, as curl
        assert WriteOut.parse(text).render(Outcome(None, 0)) == text
        return
    with pytest.raises(WriteOutError, match=r"-w: unknown variable %\{"):
        WriteOut.parse(text)
