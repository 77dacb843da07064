"""Unit tests of echod.twistdoptions: twistd's own options, read by echod."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage
from twisted.scripts._twistd_unix import ServerOptions

from echod.tap import Options
from echod.twistdoptions import check_twistd_options, log_destination


def twistd(*args: str) -> ServerOptions:
    """twistd's options as parsed from C{args} (before the subcommand)."""
    options = ServerOptions()
    options.parseOptions(list(args))
    return options


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-n"], None),  # foreground: stdout, as twistd
        (["-n", "--logfile=-"], None),
        (["-n", "--logfile=run.log"], Path("run.log")),
        ([], Path("twistd.log")),  # a daemon's default, as twistd
        (["--logfile=/var/log/echod.json"], Path("/var/log/echod.json")),
    ],
)
def test_log_destination_is_twistds(args: list[str], expected: Path | None) -> None:
    assert log_destination(twistd(*args)) == expected


def test_echod_options_read_twistds_under_twistd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = twistd("--pidfile=", "--logfile=echod.json")
    options = Options()
    options.parent = parsed  # as usage.Options does for a subcommand
    options.parseOptions(["--log-format", "json"])
    assert options.settings().log_file == Path("echod.json")
    text = Options()
    text.parent = parsed
    text.parseOptions([])
    assert text.settings().log_file == Path("echod.json")  # echod writes it too
    assert text.settings().writes_log
    for chosen in ("--syslog", "--logger=twisted.logger.jsonFileLogObserver"):
        other = Options()
        other.parent = twistd("--pidfile=", chosen)
        other.parseOptions([])
        assert not other.settings().writes_log, chosen  # twistd's choice stands


def check(*args: str, log_format: str = "text") -> None:
    check_twistd_options(twistd(*args), log_format)


def refusal(*args: str, log_format: str = "text") -> str:
    with pytest.raises(usage.UsageError) as raised:
        check(*args, log_format=log_format)
    return str(raised.value)


def test_usable_files_pass(tmp_path: Path) -> None:
    check("-n", f"--logfile={tmp_path / 'new.log'}", f"--pidfile={tmp_path / 'p'}")
    (tmp_path / "old.log").write_text("")
    check(f"--logfile={tmp_path / 'old.log'}", "--pidfile=", f"--rundir={tmp_path}")
    check("-n", "--pidfile=", log_format="json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "--logfile=/nonexistent/x.log"], "no such directory '/nonexistent'"),
        (["-n", "--pidfile=/nonexistent/p.pid"], "--pidfile '/nonexistent/p.pid'"),
        (["--rundir=/nonexistent"], "--rundir '/nonexistent': no such directory"),
        (["-n", "--chroot=/nonexistent"], "--chroot '/nonexistent': no such"),
        (["-n", "--logfile=/"], "--logfile '/': is a directory"),
        (["--logfile=-"], "--logfile=- (stdout) needs -n (--nodaemon)"),
    ],
)
def test_unusable_files_are_usage_errors(args: list[str], message: str) -> None:
    assert message in refusal(*args)


def test_unwritable_log_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "old.log"
    log.write_text("")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for non-root
    assert "permission denied" in refusal("-n", f"--logfile={log}")
    assert "cannot create files in" in refusal("-n", f"--logfile={tmp_path}/new")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "--syslog"], "not to syslog (twistd's --syslog)"),
        (
            ["-n", "--logger=twisted.logger.textFileLogObserver"],
            "both choose the log's output",
        ),
    ],
)
def test_json_refuses_twistds_other_log_outputs(args: list[str], message: str) -> None:
    assert message in refusal(*args, log_format="json")
    check(*args)  # text: twistd's choice stands


def test_echod_options_without_twistd_check_nothing() -> None:
    options: Any = Options()
    options.parseOptions(["--log-format", "json"])
    assert options.settings().log_file is None
