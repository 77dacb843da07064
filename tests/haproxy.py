"""Debian's HAProxy, started by a test on loopback with a configuration of its own."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
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
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", frontend), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    out = "\n".join(self.lines)
                    raise AssertionError(f"haproxy did not start: {out}") from None
                time.sleep(0.1)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 15.0) -> list[str]:
        """The lines of HAProxy's output (its log, with C{log stdout}) that
        match C{pattern}, once there is one; AssertionError after C{timeout}."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    break
                self._changed.wait(left)
        assert found, f"no {pattern!r} in haproxy's output: {self.lines[-20:]}"
        return found

    def stop(self) -> None:
        """End HAProxy; its output so far stays in C{lines}."""
        terminate(self.process)
        self._reader.join(10)


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
