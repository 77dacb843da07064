"""Start and stop real ``twistd echod`` processes for end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.peers import connect, round_trip

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LISTENING = re.compile(r"listening on (?P<endpoint>[^\s\"]+) at (?P<address>[^\s\"]+)")


ECHOD = str(Path(sys.executable).with_name("echod"))
"""The echod command beside the running interpreter (the venv under test)."""


def twistd_path() -> str:
    """The twistd beside the running interpreter (the venv under test)."""
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("twistd")
    if found is None:
        pytest.fail("twistd is not installed beside this Python")
    return found


def need_tool(name: str) -> str:
    """The path of an outside tool; skip without it, but fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def stepped_clock(rc_file: Path) -> dict[str, str]:
    """Environment that runs a process under libfaketime (Debian's faketime
    package), its wall clock offset by what C{rc_file} says (C{+0}, then for
    example C{+3600s}), read again at every clock read; the monotonic clock
    is left alone. Skips without libfaketime, fails under CI."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        need_tool("faketime")  # skips, or fails under CI
        raise AssertionError(f"faketime is installed, its library is not: {found}")
    rc_file.write_text("+0\n")
    return {
        "LD_PRELOAD": str(found[0]),
        "FAKETIME_TIMESTAMP_FILE": str(rc_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


class OutputLines:
    """A process's standard output, read line by line by a thread as it comes,
    so that a test can wait for a line (a daemon's log, HAProxy's)."""

    def __init__(self, process: subprocess.Popen[str], what: str) -> None:
        self.process = process
        self.what = what
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self) -> str:
        """Every line so far."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(
        self, pattern: str, timeout: float = 15.0, count: int = 1
    ) -> list[re.Match[str]]:
        """Wait until C{pattern} has matched C{count} lines; return the matches
        (AssertionError after C{timeout}, or once the process has ended)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matches = [m for line in self.lines if (m := regex.search(line))]
                if len(matches) >= count:
                    return matches
                left = deadline - time.monotonic()
                if left <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"no {count} x {pattern!r} in {self.what} "
                        f"(exit={self.process.poll()}):\n" + "\n".join(self.lines[-40:])
                    )
                self._changed.wait(min(left, 0.2))

    def join(self, timeout: float) -> None:
        """Wait for the reader to reach the end of the output."""
        self._reader.join(timeout)


class Daemon:
    """One ``twistd -n echod`` process, its output collected as it runs."""

    def __init__(
        self,
        args: Sequence[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        twistd_args: Sequence[str] = (),
    ) -> None:
        self.args = list(args)
        command = [
            *prefix,
            twistd_path(),
            "-n",
            "--pidfile=",
            *twistd_args,
            "echod",
            *self.args,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            text=True,
            errors="replace",
        )
        self.out = OutputLines(self.process, "daemon output")

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.process.pid

    @property
    def lines(self) -> list[str]:
        """The daemon's output lines so far."""
        return self.out.lines

    @property
    def output(self) -> str:
        """Everything the daemon has logged so far."""
        return self.out.text()

    def wait_for(
        self, pattern: str, timeout: float = 15.0, count: int = 1
    ) -> list[re.Match[str]]:
        """Wait until C{pattern} has matched C{count} log lines; return the matches."""
        return self.out.wait_for(pattern, timeout, count)

    def addresses(self, count: int = 1) -> list[str]:
        """The bound addresses of the first C{count} listeners, as logged."""
        return [m["address"] for m in self.wait_for(LISTENING.pattern, count=count)]

    def metrics_address(self) -> str:
        """HOST:PORT of the --metrics listener, as logged."""
        return self.wait_for(r"metrics on \S+ at (\S+) \(/metrics")[0][1]

    def tcp_port(self) -> int:
        """The port of the first listener (a TCP one)."""
        return int(self.addresses(1)[0].rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the daemon and wait for it; kill it if it will not stop."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError("daemon did not stop within {timeout}s") from None
        self.out.join(5)
        return self.process.returncode

    def check_signalled_twice_stops_once(self) -> None:
        """SIGTERM while a connection is open, and again while it drains: the
        connection is still served, the daemon stops once, with no traceback
        (systemd signals every process of a unit; echod serve --workers passes
        the signal on too, so a worker gets two)."""
        with connect("127.0.0.1", self.tcp_port()) as sock:  # the reactor runs
            assert round_trip(sock, b"up") == b"up"
            self.process.send_signal(signal.SIGTERM)
            self.wait_for(r"stopping: no longer accepting; 1 open")  # draining it
            self.process.send_signal(signal.SIGTERM)
            self.wait_for(r"Received SIGTERM again; already stopping")
            assert round_trip(sock, b"still") == b"still"
        assert self.stop() in (0, -signal.SIGTERM)
        assert "Traceback" not in self.output, self.output
        assert self.output.count("stopped: ") == 1, self.output

    def refusal_lines(self) -> list[str]:
        """The lines of a daemon that refused to start: it must exit 1 (within
        30 s); what it said, stripped."""
        assert self.process.wait(30) == 1, self.output
        self.stop()
        return self.output.strip().splitlines()

    def cpu_seconds(self) -> float:
        """User plus system CPU time the daemon has used, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        """The daemon's resident set size, in KiB, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class DaemonStarter:
    """Starts daemons for one test and stops every one of them afterwards."""

    def __init__(
        self, cwd: Path, twistd_args: Sequence[str] = (), extra: Sequence[str] = ()
    ) -> None:
        self.cwd = cwd
        self.twistd_args = tuple(twistd_args)
        self.extra = tuple(extra)
        """echod options added to every daemon this starter starts."""
        self.started: list[Daemon] = []

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
    ) -> Daemon:
        daemon = Daemon(
            [*self.extra, *args],
            self.cwd,
            env=env,
            prefix=prefix,
            twistd_args=self.twistd_args,
        )
        self.started.append(daemon)
        return daemon

    def cleanup(self) -> None:
        """Stop every daemon still running (kill those that hang)."""
        for daemon in self.started:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(10)


def terminate(process: subprocess.Popen[Any]) -> None:
    """Stop a process the test started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def iter_chunks(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    """Cut C{data} into pieces of the given sizes, in order."""
    offset = 0
    while offset < len(data):
        size = next(sizes)
        yield data[offset : offset + size]
        offset += size
