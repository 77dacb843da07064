"""End-to-end: ``echod bench`` against real echo servers, good and broken."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.certs import self_signed
from tests.daemon import ECHOD, DaemonStarter, need_tool, stepped_clock, terminate
from tests.haproxy import HAProxy, simple_config
from tests.launch import prepared
from tests.peers import connect_when_up, free_port
from tests.scrape import curl as scrape
from tests.scrape import metric

LOCAL = "tcp:0:interface=127.0.0.1"


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ECHOD, "bench", *args], capture_output=True, text=True, timeout=timeout
    )


def figures(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_ping_pong_against_echod_verifies_every_byte(
    start_daemon: DaemonStarter,
) -> None:
    port = start_daemon("--port", LOCAL).tcp_port()
    out = bench("-c", "20", "-s", "1000", "-d", "1", "--json", f"127.0.0.1:{port}")
    assert out.returncode == 0, out.stderr
    f = figures(out)
    assert f["ok"] and f["clean_connections"] == 20
    assert f["requests"] > 100
    assert f["bytes_verified"] == f["bytes_sent"] >= f["requests"] * 1000
    assert 0 < f["p50_us"] <= f["p99_us"] <= f["p999_us"] <= f["max_us"]
    assert f["req_per_s"] > 0 and f["mb_per_s"] > 0
    assert 0 < f["connect_p50_us"] <= f["connect_max_us"]
    assert f["handshake_p50_us"] is None  # not TLS


def test_stream_against_echod_prints_the_summary(start_daemon: DaemonStarter) -> None:
    port = start_daemon("--port", LOCAL).tcp_port()
    out = bench("--stream", "-c", "4", "-s", "65536", "-d", "1", f"127.0.0.1:{port}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(
        f"echod bench: 127.0.0.1:{port}, stream, 4 connections x 65,536 B"
    )
    assert lines[1].startswith("connect    p50 ")
    assert lines[1].endswith(" µs (name lookup and TCP connect; all 4 at once)")
    assert lines[2].startswith("throughput ")
    assert "every byte back, in order; 4/4 connections ended cleanly" in lines[3]


def bench_with_peak_rss(*args: str) -> tuple[dict[str, Any], int]:
    """C{echod bench --json ARGS}'s figures, and its peak RSS in KiB (VmHWM,
    read until it exits)."""
    process = subprocess.Popen(
        [ECHOD, "bench", "--json", *args], stdout=subprocess.PIPE, text=True
    )
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    try:
        while process.poll() is None:
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            time.sleep(0.05)
        stdout, _ = process.communicate(timeout=60)
    finally:
        terminate(process)
    assert process.returncode == 0 and peak > 0
    return json.loads(stdout), peak


def test_a_long_run_holds_no_more_memory_than_a_short_one(
    start_daemon: DaemonStarter,
) -> None:
    """Latencies are counted in a histogram, not kept: every round trip kept
    as a float cost about 50 bytes, so a run of a few hundred thousand grew
    by megabytes (and an hour at this rate by gigabytes)."""
    target = f"127.0.0.1:{start_daemon('--port', LOCAL).tcp_port()}"
    short, short_peak = bench_with_peak_rss("-c", "20", "-s", "64", "-d", "1", target)
    long, long_peak = bench_with_peak_rss("-c", "20", "-s", "64", "-d", "7", target)
    more = long["requests"] - short["requests"]
    assert more > 50_000, "too few round trips to tell"
    growth = max(0, long_peak - short_peak) * 1024
    assert growth / more < 10, f"{growth:,} bytes more for {more:,} more round trips"
    assert 0 < long["p50_us"] <= long["p99_us"] <= long["max_us"]


def test_a_wall_clock_step_does_not_show_in_the_figures(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """echod bench under libfaketime, its wall clock stepped forward an hour
    during the run: latencies and rates are measured on the monotonic clock,
    so neither shows the hour (the run's own timer, Twisted's, may end it
    early). Before, max_us was the hour and req/s a thousandth of the rate."""
    port = start_daemon("--port", LOCAL).tcp_port()
    rc_file = tmp_path / "faketime.rc"
    env = {**os.environ, **stepped_clock(rc_file)}
    bench = subprocess.Popen(
        [ECHOD, "bench", "-c", "5", "-s", "64", "-d", "3", "--json",
         f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        rc_file.write_text("+3600s\n")
        out, _ = bench.communicate(timeout=60)
    finally:
        terminate(bench)
    assert bench.returncode == 0, out
    f = json.loads(out)
    assert f["ok"] and f["seconds"] < 60, f
    assert f["max_us"] < 10e6, f  # not an hour
    assert f["req_per_s"] > f["requests"] / 60, f


def test_over_unix_sockets_path_and_abstract(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """A UNIX-socket echo (a path, and a Linux abstract name) loads like TCP."""
    path = tmp_path / "e.sock"
    name = f"@echod-bench-{tmp_path.name}"
    daemon = start_daemon("--port", f"unix:{path}", "--port", f"unix:{name}")
    daemon.addresses(2)
    for target in (f"unix:{path}", f"unix:{name}"):
        out = bench("-c", "4", "-d", "1", target)
        assert out.returncode == 0, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith(f"echod bench: {target}, pingpong, 4 connections")
        connect = next(line for line in lines if line.startswith("connect "))
        assert connect.endswith(" µs (connect; all 4 at once)"), connect  # no TCP
        assert "every byte back, in order; 4/4 connections ended cleanly" in out.stdout


def test_against_socat_a_real_peer() -> None:
    socat = need_tool("socat")
    port = free_port()
    server = subprocess.Popen(
        [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", "PIPE"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        connect_when_up(port, server).close()
        out = bench("-c", "5", "-d", "1", "--json", f"127.0.0.1:{port}")
        assert out.returncode == 0, out.stdout + out.stderr
        assert figures(out)["clean_connections"] == 5
    finally:
        terminate(server)


def test_short_connections_against_echod_counted_on_both_sides(
    start_daemon: DaemonStarter,
) -> None:
    """--short: one message per connection, one connection after another;
    the daemon's own /metrics counts the same connections and bytes as the
    bench says it made and had verified."""
    daemon = start_daemon("--port", LOCAL, "--metrics", LOCAL)
    port = daemon.tcp_port()
    out = bench("--short", "-c", "5", "-s", "64", "-d", "1", "--json",
                f"127.0.0.1:{port}")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    f = figures(out)
    assert f["mode"] == "short" and f["ok"] and f["problems"] == []
    assert f["clean_connections"] == f["opened_connections"] >= f["requests"] > 50
    assert f["bytes_verified"] == f["bytes_sent"] == 64 * f["opened_connections"]
    assert 0 < f["p50_us"] <= f["p99_us"] <= f["max_us"]
    assert 0 < f["connect_p50_us"] <= f["connect_max_us"]
    _, text = scrape(f"http://{daemon.metrics_address()}/metrics")
    assert metric(text, "echod_connections_total") == f["opened_connections"]
    assert metric(text, "echod_received_bytes_total") == f["bytes_sent"]
    assert (
        metric(text, 'echod_connections_closed_total{reason="eof"}')
        == (f["opened_connections"])
    )
    shown = bench("--short", "-c", "2", "-s", "10", "-d", "0.5", f"127.0.0.1:{port}")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(  # then the seconds it took: 0.5, or a little more
        f"echod bench: 127.0.0.1:{port}, short connections, 2 at a time x 10 B, 0."
    ), lines[0]
    assert lines[1].startswith("connections ") and lines[1].endswith("/s)")
    assert lines[2].startswith("each       p50 ")
    assert lines[2].endswith(" µs (connect to the server's close)")
    assert lines[3].endswith(" µs (name lookup and TCP connect)")  # not "at once"
    assert "every byte back, in order;" in shown.stdout


def test_short_connections_over_tls_and_against_socat(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """A TLS handshake per connection (TLS closes once the echo is back, as
    it cannot half-close); socat forking a process per connection."""
    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    )
    out = bench("--short", "--tls", "--cacert", str(cert), "-c", "4", "-d", "1",
                "--json", f"localhost:{daemon.tcp_port()}")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    f = figures(out)
    assert f["ok"] and f["clean_connections"] == f["opened_connections"] > 4
    assert f["handshake_p50_us"] is not None and f["handshake_p50_us"] > 0
    untrusted = bench("--short", "--tls", "-d", "1", f"localhost:{daemon.tcp_port()}")
    assert untrusted.returncode == 7, untrusted  # not a run of failures
    assert untrusted.stderr.count("\n") == 1 and untrusted.stdout == "", untrusted
    socat = need_tool("socat")
    port = free_port()
    server = subprocess.Popen(
        [socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", "PIPE"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        connect_when_up(port, server).close()
        out = bench("--short", "-c", "3", "-d", "1", "--json", f"127.0.0.1:{port}")
        assert out.returncode == 0, out.stdout + out.stderr
        f = figures(out)
        assert f["ok"] and f["clean_connections"] == f["opened_connections"] > 3
    finally:
        terminate(server)


def test_over_tls(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    )
    port = daemon.tcp_port()
    out = bench(
        "-c", "3", "-d", "1", "--cacert", str(cert), "--json", f"tls:localhost:{port}"
    )
    assert out.returncode == 0, out.stdout + out.stderr
    f = figures(out)
    assert f["ok"]
    # the TLS handshake is timed on its own, from the TCP connect
    assert 0 < f["connect_p50_us"] <= f["connect_max_us"]
    assert 0 < f["handshake_p50_us"] <= f["handshake_max_us"]
    text = bench("-c", "2", "-d", "0.5", "--cacert", str(cert), f"tls:localhost:{port}")
    assert any(
        line.startswith("handshake  p50 ")
        and line.endswith("(TLS, from the TCP connect)")
        for line in text.stdout.splitlines()
    ), text.stdout
    # TLS cannot half-close: a stream ends by closing once every byte is back
    out = bench(
        "--stream", "-c", "2", "-d", "1", "--cacert", str(cert), "--json",
        f"tls:localhost:{port}",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert figures(out)["clean_connections"] == 2
    # an unverifiable certificate fails the run as a failure to connect: one
    # line with OpenSSL's reason and echod client's exit code for TLS (7)
    out = bench("-c", "3", "-d", "1", f"tls:localhost:{port}")
    assert out.returncode == 7, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and out.stdout == "", out.stderr
    assert "self-signed certificate (the server's certificate" in out.stderr


class Transforming(socketserver.BaseRequestHandler):
    """An echo that passes its bytes through the server's C{transform}."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        transform: Callable[[int, bytes], bytes] = self.server.transform  # type: ignore[attr-defined]
        offset = 0
        with contextlib.suppress(ConnectionError):  # the client aborts on a mismatch
            while data := sock.recv(65536):
                sock.sendall(transform(offset, data))
                offset += len(data)
            sock.shutdown(socket.SHUT_WR)


@contextmanager
def broken_echo(transform: Callable[[int, bytes], bytes]) -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Transforming)
    server.daemon_threads = True
    server.transform = transform  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def flip_byte_5000(offset: int, data: bytes) -> bytes:
    if offset <= 5000 < offset + len(data):
        at = 5000 - offset
        return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1 :]
    return data


def test_a_corrupted_byte_is_found_where_it_is() -> None:
    with broken_echo(flip_byte_5000) as port:
        out = bench("-c", "1", "-s", "1000", "-d", "1", f"127.0.0.1:{port}")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "NOT every byte back" in out.stdout
    assert "mismatch   connection 0 at byte 5,000: expected 0x" in out.stdout


def swallow_after_10000(offset: int, data: bytes) -> bytes:
    """Echo nothing past the first 10,000 bytes (EOF still answers EOF)."""
    return data[: max(0, 10_000 - offset)]


def test_a_lost_tail_is_reported_stream() -> None:
    with broken_echo(swallow_after_10000) as port:
        out = bench("-c", "2", "--stream", "-d", "1", f"127.0.0.1:{port}")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "verified   20,000 of " in out.stdout
    assert "0/2 connections ended cleanly" in out.stdout
    assert out.stdout.count("bytes never came back") == 2


def test_a_lost_tail_is_reported_ping_pong() -> None:
    with broken_echo(swallow_after_10000) as port:
        out = bench("-c", "2", "-d", "1", "--timeout", "2", f"127.0.0.1:{port}")
    assert out.returncode == 1, out.stdout + out.stderr
    assert (
        "2 connection(s) still waiting for their echo 2 s after the end" in out.stdout
    )


def test_short_connections_whose_echo_is_cut_are_counted() -> None:
    """A server that echoes only the first 10,000 bytes of each connection:
    every short connection of 20,000 bytes is counted by what went wrong,
    the first described; the run goes on to its end and exits 1."""
    with broken_echo(swallow_after_10000) as port:
        out = bench("--short", "-c", "2", "-s", "20000", "-d", "1",
                    f"127.0.0.1:{port}")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "NOT every byte back" in out.stdout and "0/" in out.stdout
    problems = [x for x in out.stdout.splitlines() if x.startswith("problem")]
    assert "closed after 10,000 of 20,000 bytes came back" in problems[0], problems
    assert problems[1].endswith(
        " connection(s) closed by the server before the echo was whole"
    ), problems
    assert len(problems) == 2


def test_connection_refused_is_one_line_and_exit_4() -> None:
    for short in ([], ["--short"]):
        out = bench(*short, "-d", "1", f"127.0.0.1:{free_port()}")
        assert out.returncode == 4, out
        assert out.stderr.count("\n") == 1 and "connection refused" in out.stderr
        assert out.stdout == ""


def test_a_server_that_closes_every_connection_ends_the_run(
    start_daemon: DaemonStarter,
) -> None:
    """A daemon that refuses us (--allow another address) closes each connection
    as it comes, often before the others are up: the run still ends, at once,
    one problem a connection, exit 1 (it hung, after a traceback, in CI)."""
    port = start_daemon("--port", LOCAL, "--allow", "127.0.0.2").tcp_port()
    for _ in range(5):  # the race is in the order of closes and connects
        out = bench("-c", "20", "-d", "1", f"127.0.0.1:{port}", timeout=30)
        assert (out.returncode, out.stderr) == (1, ""), out
        assert "0/20 connections ended cleanly" in out.stdout
        assert out.stdout.count("closed by the server") == 20


def test_bad_options_are_one_line_and_exit_2() -> None:
    for args in (
        ["-c", "0"],
        ["-d", "-1"],
        ["--size", "big"],
        ["-c", "10000000"],
        ["127.0.0.1:70000"],
        ["-d", "nan"],  # was an AssertionError's text, then a run
        ["--timeout", "inf"],
        ["-s", "999999999999"],  # was the machine's memory, then the OOM killer
        ["--stream", "-c", "1000"],  # 1000 × a 4 MiB window
        ["--short", "--stream"],
        ["--short", "-p", "40000", "-c", "1"],
    ):
        out = bench(*args)
        assert out.returncode == 2, args
        assert out.stderr.count("\n") == 1 or out.stderr.startswith("usage:"), args
        assert "Traceback" not in out.stderr
    out = bench("udp:127.0.0.1:7")  # was "bad target ... expected HOST:PORT"
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "echod bench: error: echod bench loads stream echo servers (TCP, TLS, "
        "UNIX); for UDP echo, probe it with: echod client --udp --count N HOST:PORT"
    ]


def test_through_haproxy_to_echod(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """The use it is for: proving a path through a load balancer, every byte."""
    backend = start_daemon("--port", LOCAL).tcp_port()
    frontend = free_port()
    haproxy = HAProxy(simple_config(frontend, backend, ""), tmp_path, frontend)
    try:
        for mode in ([], ["--stream"]):
            out = bench(*mode, "-c", "10", "-d", "1", "--json", f"127.0.0.1:{frontend}")
            assert out.returncode == 0, out.stdout + out.stderr
            f = figures(out)
            assert f["clean_connections"] == 10
            assert f["bytes_verified"] == f["bytes_sent"] > 0
    finally:
        haproxy.stop()


@pytest.mark.parametrize("mode", [[], ["--short"]], ids=["pingpong", "short"])
def test_ctrl_c_shows_the_figures_so_far_and_exits_130(
    start_daemon: DaemonStarter, mode: list[str]
) -> None:
    port = start_daemon("--port", LOCAL).tcp_port()
    process = subprocess.Popen(
        prepared([ECHOD, "bench", *mode, "-c", "3", "-d", "60", f"127.0.0.1:{port}"],
                 default_sigint=True),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
            pytest.fail("no exit after SIGINT")
    assert process.returncode == 130
    assert err == "echod bench: interrupted\n"
    lines = out.splitlines()
    second = "connections " if mode else "requests "
    assert lines[0].startswith("echod bench: ") and lines[1].startswith(second)
    problems = [line for line in lines if line.startswith("problem")]
    assert len(problems) == 1, out  # no blame on the server for our close
    assert problems[0].startswith("problem    interrupted after ")


def test_help_lists_the_exit_codes() -> None:
    out = bench("--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "exit status: 0 every byte of every connection came back" in text
    assert "4 refused" in text and "130 interrupted" in text
