"""Reading /metrics with the real curl."""

from __future__ import annotations

import subprocess

from tests.daemon import need_tool


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
