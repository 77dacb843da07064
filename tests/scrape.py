"""Reading /metrics with the real curl."""

from __future__ import annotations

import re
import subprocess

from tests.daemon import Daemon, need_tool


def curl(url: str) -> tuple[int, str]:
    """(HTTP status, body) of a GET with the real curl."""
    out = subprocess.run(
        [need_tool("curl"), "-s", "-o", "-", "-w", "\\n%{http_code}", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body


def metric(text: str, name: str) -> float:
    """The value of the first sample of C{name} (a name, or a name{labels})."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def curl_from(source: str, url: str) -> subprocess.CompletedProcess[str]:
    """A GET of C{url} with the real curl, from the local address C{source}."""
    return subprocess.run(
        [need_tool("curl"), "-s", "--interface", source, "-o", "-", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def check_metrics_allow(daemon: Daemon, url: str, allowed: str, refused: str) -> None:
    """--metrics-allow: C{url} scraped from C{refused} is closed at once,
    logged by that address and counted; from C{allowed} it is served."""
    out = curl_from(refused, url)
    assert out.returncode in (52, 56) and out.stdout == "", out
    daemon.wait_for(
        rf"refused metrics connection {re.escape(refused)}:\d+: not in --metrics-allow"
    )
    out = curl_from(allowed, url)
    assert out.returncode == 0, out
    assert metric(out.stdout, "echod_metrics_connections_refused_total") == 1


def tls_sessions(text: str) -> list[tuple[str, str, str, float]]:
    """The series of echod_tls_connections_total in C{text}: (terminated,
    version, cipher, count) each."""
    found = re.findall(
        r'^echod_tls_connections_total\{cipher="([^"]*)",terminated="(\w+)",'
        r'version="([^"]*)"\} (\S+)$',
        text, re.MULTILINE,
    )  # fmt: skip
    return [(where, version, cipher, float(n)) for cipher, where, version, n in found]
