#!/usr/bin/env python3
"""echod's benchmark: echod beside reference echo servers, in one invocation.

    python bench/run.py                      # the whole matrix (about 8 minutes)
    python bench/run.py --quick              # one short run of each, to try it
    python bench/run.py --servers echod,uvloop,c-epoll --runs 5

Each server runs pinned to core 0 and the C load generator (bench/echoload.c,
built here with cc) to core 1; every echoed byte is verified by the generator.
Timed scenarios are repeated --runs times on a fresh server process and the
median is reported; memory scenarios run once each. The output is Markdown:
the machine, a table of figures, and echod's ratios against the references.
Absolute figures drift on a shared machine; ratios within one run hold.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "build"
PY = sys.executable
SERVER_CORE, LOAD_CORE = "0", "1"


def twistd() -> str:
    local = Path(PY).with_name("twistd")
    return str(local) if local.exists() else "twistd"


@dataclass
class Server:
    """A reference or echod server: how to start it and what it can take."""

    name: str
    command: Callable[[int], list[str]]
    note: str
    many: bool = True  # serves many connections at once
    half_close: bool = True  # echoes what came before the client's FIN
    one_process: bool = True  # RSS of one pid tells its memory
    cores: str = SERVER_CORE  # where it runs (taskset)
    available: Callable[[], bool] = lambda: True
    notifies: bool = False  # says READY=1 on $NOTIFY_SOCKET once all of it serves


def _has_module(name: str) -> Callable[[], bool]:
    def check() -> bool:
        probe = [PY, "-c", f"import {name}"]
        return subprocess.run(probe, capture_output=True).returncode == 0

    return check


SERVERS = [
    Server(
        "c-epoll",
        lambda p: [str(BUILD / "cecho"), str(p)],
        "minimal C epoll echo (the ceiling)",
    ),
    Server(
        "textbook",
        lambda p: [PY, str(HERE / "servers/textbook.py"), str(p)],
        "the tutorial's blocking echo, one client at a time",
        many=False,
    ),
    Server(
        "asyncio",
        lambda p: [PY, str(HERE / "servers/asyncio_echo.py"), str(p)],
        "asyncio Protocol echo (unbounded buffering)",
    ),
    Server(
        "uvloop",
        lambda p: [PY, str(HERE / "servers/asyncio_echo.py"), str(p), "--uvloop"],
        "uvloop Protocol echo (unbounded buffering)",
        available=_has_module("uvloop"),
    ),
    Server(
        "python-epoll",
        lambda p: [PY, str(HERE / "servers/python_epoll.py"), str(p)],
        "bench/cecho.c in Python: a bare epoll loop, no framework (the floor "
        "for any Python server)",
    ),
    Server(
        "twisted-minimal",
        lambda p: [PY, str(HERE / "servers/twisted_echo.py"), str(p)],
        "minimal Twisted echo (no half-close, no backpressure)",
        half_close=False,
    ),
    Server(
        "echod",
        lambda p: [
            twistd(),
            "-n",
            "--pidfile=",
            "echod",
            "--port",
            f"tcp:{p}:interface=127.0.0.1",
        ],
        "echod, default settings (idle timeout and limits on)",
    ),
    Server(
        "echod-public-write",
        lambda p: [
            twistd(),
            "-n",
            "--pidfile=",
            "echod",
            "--no-write-through",
            "--port",
            f"tcp:{p}:interface=127.0.0.1",
        ],
        "echod with write-through off (Twisted's public write path)",
    ),
    Server(
        "echod-no-conn-log",
        lambda p: [
            twistd(),
            "-n",
            "--pidfile=",
            "echod",
            "--log-connections",
            "none",
            "--port",
            f"tcp:{p}:interface=127.0.0.1",
        ],
        "echod without its log line per connection (--log-connections none)",
    ),
    Server(
        "echod-busy-poll",
        lambda p: [
            twistd(),
            "-n",
            "--pidfile=",
            "echod",
            "--busy-poll",
            "100",
            "--port",
            f"tcp:{p}:interface=127.0.0.1",
        ],
        "echod polling without sleeping for 100 µs after each event (an "
        "option, off by default; a busy core while traffic flows)",
    ),
    Server(
        "echod-2-workers",
        lambda p: [
            str(Path(PY).with_name("echod")),
            "serve",
            "--workers",
            "2",
            "--port",
            f"tcp:{p}:interface=127.0.0.1",
        ],
        "two echod processes on one port (SO_REUSEPORT), on both cores; the "
        "load generator shares core 1 with one of them",
        one_process=False,
        cores="0,1",
        notifies=True,  # the first worker accepts a second before the other
    ),
    Server(
        "socat",
        lambda p: [
            "socat",
            f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork,backlog=4096",
            "PIPE",
        ],
        "socat, a process per connection",
        one_process=False,
        available=lambda: shutil.which("socat") is not None,
    ),
]


@dataclass
class Scenario:
    """One load-generator run and how to read its figure."""

    key: str
    title: str
    args: list[str]
    figure: str  # the field of echoload's JSON line
    unit: str
    needs_many: bool = False


SCENARIOS = [
    Scenario(
        "pp1",
        "ping-pong 1 × 64 B",
        ["pingpong", "-c", "1", "-s", "64"],
        "req_per_s",
        "req/s",
    ),
    Scenario(
        "pp100",
        "ping-pong 100 × 1 KiB",
        ["pingpong", "-c", "100", "-s", "1024"],
        "req_per_s",
        "req/s",
        needs_many=True,
    ),
    Scenario(
        "stream1",
        "stream 1 × 64 KiB",
        ["stream", "-c", "1", "-C", "65536"],
        "mb_per_s",
        "MB/s",
    ),
    Scenario(
        "stream50",
        "stream 50 × 16 KiB",
        ["stream", "-c", "50", "-C", "16384"],
        "mb_per_s",
        "MB/s",
        needs_many=True,
    ),
    Scenario(
        "conn10",
        "short connections 10 at a time × 64 B",
        ["conn", "-c", "10", "-s", "64"],
        "conn_per_s",
        "conn/s",
    ),
]


CAP_PERCENT = 50


class CpuCap:
    """A cgroup holding a server to part of one core (cgroup v2 or v1 cpu).

    With the server capped, the load generator has twice its CPU: whatever it
    measures is the server's limit, not the generator's. None of this is
    possible without write access to the cgroup file system; then the capped
    scenario is left out and the report says so.
    """

    NAME = "echod-bench"

    def __init__(self, percent: int) -> None:
        period = 100_000
        quota = period * percent // 100
        v2 = Path("/sys/fs/cgroup")
        v1 = Path("/sys/fs/cgroup/cpu")
        if "cpu" in self._read(v2 / "cgroup.controllers").split():
            self.path = v2 / self.NAME
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {period}")
        elif (v1 / "cpu.cfs_quota_us").exists():
            self.path = v1 / self.NAME
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(period))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            raise OSError("no cpu cgroup controller")

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text()
        except OSError:
            return ""

    def add(self, pid: int) -> None:
        """Move process C{pid} (all its threads) into the cap."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Delete the cgroup (its processes have ended)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def cpu_cap(percent: int) -> CpuCap | None:
    """A L{CpuCap}, or None where this machine does not allow one."""
    try:
        return CpuCap(percent)
    except OSError as e:
        print(f"no capped scenario: {e}", file=sys.stderr)
        return None


@dataclass
class Results:
    """Every figure measured for one server."""

    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    slow_reader_kib: float | None = None
    idle_kib_per_conn: float | None = None
    idle_held: int = 0
    errors: list[str] = field(default_factory=list)

    def median(self, key: str, figure: str) -> float | None:
        values = [r[figure] for r in self.runs.get(key, []) if figure in r]
        return statistics.median(values) if values else None


def ratio_cell(ours: Results, theirs: Results, key: str, figure: str) -> str:
    """echod's ratio to a reference for one scenario: of the medians, and with
    more than one run the range of the ratios run by run (the servers take
    turns, so run i of each is measured at about the same time): how far the
    noise between runs moves it."""
    a, b = ours.median(key, figure), theirs.median(key, figure)
    if not a or not b:
        return "—"
    pairs = zip(ours.runs.get(key, []), theirs.runs.get(key, []), strict=False)
    each = [x[figure] / y[figure] for x, y in pairs if x.get(figure) and y.get(figure)]
    if len(each) < 2:
        return f"{a / b:.2f}"
    return f"{a / b:.2f} ({min(each):.2f}–{max(each):.2f})"


def build() -> None:
    """Compile the load generator and the C ceiling server."""
    BUILD.mkdir(exist_ok=True)
    for name in ("echoload", "cecho"):
        source, binary = HERE / f"{name}.c", BUILD / name
        if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
            cc = os.environ.get("CC", "cc")
            subprocess.run(
                [cc, "-O2", "-Wall", "-o", str(binary), str(source)], check=True
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: str, command: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return (
        [taskset, "-c", core, *command] if taskset and os.cpu_count() != 1 else command
    )


def wait_until_accepting(
    port: int, process: subprocess.Popen[bytes], timeout: float, name: str
) -> None:
    """Return once 127.0.0.1:C{port} accepts; raise if C{process} ends first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.1)


def wait_until_ready(
    notices: socket.socket, process: subprocess.Popen[bytes], timeout: float, name: str
) -> None:
    """Return once C{process} says READY=1 on C{notices}; raise if it ends first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        notices.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            if "READY=1" in notices.recv(4096).decode(errors="replace").split("\n"):
                return
    raise RuntimeError(f"{name} did not say READY=1")


class Running:
    """A started server process, waited on until it accepts connections."""

    def __init__(self, server: Server) -> None:
        self.port = free_port()
        with contextlib.ExitStack() as stack:
            env = None
            if server.notifies:
                notices = stack.enter_context(
                    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                )
                name = f"echod-bench-{os.getpid()}-{self.port}"
                notices.bind("\0" + name)
                env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
            self.process = subprocess.Popen(
                pinned(server.cores, server.command(self.port)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=BUILD,
                start_new_session=True,
                env=env,
            )
            wait_until_accepting(self.port, self.process, 30, server.name)
            if server.notifies:
                wait_until_ready(notices, self.process, 30, server.name)
        time.sleep(0.3)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(
            next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]
        )

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used."""
        fields = (
            Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        )
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


def load(args: list[str], port: int, timeout: float) -> dict[str, float]:
    """Run echoload; its last line is JSON with every figure."""
    out = subprocess.run(
        pinned(LOAD_CORE, [str(BUILD / "echoload"), *args, "-p", str(port)]),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"echoload {' '.join(args)}: {out.stdout}{out.stderr}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


CAPPED = Scenario(
    "pp100cap",
    f"ping-pong 100 × 1 KiB, server at {CAP_PERCENT}% of a core",
    ["pingpong", "-c", "100", "-s", "1024"],
    "req_per_s",
    "req/s",
    needs_many=True,
)


def timed(
    server: Server,
    seconds: float,
    results: Results,
    cap: CpuCap | None = None,
    only: set[str] | None = None,
) -> None:
    """One run of every timed scenario (of C{only}'s keys, when given) on a
    fresh server (then capped, if asked)."""
    running = Running(server)
    scenarios = list(SCENARIOS)
    if cap is not None and server.one_process and server.many:
        scenarios.append(CAPPED)
    scenarios = [s for s in scenarios if only is None or s.key in only]
    try:
        for s in scenarios:
            if s.needs_many and not server.many:
                continue
            if s is CAPPED:
                assert cap is not None
                cap.add(running.process.pid)
            cpu0 = running.cpu_seconds()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = load([*s.args, "-d", str(seconds)], running.port, seconds + 60)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            busy = running.cpu_seconds() - cpu0
            load_busy = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
            elapsed = float(r.get("secs") or seconds)
            r["server_busy"] = busy / elapsed
            r["load_busy"] = load_busy / elapsed
            done = r.get("requests") or r.get("completed")  # ping-pong; conn
            if done:
                r["server_us_each"] = busy * 1e6 / done  # per request or connection
            if r.get("errors") or (r.get("mismatches") and r["mismatches"] > 0):
                results.errors.append(f"{s.key}: {r}")
            results.runs.setdefault(s.key, []).append(r)
    finally:
        running.stop()


def slow_reader(server: Server, results: Results, seconds: float) -> None:
    """RSS growth while one client pushes up to 1 GiB and never reads."""
    running = Running(server)
    try:
        before = running.rss_kib()
        gen = subprocess.Popen(
            pinned(
                LOAD_CORE,
                [
                    str(BUILD / "echoload"),
                    "slowread",
                    "-n",
                    str(1 << 30),
                    "-d",
                    str(seconds),
                    "-p",
                    str(running.port),
                ],
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        peak = before
        while gen.poll() is None:
            peak = max(peak, running.rss_kib())
            time.sleep(0.1)
        results.slow_reader_kib = peak - before
    finally:
        running.stop()


def idle_connections(server: Server, results: Results, count: int) -> None:
    """RSS per connection while COUNT idle connections are held."""
    running = Running(server)
    try:
        base_fds, before = running.open_fds(), running.rss_kib()
        gen = subprocess.Popen(
            pinned(
                LOAD_CORE,
                [
                    str(BUILD / "echoload"),
                    "hold",
                    "-c",
                    str(count),
                    "-d",
                    "8",
                    "-p",
                    str(running.port),
                ],
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        held = 0
        while time.monotonic() < deadline and gen.poll() is None:
            held = running.open_fds() - base_fds
            if held >= count:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        after = running.rss_kib()
        out, _ = gen.communicate(timeout=60)
        summary = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
        if summary["verified"] != count:
            results.errors.append(f"hold: {summary}")
        results.idle_held = held
        results.idle_kib_per_conn = (after - before) / max(held, 1)
    finally:
        running.stop()


HALF_CLOSING = ("conn10:",)
"""The scenarios whose clients half-close and wait for the echo's end."""


def expected(server: Server, error: str) -> str | None:
    """Why C{server} was bound to fail so (a limit of its design, said
    beside the error), or None for a failure that is not expected."""
    if not server.many:
        return "a server that serves one client at a time"
    if not server.half_close and error.startswith(HALF_CLOSING):
        return "a server without half-close: the echo is lost at the client's FIN"
    return None


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import twisted

    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, Twisted {twisted.__version__}"
    )


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def report(
    all_results: dict[str, Results], servers: list[Server], args: argparse.Namespace
) -> str:
    lines = [
        f"Machine: {machine()}.",
        f"Server on core {SERVER_CORE}, load generator on core {LOAD_CORE}; medians of "
        f"{args.runs} runs of {args.seconds:g} s; every echoed byte verified.",
        "",
        "| server | "
        + "".join(f"{s.title}, {s.unit} | " for s in SCENARIOS)
        + "all bytes back after half-close | RSS growth, 1 GiB slow reader | "
        f"RSS per idle connection ({args.idle:,} held) | latency 100 conns p50 / p99 / "
        "p99.9 µs |",
        "|---" * (len(SCENARIOS) + 5) + "|",
    ]
    for server in servers:
        r = all_results[server.name]
        back = [run.get("all_back") for run in r.runs.get("stream1", [])]
        half = "yes" if back and all(back) else ("no (tail lost)" if back else "—")
        slow = r.slow_reader_kib
        slow_txt = "—" if slow is None else f"{slow / 1024:,.1f} MiB"
        idle = r.idle_kib_per_conn
        idle_txt = "—" if idle is None else f"{idle:.2f} KiB"
        if idle is not None and r.idle_held < args.idle:
            idle_txt += f" ({r.idle_held:,} held)"
        lat = "—"
        if r.runs.get("pp100"):
            lat = " / ".join(
                fmt(r.median("pp100", k)) for k in ("p50_us", "p99_us", "p999_us")
            )
        figures = [fmt(r.median(s.key, s.figure)) for s in SCENARIOS]
        cells = [server.name, *figures, half, slow_txt, idle_txt, lat]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Servers: " + "; ".join(f"**{s.name}**: {s.note}" for s in servers) + ".",
    ]
    lines += [
        "",
        "Who is the limit: CPU busy (1.00 = a whole core) of the server and of the "
        "load generator during ping-pong and short connections, and the server's "
        "CPU time per request or connection (lower is better; it does not depend "
        "on the load generator).",
        "",
        "| server | 1 × 64 B: server busy / load busy | 1 × 64 B: server µs/req | "
        "100 × 1 KiB: server busy / load busy | 100 × 1 KiB: server µs/req | "
        "short connections: server busy / load busy | short connections: server "
        "µs/connection | "
        f"100 × 1 KiB, server capped at {CAP_PERCENT}% of a core: req/s "
        "(server busy / load busy) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for server in servers:
        r = all_results[server.name]
        cells = [server.name]
        if not server.one_process:
            lines.append(f"| {server.name} | — | — | — | — | — | — | — |")
            continue
        for key in ("pp1", "pp100", "conn10"):
            sb, lb = r.median(key, "server_busy"), r.median(key, "load_busy")
            cells.append("—" if sb is None or lb is None else f"{sb:.2f} / {lb:.2f}")
            cells.append(fmt(r.median(key, "server_us_each"), 2))
        capped = r.median("pp100cap", "req_per_s")
        sb, lb = r.median("pp100cap", "server_busy"), r.median("pp100cap", "load_busy")
        cells.append(
            "—"
            if capped is None or sb is None or lb is None
            else f"{fmt(capped)} ({sb:.2f} / {lb:.2f})"
        )
        lines.append("| " + " | ".join(cells) + " |")
    if not any(r.runs.get("pp100cap") for r in all_results.values()):
        lines += ["", "(The capped scenario did not run: no writable cpu cgroup.)"]
    if "echod" in all_results:
        lines += [
            "",
            "echod's ratios (echod ÷ reference, same run: of the medians, and "
            "in brackets the lowest and highest of the ratios run by run):",
            "",
            "| reference | " + " | ".join(s.title for s in [*SCENARIOS, CAPPED]) + " |",
            "|---" * (len(SCENARIOS) + 2) + "|",
        ]
        e = all_results["echod"]
        for server in servers:
            if server.name == "echod":
                continue
            ref = all_results[server.name]
            cells = [ratio_cell(e, ref, s.key, s.figure) for s in [*SCENARIOS, CAPPED]]
            lines.append(f"| {server.name} | " + " | ".join(cells) + " |")
    by_name = {s.name: s for s in servers}
    problems = []
    for name, r in all_results.items():
        for err in r.errors:
            why = expected(by_name[name], err)
            problems.append(f"{name}: {err}" + (f" ({why})" if why else ""))
    if problems:
        lines += ["", "Problems seen (a byte mismatch is a bug):", ""]
        lines += [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every server started is stopped.

    The servers run in sessions of their own (a load test must not signal
    them by accident), so nothing else would stop them if we were killed.
    """

    def unwind(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--servers", help="comma-separated names (default: all available)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--idle", type=int, default=10000, help="idle connections to hold"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the RSS scenarios"
    )
    parser.add_argument(
        "--no-cap", action="store_true", help="skip the capped-server scenario"
    )
    parser.add_argument(
        "--scenarios",
        help="comma-separated timed scenarios to run (default: all): "
        + ", ".join(s.key for s in [*SCENARIOS, CAPPED]),
    )
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s, 2000 idle")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.seconds, args.idle = 1, 1.0, 2000
    names = args.servers.split(",") if args.servers else None
    servers = [s for s in SERVERS if (names is None or s.name in names)]
    unknown = set(names or ()) - {s.name for s in SERVERS}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    missing = [s.name for s in servers if not s.available()]
    if missing:
        print(f"skipping (not installed): {', '.join(missing)}", file=sys.stderr)
        servers = [s for s in servers if s.name not in missing]
    only = set(args.scenarios.split(",")) if args.scenarios else None
    keys = {s.key for s in [*SCENARIOS, CAPPED]}
    if only is not None and not only <= keys:
        parser.error(f"unknown scenarios: {', '.join(sorted(only - keys))}")
    build()
    results = {s.name: Results() for s in servers}
    cap = None if args.no_cap else cpu_cap(CAP_PERCENT)
    try:
        for run in range(args.runs):
            for server in servers:
                print(f"run {run + 1}/{args.runs}: {server.name}", file=sys.stderr)
                timed(server, args.seconds, results[server.name], cap, only)
    finally:
        if cap is not None:
            cap.remove()
    if not args.no_memory:
        for server in servers:
            if server.one_process:
                print(f"memory: {server.name}", file=sys.stderr)
                slow_reader(server, results[server.name], min(5.0, args.seconds + 2))
                if server.many:
                    idle_connections(server, results[server.name], args.idle)
    text = report(results, servers, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    by_name = {s.name: s for s in servers}
    serious = [
        n
        for n, r in results.items()
        if any(expected(by_name[n], err) is None for err in r.errors)
    ]
    return 1 if serious else 0


if __name__ == "__main__":
    sys.exit(main())
