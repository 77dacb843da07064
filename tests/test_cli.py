"""Tests of echod.cli: the ``echod`` command."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from echod import __version__
from echod.cli import add_family_options, main, parse_arguments, port_number
from tests.daemon import DaemonStarter
from tests.peers import connect, round_trip


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"echod {__version__}\n"


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err == (
        "echod: error: unknown command 'frobnicate' (see: echod --help)\n"
    )


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "echod serve" in capsys.readouterr().out


def echod_command() -> str:
    found = Path(sys.executable).with_name("echod")
    return str(found) if found.exists() else (shutil.which("echod") or "echod")


def test_echod_serve_runs_the_daemon(
    tmp_path: Path, start_daemon: DaemonStarter
) -> None:
    process = subprocess.Popen(
        [echod_command(), "serve", "--port", "tcp:0:interface=127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1])
                break
        with connect("127.0.0.1", port) as sock:
            assert round_trip(sock, b"serve") == b"serve"
    finally:
        process.terminate()
        process.wait(30)
    assert not (tmp_path / "twistd.pid").exists()  # foreground, no pid file


def test_family_options_leave_negative_numbers_as_values() -> None:
    """-4 and -6 look like negative numbers: argparse then took --interval -1
    for a missing value ("expected one argument") instead of the option's own
    complaint about a negative number."""
    parser = argparse.ArgumentParser()
    add_family_options(parser, long=True)
    parser.add_argument("--interval", type=float)
    args = parser.parse_args(["-6", "--interval", "-1"])
    assert (args.family, args.interval) == (6, -1.0)
    assert parser.parse_args(["--ipv4"]).family == 4
    assert parser.parse_args([]).family is None
    assert parse_arguments(parser, ["-4", "-6"]) == 2  # one or the other


def test_port_number() -> None:
    assert port_number("1") == 1 and port_number("65535") == 65535
    for text, says in (("0", "ports are 1 to 65535"), ("x", "is not a port number")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            port_number(text)
