"""Debian's tinyproxy (HTTP CONNECT), Dante (SOCKS5 and SOCKS4) and microsocks (SOCKS5
with a user name and password), started by a test on loopback with a
configuration of its own: the proxies ``--proxy`` is tested through."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.daemon import need_tool, terminate
from tests.peers import connect_when_up, free_port

PASSWORD = "p4ss-w0rd"
"""tinyproxy's and microsocks's password (tinyproxy's configuration takes no
quotes, so no spaces)."""

TINYPROXY = """\
Port {port}
Listen 127.0.0.1
Timeout 60
Allow 127.0.0.1
MaxClients 64
LogLevel Warning
{auth}
"""

DANTE = """\
logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }}
"""


@contextlib.contextmanager
def started(command: list[str], port: int) -> Iterator[int]:
    """Run C{command} until the block ends, once it listens on C{port}; the port."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        connect_when_up(port, process).close()
        yield port
    finally:
        terminate(process)


@contextlib.contextmanager
def tinyproxy(directory: Path, user: str | None = None) -> Iterator[int]:
    """tinyproxy on a free loopback port (Basic authentication for C{user},
    password C{PASSWORD}, when given); the port."""
    port = free_port()
    config = directory / "tinyproxy.conf"
    auth = f"BasicAuth {user} {PASSWORD}" if user else ""
    config.write_text(TINYPROXY.format(port=port, auth=auth))
    with started([need_tool("tinyproxy"), "-d", "-c", str(config)], port):
        yield port


@contextlib.contextmanager
def dante(directory: Path) -> Iterator[int]:
    """Dante's SOCKS5 server on a free loopback port, no authentication; the port."""
    port = free_port()
    config = directory / "danted.conf"
    config.write_text(DANTE.format(port=port))
    with started([need_tool("danted"), "-f", str(config), "-N", "1"], port):
        yield port


@contextlib.contextmanager
def microsocks(user: str, password: str = PASSWORD) -> Iterator[int]:
    """microsocks's SOCKS5 server on a free loopback port, asking for RFC
    1929's user name and password (C{user}, C{password}); the port."""
    port = free_port()
    command = [need_tool("microsocks"), "-i", "127.0.0.1", "-p", str(port)]
    with started([*command, "-u", user, "-P", password], port):
        yield port
