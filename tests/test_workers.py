"""echod.workers: ``echod serve --workers N``, end to end and in its parts."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from echod.settings import EchoSettings, UDPSettings
from echod.workers import (
    WorkerNotices,
    WorkersError,
    check_shareable,
    worker_environment,
)
from tests.certs import self_signed
from tests.daemon import ECHOD, need_tool, terminate
from tests.notify import NotifySocket
from tests.peers import connect, connect_when_up, free_port, round_trip


def start_workers(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """C{echod serve --workers ...}, output and errors in one pipe."""
    return subprocess.Popen(
        [ECHOD, "serve", "--workers", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env,
    )  # fmt: skip


def two_tcp_workers(
    cwd: Path, notify_address: str, **environ: str
) -> tuple[int, subprocess.Popen[str]]:
    """C{echod serve --workers 2} on a free 127.0.0.1 port, telling its
    sd_notify to C{notify_address}: (the port, the parent process)."""
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=notify_address, **environ)
    args = ["2", "--port", f"tcp:{port}:interface=127.0.0.1"]
    return port, start_workers(args, cwd, env)


def stop_workers(process: subprocess.Popen[str]) -> str:
    """SIGTERM the parent; all it wrote, once it has ended with status 0."""
    time.sleep(0.5)  # the workers log their last connections' ends
    process.send_signal(signal.SIGTERM)
    out = process.communicate(timeout=30)[0]
    assert process.returncode == 0, out
    return out


def children_of(pid: int) -> list[int]:
    """The pids of a process's children (the workers of an echod serve)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


# check_shareable


@pytest.mark.parametrize(
    "port",
    [
        "tcp:7",
        "tcp6:7:interface=\\:\\:1",
        "ssl:443",
        "tls:/etc/echod/tls:port=8443",
        "haproxy:tcp:7",
        "systemd:domain=INET:index=0",
    ],
)
def test_shareable_listeners(port: str) -> None:
    check_shareable(EchoSettings(ports=(port,)), 4)


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (EchoSettings(ports=("unix:/run/e.sock",)), "cannot share 'unix:/run/e.sock'"),
        (EchoSettings(ports=("haproxy:unix:/e",)), "cannot share 'haproxy:unix:/e'"),
        (EchoSettings(ports=("tcp:0",)), "port 0 gives each worker a port"),
        (EchoSettings(ports=("tls:/d:port=0",)), "port 0 gives each worker a port"),
        (EchoSettings(udp=(UDPSettings(port=7),)), "cannot share --udp"),
        (EchoSettings(metrics="tcp:9100"), "cannot share --metrics"),
    ],
)
def test_unshareable_options(settings: EchoSettings, why: str) -> None:
    with pytest.raises(WorkersError, match=re.escape(why)):
        check_shareable(settings, 2)
    check_shareable(settings, 1)  # one worker shares nothing


# worker_environment


def test_worker_environment_passes_systemd_sockets_on() -> None:
    environ = {
        "LISTEN_PID": str(os.getpid()),
        "LISTEN_FDS": "2",
        "LISTEN_FDNAMES": "a:b",
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/bin",
    }
    env, fds = worker_environment(environ, "@parent")
    assert fds == (3, 4)
    assert env == {
        "LISTEN_FDS": "2",
        "LISTEN_FDNAMES": "a:b",
        "ECHOD_INHERIT_LISTEN_FDS": "1",
        "WATCHDOG_USEC": "1000000",
        "NOTIFY_SOCKET": "@parent",
        "ECHOD_WORKERS_PARENT": str(os.getpid()),
        "PATH": "/bin",
    }


def test_worker_environment_drops_sockets_meant_for_another_process() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a"}
    env, fds = worker_environment(environ, "@parent")
    assert fds == ()
    assert env == {"NOTIFY_SOCKET": "@parent", "ECHOD_WORKERS_PARENT": str(os.getpid())}


# WorkerNotices


def test_worker_notices_know_the_sender_by_pid() -> None:
    notices = WorkerNotices()
    try:
        address = "\0" + notices.address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"READY=1\nSTATUS=up\nMAINPID=1", address)
        child = subprocess.run(
            [sys.executable, "-c",
             "import socket, sys; s = socket.socket(socket.AF_UNIX, "
             "socket.SOCK_DGRAM); s.sendto(b'WATCHDOG=1', '\\0' + sys.argv[1]); "
             "print(__import__('os').getpid())", notices.address[1:]],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        notices.wait(1.0)
        assert notices.ready == {os.getpid()}  # the kernel's word, not MAINPID's
        assert notices.watchdog == {int(child.stdout)}
    finally:
        notices.close()


# end to end


def test_echod_serve_workers(tmp_path: Path, notify_socket: NotifySocket) -> None:
    notify = notify_socket
    port, process = two_tcp_workers(tmp_path, notify.address)
    try:
        with connect_when_up(port, process) as sock:  # the first worker serves
            assert round_trip(sock, b"up") == b"up"
        assert "READY=1" in notify.next(30).lines  # and now both
        for i in range(30):
            with connect("127.0.0.1", port) as sock:
                assert round_trip(sock, b"%d" % i) == b"%d" % i
        out = stop_workers(process)
    finally:
        terminate(process)
    listening = re.findall(r"listening on tcp:\d+\S* at 127\.0\.0\.1:(\d+)", out)
    assert listening == [str(port)] * 2, out
    assert out.count("stopped: ") == 2, out


def test_a_sighup_during_start_up_spares_workers_not_yet_ready(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """The parent passed SIGHUP on to a worker that had not yet set its
    handler: the worker died of it, and the parent stopped the rest (exit 1)."""
    port, process = two_tcp_workers(tmp_path, notify_socket.address)
    try:
        deadline = time.monotonic() + 30
        while not children_of(process.pid):  # the parent's handlers are set by now
            assert time.monotonic() < deadline, "no worker started"
            time.sleep(0.005)
        process.send_signal(signal.SIGHUP)  # the worker is still starting Python
        assert "READY=1" in notify_socket.next(30).lines
        with connect("127.0.0.1", port) as sock:
            assert round_trip(sock, b"after") == b"after"
        out = stop_workers(process)
    finally:
        terminate(process)
    assert "a worker ended" not in out, out


def running(pid: int) -> bool:
    """Whether process C{pid} exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_end_when_the_parent_is_killed(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """SIGKILL leaves the parent no time to pass anything on; the workers are
    stopped by the kernel (PR_SET_PDEATHSIG), drain, and exit."""
    notify = notify_socket
    _, process = two_tcp_workers(tmp_path, notify.address)
    workers: list[int] = []
    try:
        assert "READY=1" in notify.next(30).lines
        workers = children_of(process.pid)
        assert len(workers) == 2
        process.kill()
        process.wait(10)
        deadline = time.monotonic() + 30
        while any(map(running, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(running, workers)), "workers outlived their parent"
    finally:
        terminate(process)
        for pid in filter(running, workers):
            os.kill(pid, signal.SIGKILL)
        out = process.communicate(timeout=10)[0]  # the workers held the pipe
    assert out.count("Received SIGTERM, shutting down.") == 2, out
    assert out.count("stopped: ") == 2, out


def test_workers_needs_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    from echod.cli import main

    for count in ("many", "0", "-1"):
        assert main(["serve", "--workers", count]) == 2
        assert capsys.readouterr().err == (
            "echod: error: --workers takes a number of processes, 1 or more, "
            f"not {count!r}\n"
        )


def test_workers_are_at_most_four_per_cpu() -> None:
    """--workers 100000 started processes until the kernel's OOM killer came."""
    cpus = len(os.sched_getaffinity(0))
    out = subprocess.run(
        [ECHOD, "serve", "--workers", str(4 * cpus + 1)],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip  (without the cap: workers on tcp:10000 until the timeout)
    assert out.returncode == 2
    assert out.stderr == (
        f"echod: error: --workers {4 * cpus + 1}: at most {4 * cpus} here "
        "(4 per CPU this process may run on)\n"
    )


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (["--idle-timeout", "x"], 2, "--idle-timeout must be a number, not 'x'"),
        (["--port", "tcp:7:frob=1"], 1, "bad endpoint 'tcp:7:frob=1': unknown "
         "parameter 'frob' (with --reuse-port)"),
        (["--port", "ssl:7"], 1, "'ssl:7' needs a certificate"),
        (["--port", "unix:e.sock"], 2, "--workers 3 cannot share 'unix:e.sock'"),
        (["--metrics", "tcp:9100"], 2, "--workers 3 cannot share --metrics"),
    ],
)  # fmt: skip
def test_workers_refuse_once(
    tmp_path: Path, args: list[str], code: int, line: str
) -> None:
    """Checked in the parent: one line, the right code, and no worker started."""
    process = start_workers(["3", *args], tmp_path)
    out = process.communicate(timeout=60)[0]
    assert process.returncode == code, out
    assert out.count("\n") == 1 and line in out, out


def test_a_port_in_use_is_reported_once(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = start_workers(
            ["3", "--port", f"tcp:{port}:interface=127.0.0.1"], tmp_path
        )
        out = process.communicate(timeout=60)[0]
    assert process.returncode == 1, out
    assert out == (
        f"twistd echod: error: cannot listen on 'tcp:{port}:interface=127.0.0.1': "
        "[Errno 98] Address already in use\n"
    )


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A NOTIFY_SOCKET as systemd's, closed after the test."""
    notify = NotifySocket()
    try:
        yield notify
    finally:
        notify.close()


def test_workers_speak_for_systemd(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """READY=1 once all listen, WATCHDOG=1 while all answer, STOPPING=1: all
    from the parent (the unit's main pid, as NotifyAccess=main wants)."""
    notify = notify_socket
    port, process = two_tcp_workers(tmp_path, notify.address, WATCHDOG_USEC="600000")
    try:
        ready = notify.next(30)
        assert ready.pid == process.pid
        assert ready.lines == [
            "READY=1", "STATUS=2 workers echoing", f"MAINPID={process.pid}"
        ]  # fmt: skip
        workers = children_of(process.pid)
        assert len(workers) == 2
        for _ in range(10):  # both listen by now
            with connect("127.0.0.1", port) as conn:
                assert round_trip(conn, b"ready") == b"ready"
        relayed = notify.within(2.0)
        assert len(relayed) >= 2, relayed
        assert all(n.lines == ["WATCHDOG=1"] and n.pid == process.pid for n in relayed)
        os.kill(workers[0], signal.SIGSTOP)  # a hung worker: systemd must hear it
        try:
            notify.within(0.7)  # what was already on its way
            assert notify.within(1.5) == []
        finally:
            os.kill(workers[0], signal.SIGCONT)
        assert notify.within(3.0), "WATCHDOG=1 again once it answers"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        after = [n.lines for n in notify.within(0.5)]
        assert [n for n in after if n != ["WATCHDOG=1"]] == [
            ["STOPPING=1", "STATUS=stopping 2 workers"]
        ], after
    finally:
        terminate(process)
        process.communicate(timeout=10)


def test_workers_share_systemd_sockets(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """Under socket activation the workers inherit the parent's sockets."""
    activate = need_tool("systemd-socket-activate")
    port = free_port()
    notify = notify_socket
    process = subprocess.Popen(
        [activate, "-l", f"127.0.0.1:{port}", "--fdname=echod", "-E", "NOTIFY_SOCKET",
         ECHOD, "serve", "--workers", "2", "--port", "systemd:domain=INET:index=0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, env=dict(os.environ, NOTIFY_SOCKET=notify.address),
    )  # fmt: skip
    try:
        # The first connection starts echod, as systemd does, and waits.
        with connect_when_up(port, process) as sock:
            assert round_trip(sock, b"first", timeout=30) == b"first"
        assert "READY=1" in notify.next(30).lines  # both workers listen
        for i in range(20):
            with connect("127.0.0.1", port) as sock:
                assert round_trip(sock, b"%d" % i) == b"%d" % i
        # systemd-socket-activate does not pass SIGTERM on; systemd signals
        # every process of the unit, as this does.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        out = process.communicate(timeout=10)[0]
    assert out.count("listening on systemd:domain=INET:index=0 at 127.0.0.1") == 2, out
    served = re.findall(r"stopped: connections=(\d+)", out)
    assert sum(map(int, served)) == 21 and len(served) == 2, out
    assert "Traceback" not in out, out


def test_workers_share_a_tls_port(tmp_path: Path, notify_socket: NotifySocket) -> None:
    key, cert = self_signed(tmp_path)
    port = free_port()
    notify = notify_socket
    process = start_workers(
        ["2", "--port", f"ssl:{port}:interface=127.0.0.1",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        tmp_path, dict(os.environ, NOTIFY_SOCKET=notify.address),
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))
    try:
        assert "READY=1" in notify.next(30).lines  # both workers listen
        for i in range(20):
            with context.wrap_socket(
                connect("127.0.0.1", port), server_hostname="localhost"
            ) as tls:
                assert round_trip(tls, b"tls %d" % i) == b"tls %d" % i
        out = stop_workers(process)
    finally:
        terminate(process)
    assert out.count(f"listening on ssl:{port}:interface=127.0.0.1 at ") == 2, out
    served = sorted(map(int, re.findall(r"stopped: connections=(\d+)", out)))
    assert len(served) == 2 and served[0] > 0 and sum(served) == 20, out
