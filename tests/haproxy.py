"""Debian's HAProxy, started by a test on loopback with a configuration of its own."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.daemon import need_tool, terminate


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
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", frontend), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    out = (
                        self.process.communicate(timeout=5)[0]
                        if self.process.poll()
                        else ""
                    )
                    raise AssertionError(f"haproxy did not start: {out}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        terminate(self.process)


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
