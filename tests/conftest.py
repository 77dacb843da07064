"""Fixtures shared by the tests: real daemons that are always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonStarter
from tests.netns import LinkLocalNamespace


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[DaemonStarter]:
    """Start ``twistd -n echod ARGS`` processes; all are stopped after the test."""
    starter = DaemonStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.cleanup()


ECHO_PATHS = {
    # echod's default: the lean epoll dispatch and write-through
    "default": ((), ()),
    # Twisted's stock epoll reactor (what an untested Twisted gets)
    "stock-reactor": (("--reactor=epoll",), ()),
    # Twisted's public write path only
    "public-write": ((), ("--no-write-through",)),
    # the lean reactor polling without sleeping for 200 us after each event
    "busy-poll": ((), ("--busy-poll", "200")),
}


@pytest.fixture(params=sorted(ECHO_PATHS))
def start_daemon_any_path(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[DaemonStarter]:
    """Like start_daemon, once per echo path: every refinement and its fallback."""
    twistd_args, extra = ECHO_PATHS[request.param]
    starter = DaemonStarter(tmp_path, twistd_args, extra)
    try:
        yield starter
    finally:
        starter.cleanup()


@pytest.fixture
def link_local() -> Iterator[LinkLocalNamespace]:
    """A network namespace with a link-local address; removed after the test."""
    namespace = LinkLocalNamespace()
    try:
        yield namespace
    finally:
        namespace.close()
