"""The benchmark runs end to end (briefly) and verifies every byte it moves."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import DaemonStarter, need_tool

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_quick_run_reports_a_table() -> None:
    need_tool("cc")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers",
         "c-epoll,python-epoll,echod", "--runs", "1", "--seconds", "0.5",
         "--idle", "200"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "| echod |" in out and "| c-epoll |" in out
    floor_row = next(x for x in out.splitlines() if x.startswith("| python-epoll |"))
    assert "| yes |" in floor_row
    assert "Problems seen" not in out
    echod_row = next(line for line in out.splitlines() if line.startswith("| echod |"))
    assert "| yes |" in echod_row  # all bytes back after half-close


@pytest.mark.slow
def test_micro_benchmarks_run_and_report_each_part() -> None:
    """bench/micro.py, the source of the in-process figures in PERFORMANCE.md."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "micro.py")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for heading in ("1. a reactor turn", "2. Python of one readable event",
                    "3. send + recv of 1 KiB",
                    "4. a connection's close line",
                    "5. an accepted connection's protocol"):  # fmt: skip
        assert any(line.startswith(heading) for line in lines), heading
    assert any(line.strip().startswith("fresh   256 KiB") for line in lines)
    assert any(line.strip().startswith("raised  256 KiB") for line in lines)


@pytest.mark.slow
def test_instruction_counts_run_under_callgrind() -> None:
    """bench/instructions.py, the source of the noise-free figures (C only: quick)."""
    need_tool("valgrind")
    need_tool("cc")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "instructions.py"), "--servers",
         "c-epoll", "--connections", "2", "--size", "64", "--seconds", "3",
         "--functions", "3"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(x for x in result.stdout.splitlines() if x.startswith("| c-epoll |"))
    count = int(row.split("|")[2].replace(",", ""))
    assert 10 < count < 1000, row  # a few dozen instructions around two syscalls
    breakdown = result.stdout.split("c-epoll: instructions per request by C function")
    assert len(breakdown) == 2 and len(breakdown[1].strip().splitlines()) == 4


@pytest.fixture(scope="module")
def run() -> Any:
    """bench/run.py, imported (it is a script, not a module of the package)."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["bench_run"]
    return module


def test_a_failure_the_design_explains_is_said_and_not_serious(run: Any) -> None:
    """The minimal Twisted echo loses the echo at the client's FIN: the short
    connections scenario fails for it by design, said beside its error and not
    the run's exit status; any other error of any server is serious."""
    servers = {s.name: s for s in run.SERVERS}
    conn = "conn10: {'errors': 42375}"
    assert "without half-close" in run.expected(servers["twisted-minimal"], conn)
    assert run.expected(servers["twisted-minimal"], "pp100: {'errors': 1}") is None
    assert run.expected(servers["echod"], conn) is None
    assert "one client at a time" in run.expected(servers["textbook"], conn)


def test_ratios_show_their_spread_run_by_run(run: Any) -> None:
    """The ratio of the medians, and the lowest and highest ratio of the runs
    taken in turn: how far the noise between runs moves it."""
    ours, theirs = run.Results(), run.Results()
    ours.runs["pp100"] = [{"req_per_s": v} for v in (100.0, 90.0, 120.0)]
    theirs.runs["pp100"] = [{"req_per_s": v} for v in (100.0, 100.0, 100.0)]
    assert run.ratio_cell(ours, theirs, "pp100", "req_per_s") == "1.00 (0.90–1.20)"
    ours.runs["pp1"] = [{"req_per_s": 50.0}]
    theirs.runs["pp1"] = [{"req_per_s": 40.0}]
    assert run.ratio_cell(ours, theirs, "pp1", "req_per_s") == "1.25"  # one run
    assert run.ratio_cell(ours, theirs, "stream1", "mb_per_s") == "—"  # not run


def test_unknown_scenarios_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--scenarios", "pp1,nope"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "unknown scenarios: nope" in result.stderr


def test_reliability_table_marks_cases_without_a_figure(tmp_path: Path) -> None:
    figures = tmp_path / "figures.jsonl"
    figures.write_text(
        '{"case": "test_port_in_use_at_start", "expectation": "one | line", '
        '"figure": "exit 1", "rerun": "python -m pytest \'x\'", "scale": "ci"}\n'
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "reliability_table.py"), str(figures)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1  # the other cases have no figure
    assert "| port in use at start | one \\| line | exit 1 |" in result.stdout
    assert "no figure: the case failed or did not run" in result.stdout
    assert "case(s) without a figure" in result.stderr


def children_of(pid: int) -> list[int]:
    """The pids whose parent is C{pid}."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigterm_stops_the_server_under_test() -> None:
    """The servers run in their own sessions: killing the benchmark must stop them."""
    need_tool("cc")
    run = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--servers", "python-epoll",
         "--runs", "1", "--seconds", "60", "--no-memory", "--no-cap"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert run.stderr is not None
        assert run.stderr.readline().startswith("run 1/1: python-epoll")
        deadline = time.monotonic() + 30
        while len(children_of(run.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the server, then the load generator
        started = children_of(run.pid)
        assert len(started) == 2, started
        run.terminate()
        assert run.wait(30) == 128 + signal.SIGTERM
        for pid in started:
            assert not Path(f"/proc/{pid}").exists() or (
                Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                == "Z"
            ), pid
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def short_echo_server(cut: int) -> tuple[socket.socket, threading.Thread]:
    """A loopback server that reads each connection to EOF and echoes all but
    its last C{cut} bytes: a wrong echo for the load generator to catch."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
                sock.sendall(data[: len(data) - cut])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_echoload_conn_mode_verifies_every_connection(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """bench/echoload.c's short-connection mode (the conn/s column): against
    echod every connection completes; a server that keeps back one byte of
    each echo fails the run (exit 1, every connection an error)."""
    cc = need_tool("cc")
    binary = tmp_path / "echoload"
    subprocess.run(
        [cc, "-O2", "-o", str(binary), str(ROOT / "bench" / "echoload.c")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    daemon = start_daemon("--port", "tcp:0:interface=127.0.0.1")
    port = daemon.tcp_port()
    run = [str(binary), "conn", "-c", "4", "-s", "100", "-d", "0.5"]
    good = subprocess.run([*run, "-p", str(port)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert good.returncode == 0, good.stdout + good.stderr
    figures = json.loads(good.stdout.splitlines()[-1])
    assert figures["completed"] > 0 and figures["errors"] == 0, figures
    daemon.stop()
    [stopped] = daemon.wait_for(r"stopped: connections=(\d+) ")
    assert int(stopped[1]) >= figures["completed"]  # each one a real connection
    listener, thread = short_echo_server(cut=1)
    try:
        port = listener.getsockname()[1]
        bad = subprocess.run([*run, "-p", str(port)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    finally:
        listener.close()
        thread.join(5)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    figures = json.loads(bad.stdout.splitlines()[-1])
    assert figures["completed"] == 0 and figures["errors"] > 0, figures
