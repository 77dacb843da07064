"""``echod client -C``: lines sent with CR LF endings, as ncat's C{--crlf}.

SMTP, HTTP/1.1, Redis's inline commands and most line protocols of the
Internet end a line with CR LF; a terminal and a Unix pipe end it with LF.
"""

from __future__ import annotations


class CRLFEndings:
    """Turns each LF that has no CR before it into CR LF, across reads.

    A line that already ends in CR LF is sent as it is; a CR at the end of one
    read and an LF at the start of the next are one CR LF.
    """

    def __init__(self) -> None:
        self.after_cr = False
        """The last byte converted was a CR."""

    def convert(self, data: bytes) -> bytes:
        """C{data} with CR LF for every lone LF."""
        if not data:
            return data
        head = b""
        if self.after_cr and data.startswith(b"\n"):
            head, data = b"\n", data[1:]
        self.after_cr = (head + data).endswith(b"\r")
        return head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
