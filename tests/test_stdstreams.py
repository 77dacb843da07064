"""echod.stdstreams: closed or abandoned standard streams, never a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
from typing import Any

from echod.stdstreams import ReportStdout
from tests.daemon import ECHOD, DaemonStarter
from tests.launch import prepared

LOCAL = "tcp:0:interface=127.0.0.1"


def test_a_report_to_a_gone_reader_is_dropped_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away
    with open(write_end, "w") as stream:
        report = ReportStdout(stream)
        assert report.write("x" * 100_000) == 100_000
        report.flush()
        assert report.dropped
        assert report.write("more\n") == 5  # now to /dev/null
        report.flush()


def test_a_report_to_a_reader_is_written() -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as stream, open(read_end) as reader:
        report = ReportStdout(stream)
        report.write("figures\n")
        report.flush()
        assert not report.dropped
        assert reader.readline() == "figures\n"


def run(args: list[str], stdout: Any = None, close_stdout: bool = False) -> Any:
    """Run ``echod ARGS`` with stdout a pipe nobody reads, or closed."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            prepared([ECHOD, *args], close_stdout=close_stdout),
            stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE,
            text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)


def test_client_and_bench_end_by_their_verdict_when_stdout_is_gone(
    start_daemon: DaemonStarter,
) -> None:
    target = f"127.0.0.1:{start_daemon('--port', LOCAL).tcp_port()}"
    for close_stdout in (False, True):
        probe = run(["client", "--count", "3", target], close_stdout=close_stdout)
        assert (probe.returncode, probe.stderr) == (0, ""), close_stdout
        load = run(["bench", "-c", "2", "-d", "0.5", target], close_stdout=close_stdout)
        assert (load.returncode, load.stderr) == (0, ""), close_stdout


def test_pipe_mode_with_stdout_closed_ends(start_daemon: DaemonStarter) -> None:
    """Without fd 1 reserved, Twisted's stdio wrote to whatever took fd 1 and hung."""
    target = f"127.0.0.1:{start_daemon('--port', LOCAL).tcp_port()}"
    piped = subprocess.run(
        prepared([ECHOD, "client", target], close_stdout=True), input="hello\n",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30,
    )  # fmt: skip
    assert (piped.returncode, piped.stderr) == (0, "")


def test_help_and_version_with_stdout_gone() -> None:
    for args in (["--help"], ["version"], ["client", "--help"]):
        for close_stdout in (False, True):
            out = run(args, close_stdout=close_stdout)
            assert (out.returncode, out.stderr) == (0, ""), (args, close_stdout)


def test_a_report_that_cannot_be_written_is_kept_as_an_error() -> None:
    with open("/dev/full", "w") as stream:
        report = ReportStdout(stream)
        report.write("figures\n")
        report.flush()
        assert report.dropped
        assert report.error is not None and report.error.errno == errno.ENOSPC


def test_a_full_disk_loses_no_report_without_a_word(
    start_daemon: DaemonStarter,
) -> None:
    """> /dev/full: the probe's and bench's reports were lost with exit 0."""
    target = f"127.0.0.1:{start_daemon('--port', LOCAL).tcp_port()}"
    lost = "echod: cannot write to stdout: No space left on device (the report is lost)"
    for args in (["client", "--count", "2", target],
                 ["bench", "-c", "1", "-d", "0.5", target], ["--help"]):  # fmt: skip
        with open("/dev/full", "w") as full:
            out = subprocess.run([ECHOD, *args], stdout=full, stderr=subprocess.PIPE,
                                 text=True, timeout=60)  # fmt: skip
        assert (out.returncode, out.stderr.splitlines()) == (13, [lost]), args
