"""Fixtures shared by the tests: real daemons that are always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonStarter


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonStarter]:
    """Start ``twistd -n echod ARGS`` processes; all are stopped after the test."""
    starter = DaemonStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.cleanup()
