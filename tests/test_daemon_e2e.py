"""End-to-end: a real ``twistd -n echod`` over real sockets, real peers."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from echod.proxy import HEADER_TIMEOUT
from tests.capture import capture
from tests.certs import self_signed
from tests.daemon import (
    ECHOD,
    Daemon,
    DaemonStarter,
    need_tool,
    stepped_clock,
    twistd_path,
)
from tests.netns import LinkLocalNamespace
from tests.peers import (
    closed_by_peer,
    connect,
    drain,
    echo_many,
    echoed_from,
    free_port,
    free_udp_port,
    round_trip,
    stream_until_eof,
)
from tests.scrape import check_metrics_allow, curl, metric

LOCAL = "tcp:0:interface=127.0.0.1"


def test_no_argument_serves_tcp_10000(start_daemon: DaemonStarter) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", 10000))
        except OSError:
            pytest.skip("port 10000 is taken on this machine")
    daemon = start_daemon()
    assert daemon.addresses() == ["0.0.0.0:10000"]
    with connect("127.0.0.1", 10000) as sock:
        assert round_trip(sock, b"textbook\n") == b"textbook\n"


def test_64_mib_over_50_connections_sha256(
    start_daemon_any_path: DaemonStarter,
) -> None:
    daemon = start_daemon_any_path("--port", LOCAL)
    port = daemon.tcp_port()
    conns, each = 50, (64 << 20) // 50 + 1
    started = time.monotonic()
    results = echo_many("127.0.0.1", port, conns, each, timeout=180)
    elapsed = time.monotonic() - started
    total = sum(r.received for r in results)
    for r in results:
        assert r.error is None and r.eof
        assert r.sent == each
        assert r.received == r.sent
        assert r.received_hash.digest() == r.sent_hash.digest()
    assert total >= 64 << 20
    print(f"verified {total} bytes over {conns} connections in {elapsed:.1f}s")


def test_nc_half_close_hello(start_daemon: DaemonStarter) -> None:
    nc = need_tool("nc")
    port = start_daemon("--port", LOCAL).tcp_port()
    out = subprocess.run(
        [nc, "-N", "127.0.0.1", str(port)],
        input=b"hello\n",
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0
    assert out.stdout == b"hello\n"


def test_nc_20_mib_byte_exact(
    start_daemon_any_path: DaemonStarter, tmp_path: Path
) -> None:
    nc = need_tool("nc")
    port = start_daemon_any_path("--port", LOCAL).tcp_port()
    data = random.Random(20).randbytes(20 << 20)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    with source.open("rb") as stdin:
        out = subprocess.run(
            [nc, "-N", "127.0.0.1", str(port)],
            stdin=stdin,
            capture_output=True,
            timeout=120,
        )
    assert out.returncode == 0
    assert len(out.stdout) == len(data)
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(data).digest()


def test_half_close_then_clean_close(start_daemon_any_path: DaemonStarter) -> None:
    daemon = start_daemon_any_path("--port", LOCAL)
    with connect("127.0.0.1", daemon.tcp_port()) as sock:
        sock.sendall(b"x" * 300_000)
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"x" * 300_000
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=300000 out=300000 .* reason=eof")


def test_slow_reader_keeps_rss_bounded(start_daemon_any_path: DaemonStarter) -> None:
    """A client that pushes 1 GiB and never reads cannot grow the daemon."""
    daemon = start_daemon_any_path("--port", LOCAL, "--idle-timeout", "0")
    port = daemon.tcp_port()
    # A warm-up connection so that the baseline includes the code paths used.
    with connect("127.0.0.1", port) as sock:
        assert round_trip(sock, b"w" * 100_000) == b"w" * 100_000
    time.sleep(0.2)
    before = daemon.rss_kib()
    chunk = b"\xa5" * 65536
    goal, sent = 1 << 30, 0
    with connect("127.0.0.1", port) as sock:
        sock.setblocking(False)
        stalled_since = None
        deadline = time.monotonic() + 60
        while sent < goal and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
                stalled_since = None
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > 2.0:
                    break  # the daemon stopped reading: backpressure holds
                time.sleep(0.01)
        after = daemon.rss_kib()
    growth = after - before
    print(
        f"slow reader: pushed {sent} of {goal} bytes; "
        f"daemon RSS {before} -> {after} KiB (growth {growth} KiB)"
    )
    assert sent < 64 << 20, "the daemon kept reading from a client that never reads"
    assert growth < 16 * 1024


def test_idle_timeout_closes_only_idle_connections(
    start_daemon_any_path: DaemonStarter,
) -> None:
    daemon = start_daemon_any_path("--port", LOCAL, "--idle-timeout", "1")
    port = daemon.tcp_port()
    with connect("127.0.0.1", port) as idle, connect("127.0.0.1", port) as busy:
        started = time.monotonic()
        for _ in range(10):  # 2.5 s of activity, every 0.25 s
            assert round_trip(busy, b"ping") == b"ping"
            time.sleep(0.25)
        idle.settimeout(0.1)
        assert idle.recv(1) == b""  # a clean close (FIN), as servers do: no reset
        assert round_trip(busy, b"still here") == b"still here"
    assert time.monotonic() - started < 10
    daemon.wait_for(r"closed .* reason=idle-timeout")
    # A client whose input stays open sees the end as a close, exit 0 (it was
    # "connection reset by the peer", exit 8)
    with subprocess.Popen(
        [ECHOD, "client", f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as client:
        assert client.wait(timeout=30) == 0
        assert client.stderr is not None and client.stderr.read() == b""
        assert client.stdin is not None
        client.stdin.close()


def test_a_wall_clock_step_does_not_close_quiet_connections(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """The reactor's clock is the wall clock. Stepped forward an hour (an NTP
    correction, a resumed virtual machine) under libfaketime, a connection
    quiet for half a second is still served; it is closed once it has been
    quiet for the idle timeout (2 s) of real time, and its duration= is real
    time too. Before, the step closed it at once (and its duration said an
    hour)."""
    rc_file = tmp_path / "faketime.rc"
    env = stepped_clock(rc_file)
    daemon = start_daemon("--port", LOCAL, "--idle-timeout", "2", env=env)
    with connect("127.0.0.1", daemon.tcp_port()) as sock:
        assert round_trip(sock, b"before") == b"before"
        time.sleep(0.5)
        rc_file.write_text("+3600s\n")
        time.sleep(0.5)
        assert round_trip(sock, b"after the step") == b"after the step"
        quiet_from = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the idle close
        assert time.monotonic() - quiet_from > 1.9  # the timeout, give or take a look
    [closed] = daemon.wait_for(
        r"closed .* in=20 out=20 duration=(\S+)s reason=idle-timeout"
    )
    assert float(closed[1]) < 60  # real time, not the hour the clock moved


def test_timers_keep_their_delays_when_the_wall_clock_steps_back(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """Twisted's timed calls run on the wall clock: stepped back an hour
    under libfaketime, the idle sweeper's next look (and the drain and TLS
    handshake timeouts) would wait an hour. echod's reactor moves them with
    the step: the quiet connection is still closed after the idle timeout
    (2 s), and the step is logged. Before, it stayed open."""
    rc_file = tmp_path / "faketime.rc"
    env = stepped_clock(rc_file)
    daemon = start_daemon("--port", LOCAL, "--idle-timeout", "2", env=env)
    with connect("127.0.0.1", daemon.tcp_port()) as sock:
        assert round_trip(sock, b"before") == b"before"
        quiet_from = time.monotonic()
        time.sleep(0.5)
        rc_file.write_text("-3600s\n")
        sock.settimeout(10)
        assert sock.recv(1) == b""  # the idle close, on time
        assert 1.9 < time.monotonic() - quiet_from < 5
    daemon.wait_for(r"the wall clock stepped by -3600\.\d+ s; timed calls keep")
    daemon.wait_for(r"closed .* in=6 out=6 .*reason=idle-timeout")


def test_max_connections_shared_by_all_listeners(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    sock_path = tmp_path / "echo.sock"
    daemon = start_daemon(
        "--port", LOCAL, "--port", f"unix:{sock_path}", "--max-connections", "2",
        "--metrics", LOCAL,
    )  # fmt: skip
    port = daemon.tcp_port()
    daemon.addresses(2)
    metrics = f"http://{daemon.metrics_address()}/metrics"
    with connect("127.0.0.1", port) as first, socket.socket(socket.AF_UNIX) as second:
        second.connect(str(sock_path))
        assert round_trip(first, b"one") == b"one"
        assert round_trip(second, b"two") == b"two"
        with connect("127.0.0.1", port) as third:
            assert closed_by_peer(third)
        with socket.socket(socket.AF_UNIX) as fourth:
            fourth.connect(str(sock_path))
            assert closed_by_peer(fourth)
        # the admitted clients never noticed
        assert round_trip(first, b"one again") == b"one again"
        assert round_trip(second, b"two again") == b"two again"
    daemon.wait_for(r"refused .*: max-connections", count=2)
    # which listener each admitted client came by (the refused ones are not in it)
    _, text = curl(metrics)
    for endpoint in (LOCAL, f"unix:{sock_path}"):
        name = f'echod_listener_connections_total{{endpoint="{endpoint}"}}'
        assert metric(text, name) == 1, text
    # a slot freed is a slot usable again
    time.sleep(0.2)
    with connect("127.0.0.1", port) as fifth:
        assert round_trip(fifth, b"five") == b"five"
    assert daemon.stop() in (0, -signal.SIGTERM)
    daemon.wait_for(r"stopped: .*refused=\[max-connections=2\]")


def test_max_per_ip(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--port", "tcp:0:interface=127.0.0.1", "--max-per-ip", "1")
    port = daemon.tcp_port()
    with connect("127.0.0.1", port, source="127.0.0.1") as a:
        assert round_trip(a, b"a") == b"a"
        with connect("127.0.0.1", port, source="127.0.0.1") as refused:
            assert closed_by_peer(refused)
        with connect("127.0.0.1", port, source="127.0.0.2") as other_ip:
            assert round_trip(other_ip, b"b") == b"b"
        assert round_trip(a, b"a again") == b"a again"
    daemon.wait_for(r"refused 127\.0\.0\.1:\d+: max-per-ip")


def test_sigterm_drains_a_streaming_client(
    start_daemon_any_path: DaemonStarter,
) -> None:
    daemon = start_daemon_any_path("--port", LOCAL, "--drain-timeout", "1")
    port = daemon.tcp_port()
    started = threading.Event()
    result: dict[str, object] = {}
    client = threading.Thread(target=stream_until_eof, args=(port, started, result))
    client.start()
    assert started.wait(30)
    daemon.process.send_signal(signal.SIGTERM)
    client.join(60)
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert result["eof"] is True, result
    assert result["ok"] is True, result
    received = int(result["received"])  # type: ignore[call-overload]
    line = daemon.wait_for(r"closed .* in=(\d+) out=(\d+) .*reason=drain")[0]
    print(
        f"drain: client sent {result['sent']}, daemon read {line[1]}, "
        f"client got back {received} (all verified)"
    )
    assert received == int(line[1]) == int(line[2])
    assert received > 4 << 20
    with pytest.raises(ConnectionRefusedError):
        connect("127.0.0.1", port)


def test_sigterm_lets_open_connections_finish(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--port", LOCAL, "--drain-timeout", "20")
    port = daemon.tcp_port()
    with connect("127.0.0.1", port) as sock:
        assert round_trip(sock, b"before") == b"before"
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait_for("stopping: no longer accepting; 1 open")
        with pytest.raises(ConnectionRefusedError):
            connect("127.0.0.1", port)
        assert round_trip(sock, b"after SIGTERM") == b"after SIGTERM"
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b""
    began = time.monotonic()
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert time.monotonic() - began < 10, "the daemon waited out the drain time"


def test_udp_echo_and_guards(start_daemon: DaemonStarter) -> None:
    udp_port = free_udp_port()
    daemon = start_daemon(
        "--port",
        LOCAL,
        "--udp",
        f"127.0.0.1:{udp_port}",
        "--udp-rate",
        "20",
        "--udp-max-size",
        "512",
    )
    daemon.wait_for(rf"listening on udp:{udp_port}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(b"datagram", ("127.0.0.1", udp_port))
        assert sock.recvfrom(2048) == (b"datagram", ("127.0.0.1", udp_port))
        sock.sendto(b"z" * 513, ("127.0.0.1", udp_port))
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recvfrom(2048)
        # a burst far over the rate: at most the bucket's worth comes back
        for i in range(200):
            sock.sendto(b"%d" % i, ("127.0.0.1", udp_port))
        answered = 0
        try:
            while True:
                sock.recvfrom(2048)
                answered += 1
        except TimeoutError:
            pass
        assert 10 <= answered <= 30, answered
    assert daemon.stop() in (0, -signal.SIGTERM)
    daemon.wait_for(r"udp_dropped=\[rate=\d+, size=1\]")


def test_udp_rate_survives_a_wall_clock_step_back(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """Under libfaketime, the daemon's wall clock stepped back an hour: a
    source that had used its tokens gets them back at the rate, as before the
    step. Before, it owed an hour of tokens and every datagram was dropped."""
    rc_file = tmp_path / "faketime.rc"
    env = stepped_clock(rc_file)
    udp_port = free_udp_port()
    daemon = start_daemon(
        "--port", LOCAL, "--udp", f"127.0.0.1:{udp_port}", "--udp-rate", "2", env=env
    )  # fmt: skip
    daemon.wait_for(rf"listening on udp:{udp_port}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        for i in range(3):  # two tokens: the third is dropped
            sock.sendto(b"%d" % i, ("127.0.0.1", udp_port))
        assert [sock.recvfrom(64)[0] for _ in range(2)] == [b"0", b"1"]
        rc_file.write_text("-3600s\n")
        # The real time from the last datagram to the step is lost (a step
        # back can only be taken as no time at all); after it, the rate again.
        sock.settimeout(0.3)
        echoed = None
        for _ in range(10):  # 3 s: six tokens' worth
            sock.sendto(b"after the step", ("127.0.0.1", udp_port))
            with contextlib.suppress(TimeoutError):
                echoed = sock.recvfrom(64)[0]
                break
        assert echoed == b"after the step"


def test_udp_never_answers_small_service_ports(start_daemon: DaemonStarter) -> None:
    udp_port = free_udp_port()
    daemon = start_daemon("--port", LOCAL, "--udp", f"127.0.0.1:{udp_port}")
    daemon.wait_for(rf"listening on udp:{udp_port}")
    for source_port in (7, 19):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", source_port))
            except PermissionError:
                pytest.skip("binding a port below 1024 needs root")
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    continue
                raise
            sock.settimeout(0.5)
            sock.sendto(b"loop?", ("127.0.0.1", udp_port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(2048)
    daemon.wait_for(r"udp dropped datagram from 127\.0\.0\.1:(7|19): source-port")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "bogus:1"], "bad endpoint 'bogus:1'"),
        (["--port", "tcp:notaport"], "bad endpoint 'tcp:notaport': 'notaport' is not"),
        (["--port", "tcp"], "bad endpoint 'tcp': missing 'port'"),
        (["--port", "tcp:0:frob=1"], "bad endpoint 'tcp:0:frob=1': unknown parameter"),
        (["--port", "unix:"], "bad endpoint 'unix:': no socket path"),
        (["--port", "tcp6:0:interface=::1"], "a ':' inside a value (an IPv6"),
        (["--port", "ssl:0:backlog=x"], "bad endpoint 'ssl:0:backlog=x': 'x' is not"),
        # was accepted: Python makes a negative backlog 0, a queue of about one
        (["--port", "tcp:0:backlog=-3"], "'tcp:0:backlog=-3': '-3' is not a number of"),
        (["--port", "haproxy:tcp:0:backlog=0"], "'0' is not a number of at least 1"),
        (["--port", "haproxy:haproxy:tcp:0"], "haproxy: twice (a connection carries"),
        (
            ["--port", "tls:.:backlog=-1"],
            "bad endpoint 'tls:.:backlog=-1': '-1' is not",
        ),
        (
            ["--port", "ssl:0:privateKey=/nonexistent/key.pem"],
            "cannot read certificate",
        ),
        (["--port", "systemd:domain=INET:index=0"], "no socket inherited from systemd"),
        (["--idle-timeout", "-1"], "--idle-timeout must be at least 0"),
        (["--drain-timeout", "inf"], "--drain-timeout must be a finite number"),
        (["--max-connections", "lots"], "--max-connections must be a whole number"),
        (["--log-format", "xml"], "--log-format must be one of text, json"),
        (
            ["--log-connections", "errors"],
            "--log-connections must be one of all, abnormal, none, not 'errors'",
        ),
        (["--tls-cert", "c.pem", "--tls-key", "k.pem"], "no --port is one: the echo"),
        (["--udp", "seven"], "--udp takes PORT or INTERFACE:PORT"),
        (["--udp", "[::1"], "--udp: bad IPv6 address in '[::1'"),
        (["--no-such-option"], "no-such-option"),
    ],
)
def test_bad_input_is_one_clear_line(
    start_daemon: DaemonStarter, args: list[str], message: str
) -> None:
    daemon = start_daemon(*args)
    assert daemon.process.wait(30) != 0
    daemon.stop()
    out = daemon.output
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert message in lines[0]


def test_port_in_use_is_one_clear_line(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = start_daemon("--port", f"tcp:{port}:interface=127.0.0.1")
        lines = daemon.refusal_lines()
    assert "Traceback" not in daemon.output
    assert lines == [
        f"twistd echod: error: cannot listen on 'tcp:{port}:interface=127.0.0.1': "
        f"Couldn't listen on 127.0.0.1:{port}: [Errno 98] Address already in use."
    ]
    assert not (tmp_path / "twistd.pid").exists()


def test_a_port_held_by_an_own_listener_says_so(
    start_daemon: DaemonStarter,
) -> None:
    """nginx's 'listen P; listen [::]:P;' written as two --port: the second
    cannot bind, because Twisted's tcp6 listener on :: takes IPv4 too."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with socket.socket(socket.AF_INET6) as probe:  # a port free on both families
        probe.bind(("::", 0))
        port = probe.getsockname()[1]
    in_use = f"Couldn't listen on any:{port}: [Errno 98] Address already in use."
    cases = [
        (
            ["--port", rf"tcp6:{port}:interface=\:\:", "--port", f"tcp:{port}"],
            f"cannot listen on 'tcp:{port}': {in_use} (a tcp6 listener on :: "
            "takes IPv4 connections too: one listener serves both, leave out the "
            "IPv4 one)",
        ),
        (
            ["--port", f"tcp:{port}", "--metrics", f"tcp:{port}"],
            f"cannot serve metrics on 'tcp:{port}': {in_use} (an earlier --port of "
            "this echod listens there)",
        ),
    ]
    for args, message in cases:
        daemon = start_daemon(*args)
        assert daemon.refusal_lines() == [f"twistd echod: error: {message}"]


def test_unix_socket_in_a_missing_directory_is_one_clear_line(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    path = tmp_path / "no-such-dir" / "echod.sock"
    daemon = start_daemon("--port", f"unix:{path}")
    assert daemon.refusal_lines() == [
        f"twistd echod: error: cannot listen on 'unix:{path}': "
        f"{path}.lock: No such file or directory"
    ]


def test_a_unix_socket_another_echod_serves_is_one_clear_line(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """Was Twisted's bare "Cannot acquire lock": now which process holds it.
    Once that daemon is gone (killed, its files left behind), the path is free."""
    path = tmp_path / "echod.sock"
    first = start_daemon("--port", f"unix:{path}")
    first.addresses()
    second = start_daemon("--port", f"unix:{path}")
    assert second.refusal_lines() == [
        f"twistd echod: error: cannot listen on 'unix:{path}': Couldn't listen on "
        f"{path}: {path}.lock says process {first.pid} listens there, and it is "
        "running (another echod? stop it, or listen on another path)."
    ]
    first.process.kill()
    first.process.wait(10)
    assert path.exists() and Path(f"{path}.lock").is_symlink()
    third = start_daemon("--port", f"unix:{path}")
    assert third.addresses() == [f"unix:{path}"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        sock.sendall(b"again")
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"again"


def test_log_line_per_connection_and_json_format(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--port", LOCAL, "--log-format", "json")
    port = daemon.tcp_port()
    with connect("127.0.0.1", port) as sock:
        sock.sendall(b"12345")
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"12345"
    line = daemon.wait_for(r'"event":"closed"')[0].string
    record = json.loads(line)
    assert record["peer"].startswith("127.0.0.1:")
    assert record["bytes_in"] == record["bytes_out"] == 5
    assert record["reason"] == "eof"
    assert record["level"] == "info"
    assert isinstance(record["duration"], float)
    assert daemon.stop() in (0, -signal.SIGTERM)
    for text in daemon.output.splitlines():
        json.loads(text)  # every line is one JSON object


@pytest.mark.parametrize("which", ["abnormal", "none"])
def test_log_connections_abnormal_or_none(
    start_daemon: DaemonStarter, which: str
) -> None:
    """--log-connections abnormal (HAProxy's dontlog-normal) logs a reset and
    an idle close, not a clean echo; none logs neither. The stop summary
    counts all three, and a refusal is logged whatever the setting."""
    daemon = start_daemon(
        "--port", LOCAL, "--log-connections", which, "--idle-timeout", "1",
        "--deny", "127.0.0.2",
    )  # fmt: skip
    port = daemon.tcp_port()
    with connect("127.0.0.1", port) as sock:
        sock.sendall(b"clean")
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"clean"
    with connect("127.0.0.1", port) as sock:
        sock.sendall(b"reset")
        assert sock.recv(5) == b"reset"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with connect("127.0.0.1", port) as sock:
        assert drain(sock) == b""  # closed by the idle timeout
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        assert drain(sock) == b""
    daemon.wait_for(r"refused 127\.0\.0\.2:\d+: denied")
    daemon.stop()
    daemon.wait_for(
        r"stopped: connections=3 .* closed=\[eof=1, idle-timeout=1, reset=1\]"
    )
    closed = [line for line in daemon.output.splitlines() if " closed 127." in line]
    if which == "none":
        assert closed == []
    else:
        assert [line.rsplit("reason=", 1)[1] for line in closed] == [
            "reset",
            "idle-timeout",
        ]


def test_tcp6_and_unix_listeners(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sock_path = tmp_path / "e.sock"
    daemon = start_daemon(
        "--port", r"tcp6:0:interface=\:\:1", "--port", f"unix:{sock_path}"
    )
    v6, unix = daemon.addresses(2)
    port = int(v6.rsplit(":", 1)[1])
    with connect("::1", port) as sock:
        assert round_trip(sock, b"v6") == b"v6"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(sock_path))
        sock.sendall(b"unix")
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"unix"
    assert unix == f"unix:{sock_path}"
    daemon.wait_for(r"closed unix: in=4 out=4 ")  # an unnamed client socket


def test_systemd_socket_activation(start_daemon: DaemonStarter) -> None:
    activate = need_tool("systemd-socket-activate")
    port = free_port()
    daemon = start_daemon(
        "--port",
        "systemd:domain=INET:index=0",
        prefix=[activate, "-l", f"127.0.0.1:{port}", "--fdname=echod"],
    )
    daemon.wait_for(rf"Listening on 127\.0\.0\.1:{port}")
    # systemd-socket-activate starts twistd on the first connection, as
    # systemd does for a socket unit; the connection waits in the backlog.
    with connect("127.0.0.1", port) as sock:
        assert round_trip(sock, b"inherited", timeout=30) == b"inherited"
    daemon.wait_for(r"listening on systemd:domain=INET:index=0 at 127\.0\.0\.1")


def test_haproxy_proxy_v1_header_gives_real_peer(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--port", "haproxy:tcp:0:interface=127.0.0.1")
    port = daemon.tcp_port()
    with connect("127.0.0.1", port) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 10000\r\nvia proxy")
        sock.settimeout(5)
        got = b""
        while len(got) < len(b"via proxy"):
            got += sock.recv(100)
        assert got == b"via proxy"
    daemon.wait_for(r"closed 203\.0\.113\.9:40000 in=9 out=9")


def test_haproxy_malformed_header_is_a_counted_refusal(
    start_daemon: DaemonStarter,
) -> None:
    """A port that is not a number: one warning, counted once; no traceback."""
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    port = daemon.tcp_port()
    address = daemon.metrics_address()
    with connect("127.0.0.1", port) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 abc 10000\r\nlost")
        assert closed_by_peer(sock)
    daemon.wait_for(r"refused 127\.0\.0\.1:\d+: malformed PROXY header")
    with connect("127.0.0.1", port) as sock:  # the next client is served
        sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 10000\r\nnext")
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"next"
    time.sleep(HEADER_TIMEOUT + 1)  # was: refused a second time, as a timeout
    _, text = curl(f"http://{address}/metrics")
    refused = 'echod_connections_refused_total{reason="bad-proxy-header"}'
    assert metric(text, refused) == 1
    assert "PROXY header timeout" not in daemon.output
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in daemon.output, daemon.output
    assert "refused=[bad-proxy-header=1]" in daemon.output, daemon.output


def test_ssl_endpoint(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    import ssl

    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    )
    port = daemon.tcp_port()
    context = ssl.create_default_context(cafile=str(cert))
    with (
        connect("127.0.0.1", port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert round_trip(sock, b"secret" * 1000) == b"secret" * 1000


def test_thousands_of_clients_at_once(start_daemon: DaemonStarter) -> None:
    import resource

    clients = 3000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * clients + 100:
        pytest.skip(f"the file limit ({hard}) is too low for {clients} clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * clients + 100), hard))
    try:
        daemon = start_daemon("--port", LOCAL)  # inherits the raised limit
        port = daemon.tcp_port()
        socks = []
        try:
            for _ in range(clients):  # all connected at once, in a burst
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                socks.append(sock)
            time.sleep(0.5)
            for i, sock in enumerate(socks):
                sock.setblocking(True)
                sock.settimeout(20)
                sock.sendall(b"%015d\n" % i)
            for i, sock in enumerate(socks):
                got = b""
                while len(got) < 16:
                    data = sock.recv(16 - len(got))
                    assert data, f"client {i} closed early"
                    got += data
                assert got == b"%015d\n" % i
        finally:
            for sock in socks:
                sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    daemon.wait_for(r"closed .* reason=eof", count=clients, timeout=30)


def test_tls_directory_endpoint(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """Twisted's ``tls:`` endpoint: a directory of PEM files, one per host name."""
    import ssl

    key, cert = self_signed(tmp_path)
    pems = tmp_path / "pems"
    pems.mkdir()
    (pems / "localhost.pem").write_bytes(key.read_bytes() + cert.read_bytes())
    port = free_port()
    daemon = start_daemon("--port", f"tls:{pems}:port={port}:interface=127.0.0.1")
    daemon.wait_for(r"listening on tls:")
    context = ssl.create_default_context(cafile=str(cert))
    with (
        connect("127.0.0.1", port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert round_trip(sock, b"sni" * 5000) == b"sni" * 5000


def test_reactor_and_write_path_are_logged(
    start_daemon_any_path: DaemonStarter,
) -> None:
    daemon = start_daemon_any_path("--port", LOCAL)
    line = daemon.wait_for(
        r"reactor: (\S+); write-through: (on|off); busy-poll: (off|200 us)"
    )[0]
    if "--reactor=epoll" in start_daemon_any_path.twistd_args:
        assert line[1] == "twisted.internet.epollreactor.EPollReactor"
    else:
        assert line[1] == "echod.reactor.LeanEPollReactor"
    expected = "off" if "--no-write-through" in start_daemon_any_path.extra else "on"
    assert line[2] == expected
    busy = "200 us" if "--busy-poll" in start_daemon_any_path.extra else "off"
    assert line[3] == busy


def test_busy_poll_with_another_reactor_is_refused_in_one_line(
    start_daemon: DaemonStarter,
) -> None:
    daemon = Daemon(
        ["--busy-poll", "50", "--port", LOCAL],
        start_daemon.cwd,
        twistd_args=["--reactor=epoll"],
    )
    start_daemon.started.append(daemon)
    assert daemon.process.wait(30) == 2
    daemon.stop()
    assert daemon.lines == [
        "twistd echod: error: --busy-poll needs echod's own reactor (leave out "
        "--reactor); this one is twisted.internet.epollreactor.EPollReactor"
    ]


def test_busy_poll_spins_only_while_traffic_flows(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--busy-poll", "1000", "--port", LOCAL)
    port = daemon.tcp_port()
    with connect("127.0.0.1", port) as sock:
        started, cpu = time.monotonic(), daemon.cpu_seconds()
        rounds = 0
        while time.monotonic() - started < 1.0:
            assert round_trip(sock, b"ping") == b"ping"
            rounds += 1
        busy = daemon.cpu_seconds() - cpu
        # While a client ping-pongs, the daemon polls instead of sleeping.
        assert busy > 0.3, f"{busy:.2f} s of CPU in 1 s of ping-pong"
        time.sleep(0.2)
        cpu = daemon.cpu_seconds()
        time.sleep(1.0)
        idle = daemon.cpu_seconds() - cpu
    # 1 ms after the last event it sleeps again: an idle daemon does not spin.
    assert idle < 0.1, f"{idle:.2f} s of CPU in 1 s idle"
    assert rounds > 0


def test_metrics_connections_are_bounded_and_cannot_starve_echo(
    start_daemon: DaemonStarter,
) -> None:
    """Idle clients of the metrics port, however many, hold at most 16 slots.

    The rest are closed at once and counted, so they take no file descriptors
    from echo clients (before, 250 idle ones under a file limit of 200 made
    the echo port drop clients without a byte).
    """
    daemon = start_daemon(
        "--port", LOCAL, "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    port = daemon.tcp_port()
    address = daemon.metrics_address()
    host, metrics_port = address.rsplit(":", 1)
    held = [connect(host, int(metrics_port)) for _ in range(40)]
    try:
        shut = sum(closed_by_peer(sock, timeout=0.5) for sock in held[16:])
        assert shut == 24
        assert not any(closed_by_peer(sock, timeout=0.2) for sock in held[:16])
        with connect("127.0.0.1", port) as sock:
            assert round_trip(sock, b"still served") == b"still served"
        daemon.wait_for(r"refused metrics connection 127\.0\.0\.1:\d+: 16 already")
    finally:
        for sock in held:
            sock.close()
    text = ""
    for _ in range(50):  # the server sees the 16 close soon after
        code, text = curl(f"http://{address}/metrics")
        if code == 200:
            break
        time.sleep(0.1)
    assert metric(text, "echod_metrics_connections_refused_total") >= 24
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in daemon.output, daemon.output


def test_metrics_allow_serves_only_the_networks_listed(
    start_daemon: DaemonStarter,
) -> None:
    """--metrics-allow: curl from 127.0.0.2 (an allowed address) scrapes;
    from 127.0.0.1 the connection is closed at once, logged and counted."""
    daemon = start_daemon(
        "--port", LOCAL, "--metrics", "tcp:0:interface=127.0.0.1",
        "--metrics-allow", "127.0.0.2,10.0.0.0/8",
    )  # fmt: skip
    url = f"http://{daemon.metrics_address()}/metrics"
    check_metrics_allow(daemon, url, allowed="127.0.0.2", refused="127.0.0.1")
    out = subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "echod", "--metrics-allow", "10.0.0.0/8"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "--metrics-allow applies to --metrics" in (
        out.stdout + out.stderr
    )
    bad = subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "echod", "--metrics", "tcp:0",
         "--metrics-allow", "10.0.0.300"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "--metrics-allow:" in bad.stdout + bad.stderr


def test_metrics_and_health_scraped_with_curl_while_traffic_flows(
    start_daemon: DaemonStarter,
) -> None:
    daemon = start_daemon(
        "--port", LOCAL, "--metrics", "tcp:0:interface=127.0.0.1",
        "--max-connections", "2", "--drain-timeout", "30",
    )  # fmt: skip
    port = daemon.tcp_port()
    address = daemon.metrics_address()
    base = f"http://{address}"
    assert curl(base + "/healthz") == (200, "ok\n")
    stop = threading.Event()
    moved = [0]

    def traffic() -> None:
        with connect("127.0.0.1", port) as sock:
            while not stop.is_set():
                moved[0] += len(round_trip(sock, b"m" * 4096))

    flowing = threading.Thread(target=traffic)
    flowing.start()
    try:
        time.sleep(0.3)
        _, first = curl(base + "/metrics")
        time.sleep(0.3)
        _, second = curl(base + "/metrics")
        assert (
            metric(second, "echod_received_bytes_total")
            > metric(first, "echod_received_bytes_total")
            > 0
        )
        assert metric(second, "echod_connections_open") == 1
        assert metric(second, "echod_listener_up") == 1
        # the daemon process's own, as any Prometheus client library exports
        assert metric(second, "process_resident_memory_bytes") > 10 << 20
        assert metric(second, "process_open_fds") >= 4  # 2 listeners, 2 clients
        assert 0 < time.time() - metric(second, "process_start_time_seconds") < 600
        assert metric(second, "echod_build_info") == 1
        with (
            connect("127.0.0.1", port) as second_client,
            connect("127.0.0.1", port) as refused,
        ):
            assert round_trip(second_client, b"2") == b"2"
            assert closed_by_peer(refused)
        _, third = curl(base + "/metrics")
        assert 'echod_connections_refused_total{reason="max-connections"} 1.0' in third
    finally:
        stop.set()
        flowing.join(10)
    with connect("127.0.0.1", port) as lingering:
        assert round_trip(lingering, b"l") == b"l"
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait_for("stopping: no longer accepting")
        assert curl(base + "/healthz") == (503, "stopping\n")
        _, draining = curl(base + "/metrics")
        assert metric(draining, "echod_listener_up") == 0
    assert daemon.stop() in (0, -signal.SIGTERM)


def test_metrics_request_bodies_are_not_kept(start_daemon: DaemonStarter) -> None:
    """No metrics page reads a body; Twisted kept any, 4 GB went to a temporary
    file. Past 64 KiB the client is cut off and counted; a small one is fine."""
    daemon = start_daemon("--port", LOCAL, "--metrics", "tcp:0:interface=127.0.0.1")
    address = daemon.metrics_address()
    host, port = address.rsplit(":", 1)
    chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
    with connect(host, int(port)) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        with pytest.raises(OSError):  # reset once past the limit
            for _ in range(16 * 1024):  # at most 1 GiB
                sock.sendall(chunk)
    with connect(host, int(port)) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"Content-Length: 10000000000\r\n\r\n")
        assert closed_by_peer(sock)  # refused on the header alone
    small = subprocess.run(
        [need_tool("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code}",
         "-d", "x=1", f"http://{address}/metrics"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert small.stdout == "405"  # a page that takes GET only, as before
    daemon.wait_for(r"refused metrics connection 127\.0\.0\.1:\d+: request body over")
    _, text = curl(f"http://{address}/metrics")
    assert metric(text, "echod_metrics_connections_refused_total") == 2


def test_metrics_over_tls_scraped_by_curl(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """curl offers ALPN; the bounded metrics site names its protocols to TLS.

    (Twisted's TLS fails a handshake that offers ALPN when the wrapped factory
    names none: curl saw "tlsv1 alert internal error".)
    """
    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", LOCAL,
        "--metrics", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )  # fmt: skip
    address = daemon.metrics_address()
    port = address.rsplit(":", 1)[1]
    out = subprocess.run(
        [need_tool("curl"), "-sS", "--cacert", str(cert),
         "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/healthz"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (out.returncode, out.stdout) == (0, "ok\n"), out.stderr
    assert daemon.stop() in (0, -signal.SIGTERM)


def test_plain_text_to_a_tls_port_is_a_counted_handshake_failure(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    import ssl

    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    port = daemon.tcp_port()
    address = daemon.metrics_address()
    with connect("127.0.0.1", port) as plain:
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert closed_by_peer(plain)
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=0 out=0 .*reason=tls-error")
    context = ssl.create_default_context(cafile=str(cert))
    with (
        connect("127.0.0.1", port) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):  # other clients are unaffected
        assert round_trip(sock, b"fine") == b"fine"
    _, text = curl(f"http://{address}/metrics")
    assert metric(text, "echod_tls_handshake_failures_total") == 1


class Daemonized:
    """``twistd echod`` started as a daemon (no -n), as the README shows; every
    one is killed after the test by the pid in its pid file."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.pids: list[int] = []

    def __call__(self, *args: str, twistd_args: tuple[str, ...] = ()) -> int:
        pidfile = self.cwd / f"echod{len(self.pids)}.pid"
        out = subprocess.run(
            [twistd_path(), f"--pidfile={pidfile}", *twistd_args, "echod", *args],
            cwd=self.cwd, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        deadline = time.monotonic() + 15
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline, "no pid file"
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        self.pids.append(pid)
        assert out.stdout == out.stderr == ""  # everything goes to the log
        return pid

    def cleanup(self) -> None:
        for pid in self.pids:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """Whether C{pid} is alive (not gone, not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for_line(path: Path, pattern: str, timeout: float = 15.0) -> re.Match[str]:
    """Wait until a line of the file C{path} matches C{pattern}."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            if match := regex.search(line):
                return match
        assert time.monotonic() < deadline, f"no {pattern!r} in {path}:\n{text}"
        time.sleep(0.05)


@pytest.fixture
def daemonized(tmp_path: Path) -> Iterator[Daemonized]:
    starter = Daemonized(tmp_path)
    yield starter
    starter.cleanup()


def test_daemonized_json_log_goes_to_the_log_file_and_rotates(
    daemonized: Daemonized, tmp_path: Path
) -> None:
    # Was: JSON lines went to stdout, which a daemon has closed: no log at all.
    log = tmp_path / "echod.json"
    pid = daemonized(
        "--port", LOCAL, "--log-format", "json", twistd_args=(f"--logfile={log}",)
    )  # fmt: skip
    port = int(wait_for_line(log, r'"address":"127\.0\.0\.1:(\d+)"')[1])
    with connect("127.0.0.1", port) as sock:
        assert round_trip(sock, b"daemon") == b"daemon"
    wait_for_line(log, r'"event":"closed"')
    os.kill(pid, signal.SIGUSR1)  # rotate, as twistd rotates its own log
    rotated = tmp_path / "echod.json.1"
    deadline = time.monotonic() + 15
    while not rotated.exists():
        assert time.monotonic() < deadline, "SIGUSR1 did not rotate the log"
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    wait_for_line(log, r'"event":"stopped"')
    deadline = time.monotonic() + 15
    while is_running(pid) or (tmp_path / "echod0.pid").exists():
        assert time.monotonic() < deadline, "did not stop and remove its pid file"
        time.sleep(0.05)
    for path in (rotated, log):
        for text in path.read_text().splitlines():
            json.loads(text)  # every line is one JSON object
    assert '"event":"closed"' in rotated.read_text()


def test_daemonized_text_log_defaults_to_twistd_log(
    daemonized: Daemonized, tmp_path: Path
) -> None:
    pid = daemonized("--port", LOCAL)
    port = int(
        wait_for_line(tmp_path / "twistd.log", r"listening on \S+ at \S+:(\d+)")[1]
    )
    with connect("127.0.0.1", port) as sock:
        assert round_trip(sock, b"daemon") == b"daemon"
    os.kill(pid, signal.SIGTERM)
    wait_for_line(tmp_path / "twistd.log", r"stopped: connections=1 ")


@pytest.mark.parametrize(
    ("twistd_args", "message"),
    [
        # each was a traceback from inside twistd
        (["-n", "--logfile=/nonexistent/echod.log"], "twistd --logfile '/nonexis"),
        (["-n", "--pidfile=/nonexistent/echod.pid"], "twistd --pidfile '/nonexis"),
        (["--rundir=/nonexistent", "--logfile=x.log"], "twistd --rundir '/nonexis"),
        (["-n", "--chroot=/nonexistent"], "twistd --chroot '/nonexistent': no such"),
        (["-n", "--syslog", "--pidfile="], "--log-format json writes to --logfile"),
    ],
)
def test_bad_twistd_files_are_one_clear_line(
    tmp_path: Path, twistd_args: list[str], message: str
) -> None:
    out = subprocess.run(
        [twistd_path(), *twistd_args, "echod", "--port", LOCAL, "--log-format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.splitlines() == [out.stderr.strip()]
    assert message in out.stderr
    assert list(tmp_path.iterdir()) == []  # no pid file, no log file


def test_haproxy_clients_waiting_for_a_header_count_towards_max_connections(
    start_daemon: DaemonStarter,
) -> None:
    """Connections that never send their PROXY header were held outside every
    limit (each for the 10 s header timeout): any number of them."""
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1", "--max-connections", "3"
    )  # fmt: skip
    port = daemon.tcp_port()
    silent = [connect("127.0.0.1", port) for _ in range(3)]
    try:
        time.sleep(0.5)  # accepted, each waiting for its header
        with connect("127.0.0.1", port) as fourth:
            assert closed_by_peer(fourth)
        daemon.wait_for(r"refused 127\.0\.0\.1:\d+: max-connections")
        silent.pop().close()
        deadline = time.monotonic() + 15
        while True:  # a slot again, once the daemon has seen that close
            with connect("127.0.0.1", port) as sock:
                try:
                    sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 10000\r\nin")
                    sock.shutdown(socket.SHUT_WR)
                    if drain(sock) == b"in":
                        break
                except OSError:  # refused with a reset: too early
                    pass
            assert time.monotonic() < deadline, "no slot after a silent client left"
            time.sleep(0.2)
    finally:
        for sock in silent:
            sock.close()


UDP_PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"zoned udp", (sys.argv[1], int(sys.argv[2])))
sys.stdout.write(s.recvfrom(100)[0].decode())
"""


def test_listeners_on_a_link_local_address(
    start_daemon: DaemonStarter, link_local: LinkLocalNamespace
) -> None:
    """--udp [fe80::1%v1]:PORT failed: 'Couldn't listen on fe80::1%v1:PORT:
    [Errno 22] Invalid argument' (Twisted's listenUDP drops the zone)."""
    zoned = link_local.zoned
    daemon = start_daemon(
        "--port", "tcp6:7008:interface=" + zoned.replace(":", r"\:"),
        "--udp", f"[{zoned}]:7009",
        prefix=link_local.prefix,
    )  # fmt: skip
    daemon.addresses(2)
    run = link_local.prefix
    out = subprocess.run([*run, sys.executable, "-c", UDP_PROBE, zoned, "7009"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, "zoned udp"), out.stderr
    echod = str(Path(sys.executable).with_name("echod"))
    out = subprocess.run([*run, echod, "client", f"[{zoned}]:7008"],
                         input="zoned tcp\n", capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, "zoned tcp\n"), out.stderr


def test_abstract_unix_socket(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """unix:@NAME, as ss, socat and systemd write an abstract name: Twisted
    made a file called '@NAME' in the current directory instead."""
    name = f"echod-test-{os.getpid()}-{random.randrange(1 << 30)}"
    daemon = start_daemon("--port", f"unix:@{name}")
    assert daemon.addresses() == [f"unix:@{name}"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(f"\0{name}")
        sock.sendall(b"abstract")
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b"abstract"
    nc = subprocess.run([need_tool("nc"), "-NU", f"@{name}"], input=b"nc\n",
                        capture_output=True, timeout=30)  # fmt: skip
    assert (nc.returncode, nc.stdout) == (0, b"nc\n"), nc.stderr
    echod = str(Path(sys.executable).with_name("echod"))
    out = subprocess.run([echod, "client", f"unix:@{name}"], input=b"client\n",
                         capture_output=True, timeout=30)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, b"client\n"), out.stderr
    assert not any(p.name.startswith("@") for p in tmp_path.iterdir())
    # Twisted names the port by its path, NUL first, when it closes: the text
    # log shows the NUL as \x00 (a NUL made the log a binary file to grep)
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert "\x00" not in daemon.output
    assert f"\\x00{name}" in daemon.output, daemon.output


def test_allow_and_deny(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """--allow and --deny, as ncat's: refused connections are closed, logged and
    counted; UDP from a denied address is dropped; --deny wins; IPv4 clients of
    a dual-stack tcp6 listener are matched as IPv4; UNIX sockets have no
    address and are served."""
    udp_port = free_udp_port()
    sock_path = tmp_path / "echo.sock"
    daemon = start_daemon(
        "--port", LOCAL, "--port", r"tcp6:0:interface=\:\:",
        "--port", f"unix:{sock_path}", "--udp", f"127.0.0.1:{udp_port}",
        "--allow", "127.0.0.0/8,::1", "--deny", "127.0.0.1",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    bound = daemon.addresses(3)
    port, port6 = (
        int(next(a for a in bound if a.startswith(h)).rsplit(":", 1)[1])
        for h in ("127.0.0.1:", "[::]:")
    )
    daemon.wait_for(r"access: allow=127\.0\.0\.0/8,::1/128 deny=127\.0\.0\.1/32")
    nc = need_tool("nc")
    for target in (port, port6):  # the IPv4 client of tcp6 is ::ffff:127.0.0.x
        served = subprocess.run(
            [nc, "-N", "-s", "127.0.0.2", "127.0.0.1", str(target)],
            input=b"allowed\n", capture_output=True, timeout=30,
        )  # fmt: skip
        assert served.stdout == b"allowed\n", served
        refused = subprocess.run(
            [nc, "-N", "127.0.0.1", str(target)], input=b"denied\n",
            capture_output=True, timeout=30,
        )  # fmt: skip
        assert refused.stdout == b"", refused  # closed without a byte echoed
    with connect("::1", port6) as six:
        assert round_trip(six, b"six") == b"six"
    with socket.socket(socket.AF_UNIX) as unix:
        unix.connect(str(sock_path))
        assert round_trip(unix, b"unix") == b"unix"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(5)
        udp.bind(("127.0.0.2", 0))
        udp.sendto(b"allowed", ("127.0.0.1", udp_port))
        assert udp.recvfrom(2048)[0] == b"allowed"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(1)
        udp.bind(("127.0.0.1", 0))
        udp.sendto(b"denied", ("127.0.0.1", udp_port))
        with pytest.raises(TimeoutError):
            udp.recvfrom(2048)
    daemon.wait_for(r"refused 127\.0\.0\.1:\d+: denied", count=2)
    daemon.wait_for(r"udp dropped datagram from 127\.0\.0\.1:\d+: denied")
    _, text = curl(f"http://{daemon.metrics_address()}/metrics")
    assert metric(text, 'echod_connections_refused_total{reason="denied"}') == 2
    assert metric(text, 'echod_udp_dropped_total{reason="denied"}') == 1
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert "refused=[denied=2]" in daemon.output, daemon.output


def test_allowfile_and_denyfile(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """As ncat's: the addresses and networks listed in a file, read at start."""
    (tmp_path / "allow").write_text("# loopback\n127.0.0.0/8  # all of it\n")
    (tmp_path / "deny").write_text("127.0.0.1\n")
    daemon = start_daemon(
        "--port", LOCAL, "--allowfile", str(tmp_path / "allow"),
        "--denyfile", str(tmp_path / "deny"),
    )  # fmt: skip
    port = daemon.tcp_port()
    assert echoed_from("127.0.0.2", "127.0.0.1", port)
    assert not echoed_from("127.0.0.1", "127.0.0.1", port)
    daemon.wait_for(r"access: allow=127\.0\.0\.0/8 deny=127\.0\.0\.1/32")
    daemon.wait_for(r"refused 127\.0\.0\.1:\d+: denied")
    for option, content, says in (
        ("--allowfile", None, "cannot read {path}: No such file or directory"),
        ("--denyfile", "10.0.0.0/8\nexample.com\n",
         "{path}, line 2: 'example.com' is not an IP address or network"),
    ):  # fmt: skip
        path = tmp_path / "list"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(content)
        out = subprocess.run(
            [twistd_path(), "-n", "--pidfile=", "echod", option, str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out
        assert says.format(path=path) in out.stderr, out


def test_sighup_reads_the_access_files_again(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """As the TLS files: SIGHUP reads --allowfile and --denyfile again, for new
    clients (TCP and UDP); open connections stay; a file that will not do
    keeps the lists in force, and says why."""
    allow = tmp_path / "allow"
    allow.write_text("127.0.0.2\n")
    udp = free_port()
    daemon = start_daemon(
        "--port", LOCAL, "--udp", f"127.0.0.1:{udp}", "--allowfile", str(allow),
        "--allow", "127.0.0.3", "--metrics", LOCAL,
    )  # fmt: skip
    port = daemon.tcp_port()
    daemon.wait_for(rf"listening on udp:{udp}")
    metrics = f"http://{daemon.metrics_address()}/metrics"

    def reloads() -> tuple[float, float, float]:
        """/metrics: access reloads that took, that were refused; last took."""
        _, text = curl(metrics)
        return (
            metric(text, 'echod_reloads_total{result="ok",what="access"}'),
            metric(text, 'echod_reloads_total{result="refused",what="access"}'),
            metric(text, 'echod_reload_last_successful{what="access"}'),
        )

    def udp_echoed(source: str) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(0.5)
            sock.sendto(b"datagram", ("127.0.0.1", udp))
            try:
                return sock.recv(100) == b"datagram"
            except TimeoutError:
                return False

    assert not echoed_from("127.0.0.1", "127.0.0.1", port)
    assert not udp_echoed("127.0.0.1")
    with connect("127.0.0.1", port, source="127.0.0.2") as held:
        assert round_trip(held, b"before") == b"before"
        allow.write_text("# now the whole of loopback\n127.0.0.0/8\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(r"access reloaded: allow=127\.0\.0\.3/32,127\.0\.0\.0/8 ")
        assert echoed_from("127.0.0.1", "127.0.0.1", port)
        assert udp_echoed("127.0.0.1")
        allow.write_text("127.0.0.5\nexample.com\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(
            rf"access reload refused, the old lists stay: --allowfile: {allow}, "
            r"line 2: 'example\.com' is not an IP address"
        )
        assert echoed_from("127.0.0.1", "127.0.0.1", port)  # the old lists
        assert reloads() == (1, 1, 0)  # for an alert: the files are not in force
        allow.write_text("127.0.0.5\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(r"access reloaded: allow=127\.0\.0\.3/32,127\.0\.0\.5/32 ")
        assert not echoed_from("127.0.0.2", "127.0.0.1", port)  # new clients
        assert reloads() == (2, 1, 1)
        assert round_trip(held, b"after") == b"after"  # an open one stays
    assert daemon.process.poll() is None


@pytest.mark.parametrize(
    ("option", "value"), [("--allow", "example.com"), ("--deny", "10.0.0.0/33")]
)
def test_a_bad_allow_or_deny_is_one_line(option: str, value: str) -> None:
    out = subprocess.run(
        [twistd_path(), "-n", "--pidfile=", "echod", option, value],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr == (
        f"twistd echod: error: {option}: {value!r} is not an IP address or "
        "network (such as 192.0.2.7, 10.0.0.0/8, 2001:db8::/32; names are not "
        "looked up) (see: twistd echod --help)\n"
    )


def test_tos_marks_what_the_daemon_sends(start_daemon: DaemonStarter) -> None:
    """--tos: tcpdump on loopback sees the daemon's SYN-ACK and echoes carry
    the TOS byte (IPv6: traffic class), the UDP echo too, whatever the
    client's packets carry (nc sends them unmarked)."""
    udp = free_udp_port()
    daemon = start_daemon("--tos", "af21", "--port", LOCAL,
                          "--port", "tcp6:0:interface=\\:\\:1",
                          "--udp", f"127.0.0.1:{udp}")  # fmt: skip
    stream = daemon.addresses(3)[:2]  # the --port ones, then UDP's
    port4, port6 = (int(a.rsplit(":", 1)[1]) for a in stream)
    nc = need_tool("nc")
    for port, nc_args in ((port4, ["127.0.0.1"]), (port6, ["-6", "::1"])):
        with capture(port) as seen:
            out = subprocess.run([nc, "-N", *nc_args, str(port)], input=b"dscp\n",
                                 capture_output=True, timeout=30)  # fmt: skip
        assert out.stdout == b"dscp\n", out
        sent = seen.from_port()
        assert sent and sent[0][1].startswith("Flags [S.]"), sent  # the SYN-ACK
        assert {mark for mark, _ in sent} == {0x48}, sent
        assert {mark for mark, _ in seen.to_port()} == {0}  # the client's: its own
    with capture(udp, "udp") as seen:
        out = subprocess.run([nc, "-u", "-w", "1", "127.0.0.1", str(udp)],
                             input=b"dgram\n", capture_output=True,
                             timeout=30)  # fmt: skip
    assert out.stdout == b"dgram\n", out
    assert seen.from_port() == [(0x48, "UDP, length 6")]
    refused = subprocess.run([twistd_path(), "-n", "--pidfile=", "echod", "--tos",
                              "0x1ff"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused
    assert "--tos '0x1ff': not a TOS" in refused.stderr
