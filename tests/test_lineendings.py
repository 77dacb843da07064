"""Unit tests of echod.lineendings: ``-C``'s CR LF, whatever the reads."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from echod.lineendings import CRLFEndings


def lone_lf_to_crlf(data: bytes) -> bytes:
    """What ncat -C sends: every LF without a CR just before it gets one."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def test_lone_lfs_get_a_cr_and_crlfs_stay() -> None:
    endings = CRLFEndings()
    assert endings.convert(b"HELO a\nMAIL\r\n\n\r\r\nend") == (
        b"HELO a\r\nMAIL\r\n\r\n\r\r\nend"
    )
    assert endings.convert(b"") == b""


def test_a_cr_at_the_end_of_one_read_and_its_lf_in_the_next() -> None:
    endings = CRLFEndings()
    assert endings.convert(b"one\r") == b"one\r"
    assert endings.convert(b"\ntwo\n") == b"\ntwo\r\n"
    assert endings.convert(b"\n") == b"\r\n"  # the LF before it had no CR


READS = st.lists(
    st.lists(st.sampled_from([b"\r", b"\n", b"a"]), max_size=12).map(b"".join),
    max_size=8,
)


@given(READS)
def test_any_reads_convert_as_the_whole_would(reads: list[bytes]) -> None:
    endings = CRLFEndings()
    sent = b"".join(endings.convert(read) for read in reads)
    assert sent == lone_lf_to_crlf(b"".join(reads))
