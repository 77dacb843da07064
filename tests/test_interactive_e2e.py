"""End-to-end: people at a terminal, with telnet and nc, against a real daemon."""

from __future__ import annotations

import pexpect

from tests.daemon import DaemonStarter, need_tool
from tests.terminal import Terminal

LOCAL = "tcp:0:interface=127.0.0.1"


def test_telnet_session(start_daemon: DaemonStarter) -> None:
    telnet = need_tool("telnet")
    daemon = start_daemon("--port", LOCAL)
    port = daemon.tcp_port()
    child = Terminal([telnet, "127.0.0.1", str(port)], encoding="utf-8")
    try:
        child.expect("Escape character is")
        child.sendline("hello from telnet")
        # the terminal shows the typed line, then the daemon's echo of it
        child.expect("hello from telnet")
        child.expect("hello from telnet")
        child.sendline("second line")
        child.expect("second line\r\n")
        child.expect("second line\r\n")
        child.sendcontrol("]")
        child.expect("telnet>")
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=\d+ out=\d+ .*reason=")


def test_nc_session(start_daemon: DaemonStarter) -> None:
    nc = need_tool("nc")
    daemon = start_daemon("--port", LOCAL)
    port = daemon.tcp_port()
    child = Terminal([nc, "-N", "127.0.0.1", str(port)], encoding="utf-8")
    try:
        child.sendline("hello from nc")
        child.expect("hello from nc\r\n")  # the terminal's own echo
        child.expect("hello from nc\r\n")  # the daemon's
        child.sendline("and again")
        child.expect("and again\r\n")
        child.expect("and again\r\n")
        child.sendeof()  # Ctrl-D: nc -N half-closes, echod finishes, nc exits
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=24 out=24 .*reason=eof")
