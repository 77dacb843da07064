"""Unit tests of echod.unixnames: @NAME as an abstract UNIX socket name."""

from __future__ import annotations

import pytest

from echod.reuseport import raw_fields
from echod.unixnames import abstract_unix


@pytest.mark.parametrize(
    ("description", "server", "expected"),
    [
        ("unix:@echo", True, "unix:\0echo:lockfile=0"),
        ("unix:@echo", False, "unix:\0echo"),
        ("unix:address=@e:mode=600", True, "unix:address=\0e:mode=600:lockfile=0"),
        ("unix:mode=600:@echo", True, "unix:mode=600:\0echo:lockfile=0"),
        ("unix:path=@echo:timeout=3", False, "unix:path=\0echo:timeout=3"),
        ("unix:@echo:lockfile=1", True, "unix:\0echo:lockfile=1"),  # as asked
        ("unix:@a\\:b", True, "unix:\0a\\:b:lockfile=0"),  # escapes kept
        # not abstract: left as they are
        ("unix:/run/echo.sock", True, "unix:/run/echo.sock"),
        ("unix:/run/@echo", True, "unix:/run/@echo"),
        ("unix:@", True, "unix:@"),  # empty: refused as no socket path
        ("tcp:7", True, "tcp:7"),
        ("unix", True, "unix"),
    ],
)  # fmt: skip
def test_abstract_unix(description: str, server: bool, expected: str) -> None:
    assert abstract_unix(description, server) == expected


def test_raw_fields_split_where_twisted_splits() -> None:
    assert raw_fields("a:b\\:c:d=e") == ["a", "b\\:c", "d=e"]
