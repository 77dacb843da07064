"""deploy/: the systemd units verify, rate secure, and run echod as written."""

from __future__ import annotations

import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import need_tool, twistd_path
from tests.notify import NotifySocket
from tests.peers import connect, connect_when_up, free_port, round_trip

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICES = ("echod.service", "echod-activated.service")
INSTALLED_TWISTD = "/opt/echod/bin/twistd"
INSTALLED_ECHOD = "/opt/echod/bin/echod"
WORKERS_DROP_IN = "echod.service.d/workers.conf"


def installed(text: str) -> str:
    """C{text} with the install paths pointing at this venv's commands."""
    echod = str(Path(twistd_path()).with_name("echod"))
    return text.replace(INSTALLED_TWISTD, twistd_path()).replace(INSTALLED_ECHOD, echod)


def unit_settings(name: str) -> dict[str, list[str]]:
    """The unit's KEY=value settings (continuation lines joined)."""
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value.strip())
    return settings


def exec_start(name: str, replace: dict[str, str]) -> list[str]:
    """The unit's ExecStart as systemd splits it, with the install path and
    ports replaced for a test run."""
    line = unit_settings(name)["ExecStart"][-1]  # a drop-in resets it first
    args = shlex.split(line)  # systemd's quoting and \\ escapes, for this line
    args[0] = installed(args[0])
    out = []
    for arg in args:
        for old, new in replace.items():
            arg = arg.replace(old, new)
        out.append(arg)
    return out


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units, pointing at this venv's twistd (verify wants a real binary)."""
    (tmp_path / WORKERS_DROP_IN).parent.mkdir()
    for unit in (*SERVICES, "echod.socket", WORKERS_DROP_IN):
        (tmp_path / unit).write_text(installed((DEPLOY / unit).read_text()))
    return tmp_path


def test_systemd_analyze_verify(units: Path) -> None:
    analyze = need_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", "echod.service", "echod.socket", "echod-activated.service"],
        cwd=units, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ours = [line for line in result.stderr.splitlines() if "echod" in line]
    assert result.returncode == 0, result.stderr
    assert ours == [], ours


@pytest.mark.parametrize("service", SERVICES)
def test_security_exposure_at_most_2(units: Path, service: str) -> None:
    analyze = need_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", service],
        cwd=units, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"{service}: exposure {found[1]}")
    assert float(found[1]) <= 2.0


def run_as_notify_unit(
    command: list[str], cwd: Path, exercise: Callable[[int], None]
) -> tuple[int, str]:
    """Run a unit's command as systemd runs a Type=notify unit with a watchdog.

    It must say READY=1 with its own pid as MAINPID; C{exercise(pid)} then runs;
    WATCHDOG=1 must come; SIGTERM must bring STOPPING=1. Returns the exit
    status and the output, which must hold no traceback.
    """
    notify = NotifySocket()
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"}
    daemon = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        ready = notify.wait_for("READY=1")
        assert f"MAINPID={daemon.pid}" in ready.lines
        assert ready.pid == daemon.pid  # the kernel's word too
        exercise(daemon.pid)
        notify.wait_for("WATCHDOG=1")
        daemon.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        code = daemon.wait(30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        out = daemon.communicate(timeout=10)[0]
        notify.close()
    assert "Traceback" not in out, out
    return code, out


def echoes(port: int, count: int) -> Callable[[int], None]:
    """Check C{count} connections to 127.0.0.1:C{port}, one round trip each."""

    def exercise(main_pid: int = 0) -> None:
        for _ in range(count):
            with connect("127.0.0.1", port) as sock:
                assert round_trip(sock, b"unit") == b"unit"

    return exercise


def test_unit_command_notifies_ready_watchdog_stopping(tmp_path: Path) -> None:
    """echod.service's own ExecStart, with the test's NOTIFY_SOCKET and watchdog."""
    port, metrics = free_port(), free_port()
    command = exec_start(
        "echod.service", {"tcp6:7:": f"tcp6:{port}:", ":9107:": f":{metrics}:"}
    )
    reload: list[subprocess.CompletedProcess[bytes]] = []

    def echo_and_reload(main_pid: int) -> None:
        echoes(port, 1)(main_pid)  # IPv4 through the dual-stack listener
        # ExecReload (systemctl reload), as systemd runs it for this daemon
        line = unit_settings("echod.service")["ExecReload"][-1]
        args = [arg.replace("$MAINPID", str(main_pid)) for arg in shlex.split(line)]
        reload.append(subprocess.run(args, capture_output=True, timeout=30))
        echoes(port, 1)(main_pid)  # still serving

    code, out = run_as_notify_unit(command, tmp_path, echo_and_reload)
    assert code in (0, -signal.SIGTERM)
    assert reload[0].returncode == 0, reload
    assert "SIGHUP: nothing to reload (no TLS listener, no access file)" in out, out
    assert len(re.findall(r"closed 127\.0\.0\.1:\d+ in=4 out=4", out)) == 2, out


def test_a_stop_at_once_after_ready_drains(tmp_path: Path) -> None:
    """systemd may send SIGTERM the moment READY=1 arrives (systemctl start
    then stop). READY=1 is sent once the reactor runs, its signal handlers in
    place, so the stop drains (STOPPING=1, the stop summary) instead of
    killing. Before, 2 of 10 such stops here killed the daemon outright."""
    for _ in range(5):
        notify = NotifySocket()
        env = {**os.environ, "NOTIFY_SOCKET": notify.address}
        command = [twistd_path(), "-n", "--pidfile=", "echod",
                   "--port", "tcp:0:interface=127.0.0.1"]  # fmt: skip
        daemon = subprocess.Popen(command, cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        try:
            notify.wait_for("READY=1")
            daemon.send_signal(signal.SIGTERM)
            notify.wait_for("STOPPING=1", timeout=10)
            out = daemon.communicate(timeout=30)[0]
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate(timeout=10)
            notify.close()
        assert "stopped: connections=0" in out, out
        assert "Traceback" not in out, out


def test_workers_drop_in_notifies_for_its_workers(tmp_path: Path) -> None:
    """echod.service with the workers drop-in: the parent is the main pid and
    says READY=1, WATCHDOG=1 and STOPPING=1 for both workers."""
    port = free_port()
    command = exec_start(WORKERS_DROP_IN, {"tcp6:7:": f"tcp6:{port}:"})
    assert command[1:4] == ["serve", "--workers", "2"]
    code, out = run_as_notify_unit(command, tmp_path, echoes(port, 20))
    assert code == 0
    assert out.count(f"listening on tcp6:{port}:") == 2, out
    assert len(re.findall(r"closed 127\.0\.0\.1:\d+ in=4 out=4", out)) == 20, out


def test_socket_unit_activation(tmp_path: Path) -> None:
    """echod.socket's name and echod-activated.service's ExecStart, under
    systemd-socket-activate (which plays the socket unit)."""
    activate = need_tool("systemd-socket-activate")
    name = unit_settings("echod.socket")["FileDescriptorName"][0]
    port, metrics = free_port(), free_port()
    command = exec_start("echod-activated.service", {":9107:": f":{metrics}:"})
    assert f"systemd:domain=INET6:name={name}" in command
    daemon = subprocess.Popen(
        [activate, "-l", str(port), f"--fdname={name}", *command],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with connect_when_up(port, daemon) as sock:
            assert (
                round_trip(sock, b"held by systemd", timeout=30) == b"held by systemd"
            )
    finally:
        daemon.terminate()
        out = daemon.communicate(timeout=30)[0]
    assert "Traceback" not in out, out


MDWE_WRAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
# prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN): the kernel's own form of
# MemoryDenyWriteExecute=yes (Linux 6.3 and newer).
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""


def tls_works_under_mdwe(tmp_path: Path) -> bool | None:
    """Can echod finish a mutual-TLS handshake with W^X enforced? None: cannot tell."""
    from echod.certs import make_certificates

    certs = tmp_path / "certs"
    make_certificates(certs, ["localhost"])
    wrapper = tmp_path / "mdwe.py"
    wrapper.write_text(MDWE_WRAPPER)
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, str(wrapper), twistd_path(), "-n", "--pidfile=", "echod",
         "--port", f"ssl:{port}:interface=127.0.0.1",
         "--tls-cert", str(certs / "server.pem"),
         "--tls-key", str(certs / "server.key"),
         "--tls-client-ca", str(certs / "ca.pem")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if daemon.poll() == 77:
                return None  # this kernel has no PR_SET_MDWE
            try:
                raw = connect("127.0.0.1", port)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "daemon did not start"
                time.sleep(0.1)
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                return round_trip(sock, b"w^x") == b"w^x"
        except (ssl.SSLError, OSError):
            return False
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)


def test_memory_deny_write_execute_choice_matches_this_machine(tmp_path: Path) -> None:
    """The unit's MemoryDenyWriteExecute= is what TLS can live with here.

    If TLS works with W^X enforced, the unit should enforce it (this test then
    fails, asking for MemoryDenyWriteExecute=yes); if TLS breaks, the unit
    must leave it off.
    """
    works = tls_works_under_mdwe(tmp_path)
    if works is None:
        pytest.skip("this kernel has no PR_SET_MDWE to test W^X with")
    for service in SERVICES:
        setting = unit_settings(service)["MemoryDenyWriteExecute"][0]
        assert setting == ("yes" if works else "no"), (service, works)
