"""Protocol violations seen in a response's raw header section.

h11 tolerates some things a strict reader would not (a bare LF as a line
ending, a repeated Content-Length with the same value) and refuses others
with a terse message. These checks run on the bytes as received, so that
``echod fetch`` can name what the server did wrong, whether or not the
response could be read.
"""

from __future__ import annotations

import re

_BARE_LF = re.compile(rb"(?<!\r)\n")
_FRAMING = (b"content-length", b"transfer-encoding")


def header_lines(raw: bytes) -> list[bytes]:
    """The header section split into lines, whatever line endings it used."""
    return [line.rstrip(b"\r") for line in raw.split(b"\n")]


def lint_head(raw: bytes) -> list[str]:
    """Warnings about a response head (status line, headers, blank line)."""
    warnings: list[str] = []
    bare = len(_BARE_LF.findall(raw))
    if bare:
        warnings.append(f"{bare} line(s) end with a bare LF instead of CRLF")
    lines = header_lines(raw)
    fields: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            warnings.append("obsolete line folding (a header line starts with space)")
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            warnings.append(f"a header line without a colon: {line[:60]!r}")
            continue
        if name != name.rstrip():
            warnings.append(f"whitespace before the colon in {name.strip()!r}")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    for name in _FRAMING:
        values = fields.get(name, [])
        if len(values) > 1:
            label = name.decode().title()
            if len(set(values)) > 1:
                shown = ", ".join(v.decode("latin-1") for v in values)
                warnings.append(f"conflicting {label} headers: {shown}")
            else:
                warnings.append(f"{label} appears {len(values)} times")
    if b"content-length" in fields and b"transfer-encoding" in fields:
        warnings.append(
            "both Transfer-Encoding and Content-Length (Content-Length is ignored)"
        )
    return warnings
