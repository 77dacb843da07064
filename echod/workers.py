"""``echod serve --workers N``: N echod processes on shared listeners, supervised.

The parent checks the options once, before any worker starts: a usage error, a
bad endpoint or certificate file, or a listener N processes cannot share is one
line on stderr (exit 2, or 1 for what the daemon itself would refuse), not N.
Workers share C{tcp:}, C{tcp6:}, C{ssl:} and C{tls:} ports through SO_REUSEPORT
(echod.reuseport) and C{systemd:} sockets by inheriting them; a C{unix:} socket,
C{--udp} (its per-source rate limit holds within one process) and C{--metrics}
(each worker counts only its own connections) are refused.

The first worker starts alone and the others once it listens, so a port that
cannot be bound is reported once. The parent speaks for the workers to systemd:
READY=1 once every worker listens, STOPPING=1 when a stop begins, and WATCHDOG=1
only while every worker keeps sending its own (each worker's sd_notify goes to
a socket of the parent's). A worker whose parent dies, even by SIGKILL, gets
SIGTERM from the kernel and drains.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence

from echod.notify import SystemdNotifier
from echod.reuseport import split_description
from echod.settings import EchoSettings

WORKER_BOOTSTRAP = """\
import ctypes, os, signal, sys
parent = int(os.environ.pop("ECHOD_WORKERS_PARENT", "0"))
prctl = getattr(ctypes.CDLL(None), "prctl", None)
if parent and prctl is not None:
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
    if os.getppid() != parent:  # it died before that
        sys.exit(1)
if os.environ.pop("ECHOD_INHERIT_LISTEN_FDS", ""):
    os.environ["LISTEN_PID"] = str(os.getpid())
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""
"""Run twistd as a worker: stopped (SIGTERM, so it drains) if the parent dies,
even by SIGKILL, rather than left serving on its own; and the owner of the
parent's systemd sockets (LISTEN_PID names the process they are for, and
Twisted checks it)."""

SHARED_BY_REUSE_PORT = ("tcp", "tcp6", "ssl", "tls")
UCRED = struct.Struct("3i")
"""struct ucred (pid, uid, gid): the credentials SO_PASSCRED attaches."""
CREDENTIALS_SPACE = socket.CMSG_SPACE(UCRED.size)
TICK = 0.2


class WorkersError(Exception):
    """Why N processes cannot serve these options; one line for the user."""


WORKERS_PER_CPU = 4
"""Most workers per CPU this process may run on (more only contend)."""


def most_workers() -> int:
    """How many workers C{--workers} may ask for here.

    A mistyped count (100000 for 10) would otherwise start processes until the
    kernel's out-of-memory killer steps in; nginx caps its worker processes
    too (1024).
    """
    return WORKERS_PER_CPU * len(os.sched_getaffinity(0))


def check_shareable(settings: EchoSettings, workers: int) -> None:
    """Raise L{WorkersError} unless C{workers} processes can share C{settings}."""
    if workers == 1:
        return
    if settings.udp:
        raise WorkersError(
            f"--workers {workers} cannot share --udp: its per-source rate limit "
            "holds within one process (serve UDP from an echod of its own)"
        )
    if settings.metrics:
        raise WorkersError(
            f"--workers {workers} cannot share --metrics: each worker would count "
            "only its own connections (run daemons with --reuse-port, each with "
            "its own --metrics port)"
        )
    for description in settings.ports:
        kind, args, kwargs = split_description(description.removeprefix("haproxy:"))
        if kind == "systemd":
            continue
        if kind not in SHARED_BY_REUSE_PORT:
            raise WorkersError(
                f"--workers {workers} cannot share {description!r}: only tcp:, "
                "tcp6:, ssl: and tls: ports (SO_REUSEPORT) and systemd: sockets "
                "can be shared"
            )
        port = kwargs.get("port", "443") if kind == "tls" else (args or [""])[0]
        if port.strip() in ("0", ""):
            raise WorkersError(
                f"--workers {workers} cannot share {description!r}: port 0 gives "
                "each worker a port of its own; name the port"
            )


def check_options(args: Sequence[str], workers: int) -> int | None:
    """Check C{args} as a worker would, once; None if fine, else the exit code.

    Everything but the binding: the options, the endpoint strings, the TLS
    files, and whether the listeners can be shared.
    """
    from twisted.internet import reactor

    from echod.service import EchoService, ListenError
    from echod.tap import Options

    options = Options()
    try:
        options.parseOptions(["--reuse-port", *args])
    except SystemExit as e:  # parseOptions has printed the line (or the help)
        return e.code if isinstance(e.code, int) else 2
    settings = options.settings()
    try:
        EchoService(settings, reactor)
    except ListenError as e:
        sys.stderr.write(f"twistd echod: error: {e}\n")
        return 1
    try:
        check_shareable(settings, workers)
    except WorkersError as e:
        sys.stderr.write(f"echod: error: {e}\n")
        return 2
    return None


def worker_environment(
    environ: Mapping[str, str], notify_address: str
) -> tuple[dict[str, str], tuple[int, ...]]:
    """The environment of a worker, and the descriptors it inherits.

    Its sd_notify goes to the parent (C{notify_address}); systemd's sockets
    passed to this process (LISTEN_FDS, for this pid) are passed on.
    """
    env = dict(environ)
    env["NOTIFY_SOCKET"] = notify_address
    env["ECHOD_WORKERS_PARENT"] = str(os.getpid())
    env.pop("WATCHDOG_PID", None)
    fds: tuple[int, ...] = ()
    count = env.pop("LISTEN_FDS", "")
    if env.pop("LISTEN_PID", "") == str(os.getpid()) and count.isdigit():
        fds = tuple(range(3, 3 + int(count)))
        env["LISTEN_FDS"] = count
        env["ECHOD_INHERIT_LISTEN_FDS"] = "1"
    else:
        env.pop("LISTEN_FDNAMES", None)
    return env, fds


class WorkerNotices:
    """The sd_notify datagrams of the workers, on a socket of the parent's.

    The kernel stamps each with its sender's pid (SO_PASSCRED), as it does for
    systemd, so a worker is known by its pid whatever it writes.
    """

    def __init__(self) -> None:
        self.address = f"@echod-workers-{os.getpid()}-{secrets.token_hex(4)}"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.socket.bind("\0" + self.address[1:])
        self.socket.setblocking(False)
        self.ready: set[int] = set()
        """Pids of the workers that said READY=1."""
        self.watchdog: set[int] = set()
        """Pids of the workers that said WATCHDOG=1 since the parent last did."""

    def wait(self, seconds: float) -> None:
        """Wait up to C{seconds} for datagrams, then read every one there is."""
        select.select([self.socket], [], [], seconds)
        while True:
            try:
                data, ancillary, _, _ = self.socket.recvmsg(4096, CREDENTIALS_SPACE)
            except BlockingIOError:
                return
            pid = next(
                (
                    UCRED.unpack(cmsg_data[: UCRED.size])[0]
                    for level, kind, cmsg_data in ancillary
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                ),
                0,
            )
            lines = data.decode(errors="replace").split("\n")
            if "READY=1" in lines:
                self.ready.add(pid)
            if "WATCHDOG=1" in lines:
                self.watchdog.add(pid)

    def close(self) -> None:
        """Stop taking notices."""
        self.socket.close()


def serve_workers(workers: int, args: Sequence[str]) -> int:
    """Run C{workers} echod processes on the same listeners, and supervise them.

    SIGTERM and SIGINT stop every worker, SIGHUP reloads their TLS
    certificates. If a worker ends by itself, the others are stopped too and
    the exit status is 1.
    """
    # Before Twisted's endpoints module is imported: it takes LISTEN_FDS and
    # LISTEN_PID out of the environment as it loads.
    environ = dict(os.environ)
    checked = check_options(args, workers)
    if checked is not None:
        return checked
    upstream = SystemdNotifier(environ)
    notices = WorkerNotices()
    env, fds = worker_environment(environ, notices.address)
    command = [sys.executable, "-c", WORKER_BOOTSTRAP, "--nodaemon", "--pidfile=",
               "echod", "--reuse-port", *args]  # fmt: skip
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        if signum != signal.SIGHUP and not stopping:
            stopping = True
            upstream.stopping(f"stopping {len(children)} workers")
        for child in children:
            # A worker not yet READY has no SIGHUP handler (the signal would
            # kill it); it reads its certificates as it starts anyway.
            if signum == signal.SIGHUP and child.pid not in notices.ready:
                continue
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)

    def start(count: int) -> bool:
        """Start C{count} workers; True once all of them listen."""
        started = [
            subprocess.Popen(command, env=env, pass_fds=fds) for _ in range(count)
        ]
        children.extend(started)
        while not stopping and not {c.pid for c in started} <= notices.ready:
            if any(c.poll() is not None for c in children):
                return False
            notices.wait(TICK)
        return not stopping

    try:
        # The first alone: a port it cannot bind is then reported once.
        if start(1) and start(workers - 1):
            upstream.ready(f"{workers} workers echoing")
        lost_one = False
        while any(c.poll() is None for c in children):
            notices.wait(TICK)
            alive = {c.pid for c in children if c.poll() is None}
            if upstream.watchdog_seconds and alive <= notices.watchdog:
                upstream.notify("WATCHDOG=1")
                notices.watchdog.clear()
            if not stopping and not lost_one and len(alive) < len(children):
                if len(children) > 1:
                    sys.stderr.write("echod: a worker ended; stopping the others\n")
                lost_one = True
                for child in children:
                    if child.poll() is None:
                        child.terminate()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        notices.close()
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    return 0 if stopping and all(c.returncode in clean for c in children) else 1
