"""Debian's HAProxy, started by a test on loopback with a configuration of its own."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.daemon import OutputLines, need_tool, terminate


class HAProxy:
    """A ``haproxy -db`` process with a given configuration."""

    def __init__(self, config: str, directory: Path, frontend: int) -> None:
        path = directory / "haproxy.cfg"
        path.write_text(config)
        self.frontend = frontend
        self.process = subprocess.Popen(
            [need_tool("haproxy"), "-f", str(path), "-db"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.out = OutputLines(self.process, "haproxy's output")
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", frontend), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    out = self.out.text()
                    raise AssertionError(f"haproxy did not start: {out}") from None
                time.sleep(0.1)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> list[str]:
        """The lines of HAProxy's output (its log, with C{log stdout}) that
        match C{pattern}, once there is one; AssertionError after C{timeout}."""
        return [match.string for match in self.out.wait_for(pattern, timeout)]

    def stop(self) -> None:
        """End HAProxy; its output so far stays in C{out}."""
        terminate(self.process)
        self.out.join(10)


def simple_config(
    frontend: int, backend: int, send_proxy: str, bind_options: str = ""
) -> str:
    """A TCP frontend (with C{bind_options}, e.g. C{ssl crt FILE}) passing
    each connection to echod, with C{send_proxy}."""
    return f"""
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{frontend} {bind_options}
    default_backend be
backend be
    server echod 127.0.0.1:{backend} {send_proxy}
"""
