"""End-to-end: ``echod client`` against a real twistd, in a real terminal and a pipe."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pexpect
import pytest

from echod.certs import make_certificates
from tests.capture import capture
from tests.certs import issue, private_ca
from tests.daemon import ECHOD, DaemonStarter, need_tool
from tests.netns import LinkLocalNamespace
from tests.peers import free_port, free_udp_port
from tests.terminal import Terminal

LOCAL = "tcp:0:interface=127.0.0.1"


def client(
    *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [ECHOD, "client", *args], input=stdin, capture_output=True, timeout=timeout
    )


def test_pipe_mode_50_mib_byte_exact(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    port = start_daemon("--port", LOCAL).tcp_port()
    data = random.Random(50).randbytes(50 << 20)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    with source.open("rb") as stdin:
        out = subprocess.run(
            [ECHOD, "client", f"127.0.0.1:{port}"], stdin=stdin, capture_output=True,
            timeout=120,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) == len(data)
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(data).digest()


def test_pipe_mode_a_slow_reader_of_stdout_gets_every_byte(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """The peer closes while its last bytes still wait for our stdout's reader:
    they are written before the exit (they were dropped, exit 0)."""
    daemon = start_daemon("--port", LOCAL)
    port = daemon.tcp_port()
    # More than a pipe holds (64 KiB), less than the pipe and echod's own
    # stdout buffer together: the client takes it all and the close without
    # pausing, and must then wait for its stdout to take the rest.
    data = random.Random(7).randbytes(100 << 10)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    with source.open("rb") as stdin:
        client = subprocess.Popen(
            [ECHOD, "client", f"127.0.0.1:{port}"], stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    try:
        daemon.wait_for(rf"closed 127\.0\.0\.1:\d+ in={len(data)} out={len(data)} ")
        with contextlib.suppress(subprocess.TimeoutExpired):
            client.wait(timeout=2)  # reading nothing yet: it must not end here
        out, err = client.communicate(timeout=30)
    finally:
        client.kill()
        client.wait()
    assert (client.returncode, err) == (0, b"")
    assert len(out) == len(data)
    assert out == data


def test_pipe_mode_timeout_bounds_the_wait_for_a_stuck_stdout(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """With --timeout, a reader of stdout that takes nothing does not hold the
    end forever (as nc -w): one line, exit 6."""
    port = start_daemon("--port", LOCAL).tcp_port()
    source = tmp_path / "in.bin"
    source.write_bytes(random.Random(8).randbytes(100 << 10))  # more than a pipe
    with source.open("rb") as stdin, subprocess.Popen(
        [ECHOD, "client", "--timeout", "1", f"127.0.0.1:{port}"], stdin=stdin,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as client:  # fmt: skip
        code = client.wait(timeout=30)  # stdout is never read meanwhile
        assert client.stderr is not None
        err = client.stderr.read()
    assert (code, err) == (6, b"echod client: timed out writing to stdout (1s)\n")


def test_pipe_mode_stalled_on_stdout_is_not_an_idle_peer(
    start_daemon: DaemonStarter,
) -> None:
    """stdin stays open and stdout is never read: the echo stalls on our own
    stdout, and --timeout says so (it said "nothing for 1s", as if the peer
    had gone quiet; this was a flake of the test above under load)."""
    port = start_daemon("--port", LOCAL).tcp_port()
    with subprocess.Popen(
        [ECHOD, "client", "--timeout", "1", f"127.0.0.1:{port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as client:  # fmt: skip
        assert client.stdin is not None and client.stderr is not None

        def feed() -> None:
            with contextlib.suppress(OSError):  # the client ends while we write
                client.stdin.write(b"x" * (8 << 20))  # type: ignore[union-attr]
                client.stdin.flush()  # type: ignore[union-attr]

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        code = client.wait(timeout=30)  # stdin never ends, stdout is never read
        err = client.stderr.read()
    assert (code, err) == (6, b"echod client: timed out writing to stdout (1s)\n")


def test_probe_mode_summary(start_daemon: DaemonStarter) -> None:
    port = start_daemon("--port", LOCAL).tcp_port()
    out = client("--count", "5", "--size", "256", f"127.0.0.1:{port}")
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr
    assert text.count("256 bytes from 127.0.0.1:") == 5
    assert "5 sent, 5 echoed intact, 0 wrong, 0 lost, 0% failed" in text
    assert "rtt min/avg/max/mdev = " in text


def test_probe_reports_a_wrong_echo(tmp_path: Path) -> None:
    """A peer that answers with other bytes: the probe says so and exits 1."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))

    def liar() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    threading.Thread(target=liar, daemon=True).start()
    try:
        out = client("--count", "2", "--size", "20", f"127.0.0.1:{port}")
    finally:
        server.close()
    assert out.returncode == 1
    assert b"the echo differs" in out.stdout
    assert b"2 sent, 0 echoed intact, 2 wrong" in out.stdout


def spawn_client(*args: str, default_sigint: bool = False) -> Terminal:
    return Terminal([ECHOD, "client", *args], encoding="utf-8", dimensions=(24, 100),
                    default_sigint=default_sigint)  # fmt: skip


def echo_a_line_and_exit(child: Terminal, line: str, greeting: str = "") -> None:
    """After C{greeting}, at the prompt: type C{line}, see it echoed, type
    exit; exit code 0. The client is closed whatever happens."""
    try:
        child.expect_exact(greeting)
        child.expect("input> ")
        child.sendline(line)
        child.expect(line)  # the line as typed
        child.expect(line)  # the echo, printed above the prompt
        child.expect("input> ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
        assert child.wait() == 0
    finally:
        child.close(force=True)


def test_interactive_prompt_echo_and_exit(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--port", LOCAL)
    port = daemon.tcp_port()
    child = spawn_client("-4", f"localhost:{port}")
    # a name: the address that answered is shown, as ping shows it
    greeting = f"connected to localhost:{port} (127.0.0.1);"
    echo_a_line_and_exit(child, "hello echod", greeting)
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=12 out=12")


def test_crlf_ends_each_line_typed_or_piped_with_cr_lf(
    start_daemon: DaemonStarter,
) -> None:
    """-C, as ncat -C: a lone LF goes as CR LF, a CR LF as it is; the echo
    shows what went, and the daemon counts the bytes."""
    daemon = start_daemon("--port", LOCAL)
    port = daemon.tcp_port()
    lines = b"EHLO a\nDATA\r\n.\nlast"
    out = client("-C", "127.0.0.1", str(port), stdin=lines)
    assert (out.returncode, out.stdout, out.stderr) == (
        0, b"EHLO a\r\nDATA\r\n.\r\nlast", b"",
    )  # fmt: skip
    nc = subprocess.run([need_tool("nc"), "-C", "-N", "127.0.0.1", str(port)],
                        input=lines, capture_output=True, timeout=30)  # fmt: skip
    assert nc.stdout == out.stdout  # the bytes nc -C sends
    echo_a_line_and_exit(spawn_client("--crlf", f"127.0.0.1:{port}"), "hello echod")
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=13 out=13")  # hello echod CR LF


def test_interactive_ctrl_d_half_closes_and_prints_what_is_coming(
    start_daemon: DaemonStarter,
) -> None:
    port = start_daemon("--port", LOCAL).tcp_port()
    child = spawn_client(f"127.0.0.1:{port}")
    try:
        child.expect("input> ")
        child.sendline("last words")
        child.expect("last words")  # the line as typed
        child.expect("last words")  # the echo, printed above the prompt
        child.wait_for_line_editing()  # readline reads the next line: Ctrl-D
        child.sendeof()
        child.expect("connection closed by the peer")
        child.expect(pexpect.EOF)
        assert child.wait() == 0
    finally:
        child.close(force=True)


def test_interactive_ctrl_c_quits_at_once(start_daemon: DaemonStarter) -> None:
    daemon = start_daemon("--port", LOCAL)
    port = daemon.tcp_port()
    child = spawn_client(f"127.0.0.1:{port}", default_sigint=True)
    try:
        child.expect("input> ")
        child.sendline("before ctrl-c")
        child.expect("before ctrl-c")
        child.expect("before ctrl-c")
        child.expect("input> ")
        child.sendintr()  # Ctrl-C at the prompt, as a terminal sends it
        child.expect(pexpect.EOF)
        assert child.wait() == 0
        assert "Traceback" not in (child.before or "")
    finally:
        child.close(force=True)
    # The connection was closed, not left behind: the daemon logged its end.
    daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=14 out=14")


def test_interactive_late_reply_never_lands_in_the_typed_line() -> None:
    """A reply that arrives while a line is half typed is printed above it,
    and the prompt with the half-typed line is drawn again below."""
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))

    def late() -> None:
        conn, _ = server.accept()
        with conn:
            time.sleep(1.5)
            conn.sendall(b"late ")  # split, and late
            time.sleep(0.05)
            conn.sendall(b"reply\n")
            time.sleep(5)

    threading.Thread(target=late, daemon=True).start()
    child = spawn_client(f"127.0.0.1:{port}")
    try:
        child.expect("input> ")
        child.send("half typ")
        child.expect("half typ")
        child.expect("late reply\r?\n")
        child.expect("input> half typ")  # redrawn under the reply
        child.send("ed\r")
        child.expect("input> ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
        server.close()


def tls_daemon(
    start_daemon: DaemonStarter,
    tmp_path: Path,
    san: str = "DNS:localhost",
    interface: str = "127.0.0.1",
) -> tuple[int, Path]:
    tmp_path.mkdir(exist_ok=True)
    ca = private_ca(tmp_path)
    key, cert = issue(tmp_path, ca, "server", san)
    daemon = start_daemon(
        "--port", f"ssl:0:interface={interface}:privateKey={key}:certKey={cert}"
    )
    return daemon.tcp_port(), ca[1]


def test_tls_with_a_private_ca(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    port, ca = tls_daemon(start_daemon, tmp_path)
    out = client("--cacert", str(ca), f"tls:localhost:{port}", stdin=b"over tls\n")
    assert (out.returncode, out.stdout) == (0, b"over tls\n"), out.stderr
    probe = client("--tls", "--cacert", str(ca), "--count", "3", f"localhost:{port}")
    assert probe.returncode == 0 and b"3 sent, 3 echoed intact" in probe.stdout


def test_tls_versions_as_curl_and_openssl(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """--tlsv1.2/--tlsv1.3 and --tls-max bound what the client offers, as
    curl's: -v names the version the handshake made; against a daemon that
    takes TLS 1.3 only, --tls-max 1.2 fails as openssl s_client -tls1_2 does
    (the server's protocol_version alert), exit 7 in one line."""
    port, ca = tls_daemon(start_daemon, tmp_path)
    target = ("--cacert", str(ca), f"tls:localhost:{port}")
    for options, version in (
        ([], "TLSv1.3"),
        (["--tls-max", "1.2"], "TLSv1.2"),
        (["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
        (["--tlsv1.3"], "TLSv1.3"),
        (["--tlsv1.3", "--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),  # last wins
    ):
        out = client("-zv", *options, *target)
        assert out.returncode == 0, (options, out.stderr)
        assert f", TLS verified ({version}, ".encode() in out.stderr, out.stderr
    insecure = client("-zv", "--insecure", "--tls-max", "1.2", *target[2:])
    assert insecure.returncode == 0, insecure.stderr
    assert b", TLS not verified (TLSv1.2, " in insecure.stderr, insecure.stderr
    assert insecure.stderr.endswith(b"; --insecure)\n"), insecure.stderr
    bench = subprocess.run(
        [ECHOD, "bench", "--tls-max", "1.2", "-c", "2", "-d", "0.5", *target],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    (tmp_path / "modern").mkdir()
    key, cert = issue(
        tmp_path / "modern", private_ca(tmp_path / "modern"), "s", "DNS:localhost"
    )
    modern = start_daemon(
        "--port", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--tls-min-version", "1.3",
    ).tcp_port()  # fmt: skip
    old = client("-z", "--insecure", "--tls-max", "1.2", f"tls:localhost:{modern}")
    assert old.returncode == 7, old.stderr
    assert old.stderr.decode().splitlines()[1:] == [
        f"echod client: localhost:{modern}: TLS failure: tlsv1 alert protocol version"
    ], old.stderr  # after --insecure's warning
    openssl = subprocess.run(
        [need_tool("openssl"), "s_client", "-tls1_2", "-connect",
         f"127.0.0.1:{modern}"],
        input=b"", capture_output=True, timeout=60,
    )  # fmt: skip
    assert openssl.returncode != 0
    assert b"alert protocol version" in openssl.stdout + openssl.stderr, openssl
    for options, says in (
        (["--tlsv1.3", "--tls-max", "1.2", *target],
         "--tlsv1.3 and --tls-max 1.2 leave no TLS version to speak"),
        (["--tls-max", "1.1", *target], "argument --tls-max: invalid choice: '1.1'"),
        (["--tlsv1.2", f"localhost:{port}"], "--tlsv1.2 applies to TLS targets"),
    ):  # fmt: skip
        out = client("-z", *options)
        assert out.returncode == 2, (options, out.stderr)
        assert says in out.stderr.decode(), out.stderr


def test_tls_verification_failures_exit_7(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    port, ca = tls_daemon(start_daemon, tmp_path)
    unknown_ca = client(f"tls:localhost:{port}", stdin=b"x")  # system store only
    assert unknown_ca.returncode == 7, unknown_ca.stderr
    assert unknown_ca.stderr.endswith(
        b"TLS failure: certificate verify failed: unable to get local issuer "
        b"certificate (the server's certificate, server)\n"
    )
    wrong_name = client("--cacert", str(ca), f"tls:127.0.0.1:{port}", stdin=b"x")
    assert wrong_name.returncode == 7, wrong_name.stderr
    assert wrong_name.stderr.endswith(
        b"TLS failure: the certificate does not match '127.0.0.1' "
        b"(it names localhost)\n"
    )
    by_address = tls_daemon(
        start_daemon, tmp_path / "ip", "IP:127.0.0.1,IP:::1", r"\:\:"
    )
    for host in ("127.0.0.1", "[::1]"):
        out = client("--cacert", str(by_address[1]), f"tls:{host}:{by_address[0]}",
                     stdin=b"by address\n")  # fmt: skip
        assert (out.returncode, out.stdout) == (0, b"by address\n"), out.stderr
    insecure = client("--insecure", f"tls:localhost:{port}", stdin=b"anyway\n")
    assert insecure.returncode == 0 and insecure.stdout == b"anyway\n"
    assert b"NOT verified" in insecure.stderr


def test_a_twisted_ssl_endpoint_string_is_verified_too(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """Twisted's ssl: client endpoint verifies nothing; echod's does.

    Before, ``echod client ssl:host=localhost:port=P`` echoed through a server
    whose certificate no trusted CA signed, without a word.
    """
    port, ca = tls_daemon(start_daemon, tmp_path)
    for target in (f"ssl:host=localhost:port={port}", f"ssl:localhost:{port}"):
        untrusted = client(target, stdin=b"x")
        assert untrusted.returncode == 7, untrusted.stderr
        assert b"unable to get local issuer certificate" in untrusted.stderr
        trusted = client("--cacert", str(ca), target, stdin=b"verified\n")
        assert (trusted.returncode, trusted.stdout) == (0, b"verified\n")
    probe = ECHOD, "bench", "-d", "1", "-c", "1", f"ssl:localhost:{port}"
    bench = subprocess.run(probe, capture_output=True, timeout=60)
    assert bench.returncode == 7, bench.stderr


def test_refused_exits_4() -> None:
    out = client(f"127.0.0.1:{free_port()}")
    assert out.returncode == 4
    assert out.stderr.decode().strip().endswith("connection refused")
    assert len(out.stderr.decode().strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("127.0.0.1:99999", "bad port in '127.0.0.1:99999': ports are 1 to 65535"),
        ("localhost:http", "bad target 'localhost:http': expected HOST:PORT"),
        ("127.0.0.1:-1", "bad target '127.0.0.1:-1': expected HOST:PORT"),
        ("unix:path=", "bad endpoint 'unix:path=': no socket path"),
        (
            "tcp:host=127.0.0.1:port=99999",
            "bad port in 'tcp:host=127.0.0.1:port=99999'",
        ),
        ("tcp:host=[::1:port=7", "bad host '[' in 'tcp:host=[::1:port=7'"),
        ("ssl:localhost:7:caCertsDir=/etc/ssl", "bad endpoint 'ssl:localhost:7:caCer"),
        # were Twisted's "An error occurred while connecting: 22: Invalid argument."
        (
            "[fe80::1]:7",
            "fe80::1 is a link-local address: it needs its zone, the "
            "interface it is on, as in [fe80::1%eth0]:7",
        ),
        ("tcp:host=fe80\\:\\:1:port=7", "fe80::1 is a link-local address"),
        (
            "tcp:host=fe80\\:\\:1%v1:port=7",
            "Twisted's tcp: endpoint loses the zone of fe80::1%v1: write "
            "[fe80::1%v1]:7",
        ),
        ("udp:[fe80::1]:7", "fe80::1 is a link-local address"),
        # was "connection failed: invalid hostname: \\u2603.test" (exit 8)
        ("☃.test:7", "bad international host name '☃.test': Codepoint U+2603"),
        ("tcp:host=☃.test:port=7", "bad international host name '☃.test'"),
    ],
)
def test_a_bad_target_is_one_line_and_exit_2(target: str, message: str) -> None:
    """Was "connection refused" (exit 4), "Unknown endpoint type: '127.0.0.1'",
    or for a port past 65535 in an endpoint string, a connect error (exit 8)."""
    out = client(target)
    assert out.returncode == 2
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"echod client: error: {message}")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--count", "1", "--size", "99999999999"], "--size 99999999999: at most"),
        (["--count", "1", "--interval", "nan"], "--interval must be a number"),
        (["--count", "2", "--interval", "-1"], "--interval must be a number"),
        (["--timeout", "nan"], "--timeout must be a number of seconds"),
        (["-C", "--count", "1"], "-C ends the lines typed or piped, and --count"),
        (["-C", "-z"], "-C ends the lines typed or piped, and -z sends none"),
    ],
)
def test_bad_numbers_are_one_line_and_exit_2(options: list[str], message: str) -> None:
    """A huge --size was built in memory; nan and negative numbers were taken."""
    out = client(*options, f"127.0.0.1:{free_port()}")
    assert out.returncode == 2
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"echod client: error: {message}")


def test_dns_failure_exits_3() -> None:
    out = client("no-such-host.invalid:7", timeout=60)
    assert out.returncode == 3
    assert b"cannot resolve" in out.stderr


def test_unreachable_exits_5() -> None:
    """In a network namespace of our own with no interface up, nothing is reachable."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("needs root and unshare")
        pytest.skip("needs root and unshare")
    out = subprocess.run(
        [unshare, "-n", ECHOD, "client", "127.0.0.1:7"], capture_output=True, timeout=60
    )
    assert out.returncode == 5, out.stderr
    assert len(out.stderr.decode().strip().splitlines()) == 1


def test_timeout_exits_6() -> None:
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))  # accepts, never answers
    try:
        out = client("--timeout", "1", f"127.0.0.1:{port}", stdin=b"anyone?")
    finally:
        server.close()
    assert out.returncode == 6
    assert b"timed out" in out.stderr
    assert len(out.stderr.decode().strip().splitlines()) == 1


def test_reset_exits_8() -> None:
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))

    def reset() -> None:
        conn, _ = server.accept()
        conn.recv(10)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    threading.Thread(target=reset, daemon=True).start()
    try:
        out = client(f"127.0.0.1:{port}", stdin=b"hello?")
    finally:
        server.close()
    assert out.returncode == 8
    assert out.stderr.decode().strip().splitlines() == [
        "echod client: connection reset by the peer"
    ]


def test_any_twisted_client_endpoint(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """A UNIX socket, named by a Twisted client endpoint string."""
    path = tmp_path / "echo.sock"
    daemon = start_daemon("--port", f"unix:{path}")
    daemon.addresses()
    out = client(f"unix:path={path}", stdin=b"over unix\n")
    assert (out.returncode, out.stdout) == (0, b"over unix\n"), out.stderr
    # was exit 5 and "An error occurred while connecting: 2: No such file ..."
    out = client(f"unix:{tmp_path}/absent.sock", stdin=b"x")
    assert (out.returncode, out.stderr.decode()) == (
        4,
        f"echod client: unix:{tmp_path}/absent.sock: "
        "connection refused: no such socket file\n",
    )
    tcp = start_daemon("--port", "tcp:0:interface=127.0.0.1").tcp_port()
    out = client(f"tcp:127.0.0.1:{tcp}", stdin=b"tcp:HOST:PORT\n")  # Twisted's form
    assert (out.returncode, out.stdout) == (0, b"tcp:HOST:PORT\n"), out.stderr


@pytest.mark.parametrize(
    ("command", "options", "named"),
    [
        ("client", ["--cacert", "ca.pem"], "--cacert applies"),
        ("client", ["--insecure"], "--insecure applies"),
        ("client", ["--cert", "c.pem", "--key", "k.pem"], "--cert and --key apply"),
        ("bench", ["--cacert", "ca.pem", "-d", "1"], "--cacert applies"),
    ],
)
def test_tls_options_on_a_plain_target_are_one_line_and_exit_2(
    start_daemon: DaemonStarter, command: str, options: list[str], named: str
) -> None:
    """They were ignored: the echo went in the clear where TLS was asked for."""
    port = start_daemon("--port", LOCAL).tcp_port()
    for target in (f"127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"):
        out = subprocess.run(
            [ECHOD, command, *options, target],
            input=b"x", capture_output=True, timeout=60,
        )  # fmt: skip
        assert (out.returncode, out.stdout) == (2, b"")
        assert out.stderr.decode().splitlines() == [
            f"echod {command}: error: {named} to TLS targets: add --tls, or write "
            f"tls:HOST:PORT"
        ]


def test_a_link_local_address_with_its_zone(
    start_daemon: DaemonStarter, link_local: LinkLocalNamespace
) -> None:
    """[fe80::1%v1]:PORT: was 'An error occurred while connecting: 22: Invalid
    argument' (exit 5); Twisted's HostnameEndpoint drops the zone."""
    daemon = start_daemon(
        "--port", r"tcp6:7007:interface=\:\:", prefix=link_local.prefix
    )
    daemon.addresses()
    target = f"[{link_local.zoned}]:7007"
    run = [*link_local.prefix, ECHOD]
    out = subprocess.run([*run, "client", target], input=b"zone\n",
                         capture_output=True, timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, b"zone\n"), out.stderr
    out = subprocess.run([*run, "bench", "-d", "1", "-c", "2", target],
                         capture_output=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert b"2/2 connections ended cleanly" in out.stdout
    daemon.wait_for(r"closed \[fe80::1(%v1)?\]:\d+ in=5 out=5 ")


def test_udp_to_a_link_local_address_with_its_zone(
    start_daemon: DaemonStarter, link_local: LinkLocalNamespace
) -> None:
    """Twisted's UDP connect takes (host, port) and would lose the zone."""
    daemon = start_daemon(
        "--port", "tcp:0:interface=127.0.0.1", "--udp", f"[{link_local.zoned}]:7007",
        prefix=link_local.prefix,
    )  # fmt: skip
    daemon.wait_for(r"listening on udp:7007")
    run = [*link_local.prefix, ECHOD, "client", "--udp"]
    out = subprocess.run([*run, "--count", "2", f"[{link_local.zoned}]:7007"],
                         capture_output=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert b"2 sent, 2 echoed intact" in out.stdout
    out = subprocess.run([*run, f"[{link_local.zoned}]:7007"], input=b"zone\n",
                         capture_output=True, timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, b"zone\n"), out.stderr
    out = subprocess.run([*run, "--count", "1", f"[{link_local.ADDRESS}%nope]:7007"],
                         capture_output=True, timeout=60)  # fmt: skip
    assert out.returncode == 5, out
    assert b"no network interface 'nope'" in out.stderr


def test_tls_to_a_link_local_address_with_its_zone(
    start_daemon: DaemonStarter, link_local: LinkLocalNamespace, tmp_path: Path
) -> None:
    """The certificate names fe80::1; the zone (%v1) is this machine's, not
    part of the server's identity (was: the name did not match)."""
    make_certificates(tmp_path / "pki", [link_local.ADDRESS])
    pki = tmp_path / "pki"
    daemon = start_daemon(
        "--port", r"ssl:7443:interface=\:\:", "--tls-cert", str(pki / "server.pem"),
        "--tls-key", str(pki / "server.key"), prefix=link_local.prefix,
    )  # fmt: skip
    daemon.addresses()
    out = subprocess.run(
        [*link_local.prefix, ECHOD, "client", "--cacert", str(pki / "ca.pem"),
         f"tls:[{link_local.zoned}]:7443"],
        input=b"zoned tls\n", capture_output=True, timeout=60,
    )  # fmt: skip
    assert (out.returncode, out.stdout) == (0, b"zoned tls\n"), out.stderr
    out = subprocess.run(
        [*link_local.prefix, ECHOD, "fetch", "--cacert", str(pki / "ca.pem"),
         "--max-time", "10", f"https://[{link_local.ADDRESS}%25v1]:7443/"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    # An echo server answers a request with the request: no HTTP response, but
    # the TLS handshake and the certificate's name passed.
    assert b"TLS failure" not in out.stderr, out.stderr
    assert out.returncode == 9, out.stderr


# UDP: echod's own UDP echo, and hand-made UDP peers.


def udp_daemon(start_daemon: DaemonStarter, *extra: str) -> int:
    """A daemon with UDP echo on a free loopback port; the port."""
    port = free_udp_port()
    daemon = start_daemon("--port", LOCAL, "--udp", f"127.0.0.1:{port}", *extra)
    daemon.wait_for(rf"listening on udp:{port}")
    return port


def test_udp_probe_pipe_and_prompt(start_daemon: DaemonStarter) -> None:
    port = udp_daemon(start_daemon, "--udp-rate", "1000")
    out = client("--udp", "--count", "5", "--size", "256", f"127.0.0.1:{port}")
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr
    assert text.count("256 bytes from 127.0.0.1:") == 5
    assert "5 sent, 5 echoed intact, 0 wrong, 0 lost, 0% failed" in text
    out = client("--count", "2", f"udp:localhost:{port}")  # a name, looked up
    assert out.returncode == 0, out.stderr
    assert f"64 bytes from localhost:{port} (127.0.0.1): seq=2 " in out.stdout.decode()
    # pipe mode: each line one datagram, the last one without its newline too
    out = client("--udp", f"127.0.0.1:{port}", stdin=b"hello\nworld\nlast")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"hello\nworld\nlast", b"")
    out = client("-C", "--udp", f"127.0.0.1:{port}", stdin=b"one\ntwo\r\nlast")
    assert (out.returncode, out.stdout) == (0, b"one\r\ntwo\r\nlast"), out.stderr
    child = spawn_client(f"udp:127.0.0.1:{port}")
    try:
        child.expect("input> ")
        child.sendline("over udp")
        child.expect("over udp")  # the line as typed
        child.expect("over udp")  # the echo, printed above the prompt
        child.wait_for_line_editing()
        child.sendeof()
        child.expect(r"\(closed\)")
        child.expect(pexpect.EOF)
        assert child.wait() == 0
    finally:
        child.close(force=True)


def test_udp_probe_counts_a_loss_and_goes_on(start_daemon: DaemonStarter) -> None:
    """Unlike TCP, where a missing echo puts the stream out of step, a lost
    datagram is counted and the probe goes on, as ping does."""
    port = udp_daemon(start_daemon, "--udp-rate", "1")  # one answered, then drops
    out = client(
        "--udp", "--count", "3", "--timeout", "0.3", f"127.0.0.1:{port}", timeout=30
    )
    text = out.stdout.decode()
    assert out.returncode == 1, (text, out.stderr)
    assert "64 bytes from 127.0.0.1:" in text and "seq=1 " in text
    assert "seq=2: no echo within 0.3s" in text
    # seq 3 goes out after the loss; whether it finds a token again depends on
    # how long the machine took (the bucket refills 1 a second)
    assert "seq=3" in text
    assert re.search(r"3 sent, [12] echoed intact, 0 wrong, [12] lost", text), text


def test_udp_probe_against_the_default_rate_limit(start_daemon: DaemonStarter) -> None:
    """The README's advice: a quick probe meets echod's --udp-rate (100 a second,
    a burst of 100) near its hundredth message; --interval 0.01 stays under it."""
    port = udp_daemon(start_daemon)
    paced = client("--udp", "--count", "150", "--interval", "0.01",
                   f"127.0.0.1:{port}", timeout=60)  # fmt: skip
    assert paced.returncode == 0, paced.stdout[-500:]
    assert b"150 sent, 150 echoed intact, 0 wrong, 0 lost" in paced.stdout
    time.sleep(1.1)  # the bucket fills again
    quick = client("--udp", "--count", "300", "--timeout", "0.2",
                   f"127.0.0.1:{port}", timeout=60)  # fmt: skip
    assert quick.returncode == 1, quick.stdout[-500:]
    first = re.search(rb"seq=(\d+): no echo within", quick.stdout)
    assert first is not None and 95 <= int(first[1]) <= 300, quick.stdout[-500:]


def test_udp_probe_tells_a_late_echo_from_a_wrong_one() -> None:
    """A peer that answers the first message after its timeout, and garbles the
    third: the late echo is not counted twice, the garbled one is wrong."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def slow_then_liar() -> None:
        first, peer = server.recvfrom(65536)
        time.sleep(0.6)  # past the probe's 0.3 s timeout
        server.sendto(first, peer)
        for n in (2, 3):
            data, peer = server.recvfrom(65536)
            server.sendto(data.upper() if n == 3 else data, peer)

    threading.Thread(target=slow_then_liar, daemon=True).start()
    try:
        out = client(
            "--udp", "--count", "3", "--timeout", "0.3", "--interval", "0.5",
            f"127.0.0.1:{port}", timeout=30,
        )  # fmt: skip
    finally:
        server.close()
    text = out.stdout.decode()
    assert out.returncode == 1, (text, out.stderr)
    assert "seq=1: no echo within 0.3s" in text
    assert "seq=1: a late or repeated echo, not counted" in text
    assert "seq=3: the echo differs from what was sent" in text
    assert "3 sent, 1 echoed intact, 1 wrong, 1 lost, 67% failed" in text


def test_udp_errors() -> None:
    port = free_port()  # nothing listens: ICMP port unreachable
    out = client("--udp", "--count", "2", f"127.0.0.1:{port}")
    assert out.returncode == 4, out
    assert out.stderr.decode().splitlines() == [
        f"echod client: 127.0.0.1:{port}: connection refused"
    ]
    out = client("--udp", f"127.0.0.1:{port}", stdin=b"anyone?\n")
    assert out.returncode == 4, out
    for args, message in [
        (["--udp", "--tls", "127.0.0.1:7"], "--tls: no TLS over UDP"),
        (["--udp", "--cacert", "ca.pem", "127.0.0.1:7"], "--cacert: no TLS over UDP"),
        (["udp:unix:/run/x.sock"], "bad UDP target 'unix:/run/x.sock'"),
        (
            ["--udp", "--count", "1", "--size", "70000", "127.0.0.1:7"],
            "--size 70000: a UDP datagram holds at most 65507 bytes",
        ),
        (["udp:no-such-host.invalid:7", "--count", "1"], None),
    ]:
        out = client(*args)
        lines = out.stderr.decode().splitlines()
        if message is None:  # a name that does not resolve
            assert out.returncode == 3 and len(lines) == 1, out
            assert "cannot resolve the name 'no-such-host.invalid'" in lines[0]
            continue
        assert out.returncode == 2, (args, out)
        assert lines == [f"echod client: error: {message}"] or (
            len(lines) == 1 and lines[0].startswith(f"echod client: error: {message}")
        ), (args, lines)


def test_ipv4_or_ipv6_only_and_an_international_name(
    start_daemon: DaemonStarter, link_local: LinkLocalNamespace
) -> None:
    """-4 and -6, as curl, nc and ncat have them: a name with both addresses
    reaches only the listener of the version asked for (without either,
    happy eyeballs finds whichever answers); and bücher.test is looked up as
    xn--bcher-kva.test. The namespace's own /etc/hosts gives the names."""
    link_local.hosts(
        "127.0.0.1 dual.test\n::1 dual.test\n127.0.0.1 xn--bcher-kva.test\n"
    )
    daemon = start_daemon(
        "--port", "tcp:7007:interface=127.0.0.1", "--udp", "127.0.0.1:7007",
        prefix=link_local.prefix,
    )  # fmt: skip
    daemon.addresses()
    daemon.wait_for(r"listening on udp:7007")
    run = [*link_local.prefix, ECHOD]

    def code(*args: str) -> int:
        out = subprocess.run([*run, *args], capture_output=True, timeout=60)
        lines = out.stderr.decode().splitlines()
        assert out.returncode == 0 or len(lines) == 1, out
        if (
            out.returncode == 0 and "--count" in args and "dual.test:7007" in args
        ):  # which address answered
            assert b" bytes from dual.test:7007 (127.0.0.1): seq=1 " in out.stdout
        return out.returncode

    assert code("client", "--count", "1", "dual.test:7007") == 0
    assert code("client", "-4", "--count", "1", "dual.test:7007") == 0
    assert code("client", "-6", "--count", "1", "dual.test:7007") == 4  # refused
    assert code("client", "-4", "--udp", "--count", "1", "dual.test:7007") == 0
    assert code("client", "-6", "--udp", "--count", "1", "dual.test:7007") == 4
    assert code("bench", "-4", "-d", "1", "-c", "2", "dual.test:7007") == 0
    assert code("bench", "-6", "-d", "1", "-c", "2", "dual.test:7007") == 4
    out = subprocess.run([*run, "client", "--count", "1", "bücher.test:7007"],
                         capture_output=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out
    assert b"from xn--bcher-kva.test:7007 (127.0.0.1): seq=1 " in out.stdout
    for args in (["client", "--udp", "--count", "1"], ["bench", "-d", "1", "-c", "2"]):
        assert code(*args, "bücher.test:7007") == 0  # --udp and bench alike
    # a name without an address of that version: "cannot resolve", exit 3
    out = subprocess.run([*run, "client", "-6", "--count", "1", "bücher.test:7007"],
                         capture_output=True, timeout=60)  # fmt: skip
    assert (out.returncode, out.stderr) == (3, (
        b"echod client: xn--bcher-kva.test:7007: cannot resolve the name to an "
        b"IPv6 address (-6)\n"
    )), out  # fmt: skip


def test_source_address(start_daemon: DaemonStarter) -> None:
    """--source ADDRESS, as nc -s: against a daemon that serves 127.0.0.2 alone
    (--allow), over TCP, UDP and in bench; the daemon logs the address."""
    udp = free_udp_port()
    daemon = start_daemon(
        "--port", LOCAL, "--udp", f"127.0.0.1:{udp}", "--allow", "127.0.0.2"
    )  # fmt: skip
    port = daemon.tcp_port()
    daemon.wait_for(rf"listening on udp:{udp}")
    for args in (
        ["client", "--count", "1", f"127.0.0.1:{port}"],
        ["client", "--udp", "--count", "1", f"127.0.0.1:{udp}"],
        ["bench", "-d", "1", "-c", "2", f"127.0.0.1:{port}"],
    ):
        served = subprocess.run([ECHOD, *args, "--source", "127.0.0.2"],
                                capture_output=True, timeout=60)  # fmt: skip
        assert served.returncode == 0, served
        refused = subprocess.run([ECHOD, *args], capture_output=True, timeout=60)
        assert refused.returncode != 0, refused
    daemon.wait_for(r"closed 127\.0\.0\.2:\d+ in=64 out=64 ")
    daemon.wait_for(r"refused 127\.0\.0\.1:\d+: denied")
    for args, says in (
        (["--source", "192.0.2.1"],
         "cannot bind the source address: Cannot assign requested"),
        (["--udp", "--source", "192.0.2.1"],
         "cannot bind the source address: Cannot assign requested"),
        (["-6", "--source", "127.0.0.2", "localhost:7"],
         "--source 127.0.0.2 is an IPv4 address, and -6 asks for IPv6"),
        (["--source", "::1"], "--source ::1 is an IPv6 address, and 127.0.0.1 is"),
        (["--source", "localhost"],
         "--source 'localhost': not an IP address (interface and host"),
    ):  # fmt: skip
        target = [] if args[-1].endswith(":7") else [f"127.0.0.1:{port}"]
        out = client("--count", "1", *args, *target)
        assert out.returncode == 2, out
        lines = out.stderr.decode().splitlines()
        assert len(lines) == 1 and says in lines[0], lines


def test_nc_forms_host_port_and_letters(start_daemon: DaemonStarter) -> None:
    """HOST PORT as two arguments, and nc's -u, -s, -w, as nc users type them:
    over TCP (IPv4 and a bare IPv6 address), UDP and in bench; a target that
    has its port already is one line, exit 2."""
    udp = free_udp_port()
    daemon = start_daemon(
        "--port", LOCAL, "--port", "tcp6:0:interface=\\:\\:1",
        "--udp", f"127.0.0.1:{udp}", "--allow", "127.0.0.2,::1",
    )  # fmt: skip
    port = daemon.tcp_port()
    daemon.wait_for(rf"listening on udp:{udp}")
    [port6] = [a.rsplit(":", 1)[1] for a in daemon.addresses(2) if a.startswith("[")]
    out = client("-s", "127.0.0.2", "-w", "5", "127.0.0.1", str(port), stdin=b"nc\n")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"nc\n", b"")
    out = client("::1", port6, stdin=b"six\n")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"six\n", b"")
    out = client("-u", "-s", "127.0.0.2", "127.0.0.1", str(udp), stdin=b"dgram\n")
    assert (out.returncode, out.stdout, out.stderr) == (0, b"dgram\n", b"")
    bench = subprocess.run(
        [ECHOD, "bench", "-d", "1", "-c", "2", "--source", "127.0.0.2",
         "127.0.0.1", str(port)],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert bench.returncode == 0, bench
    daemon.wait_for(r"closed 127\.0\.0\.2:\d+ in=3 out=3 ")
    daemon.wait_for(r"closed \[?::1\]?:\d+ in=4 out=4 ")
    out = client(f"127.0.0.1:{port}", str(port))
    assert out.returncode == 2
    assert out.stderr.decode().splitlines() == [
        f"echod client: error: '127.0.0.1:{port}' and the port {port}: give "
        "HOST PORT, or HOST:PORT alone (an endpoint string names its own port)"
    ]


def test_zero_io_and_verbose_as_nc(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """-z proves a port answers (and, over TLS, that its certificate is
    trusted) without sending a byte, as nc -z; -v says where the connection
    went and from where, as nc -v."""
    udp = free_udp_port()
    daemon = start_daemon("--port", LOCAL, "--udp", f"127.0.0.1:{udp}")
    port = daemon.tcp_port()
    daemon.wait_for(rf"listening on udp:{udp}")
    out = client("-zv", "localhost", str(port))
    assert out.returncode == 0 and out.stdout == b"", out
    said = out.stderr.decode()
    assert re.fullmatch(
        rf"echod client: connected to localhost:{port} \(127\.0\.0\.1\) from "
        r"127\.0\.0\.1:(\d+)\n", said
    ), said  # fmt: skip
    local = said.rsplit(":", 1)[1].strip()
    daemon.wait_for(rf"closed 127\.0\.0\.1:{local} in=0 out=0 .* reason=(eof|closed)")
    refused = client("-z", f"127.0.0.1:{free_port()}")
    assert refused.returncode == 4 and b"connection refused" in refused.stderr
    out = client("-v", f"127.0.0.1:{port}", stdin=b"piped\n")
    assert (out.returncode, out.stdout) == (0, b"piped\n")
    assert out.stderr.startswith(
        f"echod client: connected to 127.0.0.1:{port} from".encode()
    )
    out = client("-v", "-u", "127.0.0.1", str(udp), stdin=b"dgram\n")
    assert (out.returncode, out.stdout) == (0, b"dgram\n")
    assert out.stderr.startswith(
        f"echod client: sending to 127.0.0.1:{udp} from".encode()
    )
    tls_port, ca = tls_daemon(start_daemon, tmp_path)
    out = client("-zv", "--cacert", str(ca), f"tls:localhost:{tls_port}")
    assert out.returncode == 0, out
    assert ", TLS verified (TLSv1.3, " in out.stderr.decode(), out.stderr
    untrusted = client("-z", f"tls:localhost:{tls_port}")
    assert untrusted.returncode == 7, untrusted
    assert b"unable to get local issuer certificate" in untrusted.stderr
    plain = client("-z", f"tls:127.0.0.1:{port}")  # a TLS hello to a plain echo
    assert plain.returncode == 7, plain
    # Mutual TLS: under TLS 1.3 the server refuses a missing client
    # certificate after the client's handshake is done; -z said 0 to that.
    pki = tmp_path / "pki"
    make_certificates(pki, ["localhost"])
    mutual = start_daemon(
        "--port", "ssl:0:interface=127.0.0.1", "--tls-cert", str(pki / "server.pem"),
        "--tls-key", str(pki / "server.key"), "--tls-client-ca", str(pki / "ca.pem"),
    ).tcp_port()  # fmt: skip
    anonymous = client("-z", "--cacert", str(pki / "ca.pem"), f"tls:localhost:{mutual}")
    assert anonymous.returncode == 7, anonymous
    assert b"alert certificate required" in anonymous.stderr, anonymous
    known = client("-z", "--cacert", str(pki / "ca.pem"), "--cert",
                   str(pki / "client.pem"), "--key", str(pki / "client.key"),
                   f"tls:localhost:{mutual}")  # fmt: skip
    assert known.returncode == 0, known
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connects, never speaks
        mute = silent.getsockname()[1]
        out = client("-z", "-w", "1", f"tls:127.0.0.1:{mute}", timeout=20)
    assert (out.returncode, out.stderr) == (
        6,
        f"echod client: 127.0.0.1:{mute}: timed out\n".encode(),
    ), out  # it waited for the handshake for ever
    for args, says in (
        (["-z", "-u", f"127.0.0.1:{udp}"], "-z proves a connection, and UDP has"),
        (["-z", "--count", "1", f"127.0.0.1:{port}"], "-z sends nothing, and"),
    ):
        out = client(*args)
        assert out.returncode == 2, out
        assert out.stderr.decode().startswith(f"echod client: error: {says}"), out


def test_source_port(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """--source-port PORT (-p), as nc -p: the daemon logs the port, over TCP,
    TLS and in bench (one connection); a UDP server sees the datagram come
    from it; a port in use is one line, exit 2."""
    make_certificates(tmp_path / "pki", ["127.0.0.1"])
    pki = tmp_path / "pki"
    daemon = start_daemon(
        "--port", LOCAL, "--port", "ssl:0:interface=127.0.0.1",
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
    )  # fmt: skip
    tcp, tls = (int(a.rsplit(":", 1)[1]) for a in daemon.addresses(2))
    for args in (
        ["client", "--count", "1", f"127.0.0.1:{tcp}"],
        ["client", "--count", "1", "--cacert", str(pki / "ca.pem"),
         f"tls:127.0.0.1:{tls}"],
        ["bench", "-d", "1", "-c", "1", f"127.0.0.1:{tcp}"],
    ):  # fmt: skip
        local = free_port()
        out = subprocess.run([ECHOD, *args, "-p", str(local)],
                             capture_output=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out
        daemon.wait_for(rf"closed 127\.0\.0\.1:{local} ")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(30)
        local = free_port()
        with subprocess.Popen(
            [ECHOD, "client", "--udp", "--count", "1", "--source-port", str(local),
             f"127.0.0.1:{server.getsockname()[1]}"],
            stdout=subprocess.DEVNULL,
        ) as probe:  # fmt: skip
            data, peer = server.recvfrom(65536)
            server.sendto(data, peer)
            assert probe.wait(timeout=30) == 0
        assert peer == ("127.0.0.1", local)
    with socket.socket() as taken, socket.socket(type=socket.SOCK_DGRAM) as taken_udp:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_udp.bind(("127.0.0.1", taken.getsockname()[1]))
        busy = str(taken.getsockname()[1])
        for args, says in (
            (["client", "--count", "1", "-p", busy, f"127.0.0.1:{tcp}"],
             "cannot bind the source address: Address already in use"),
            (["client", "--udp", "--count", "1", "-p", busy, f"127.0.0.1:{tcp}"],
             "cannot bind the source address: Address already in use"),
            (["bench", "-c", "2", "-p", busy, f"127.0.0.1:{tcp}"],
             "--source-port gives one connection its port, and -c asks for 2"),
            (["client", "-p", busy, f"tcp:127.0.0.1:{tcp}"],
             "--source-port goes with HOST:PORT, not the endpoint string"),
            (["client", "-p", "0", f"127.0.0.1:{tcp}"],
             "argument -p/--source-port: '0': ports are 1 to 65535"),
        ):  # fmt: skip
            out = subprocess.run([ECHOD, *args], capture_output=True, timeout=60)
            assert out.returncode == 2, out
            assert says in out.stderr.decode().splitlines()[-1], out


def test_source_address_over_tls(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """--source over TLS: the connection under the handshake comes from it."""
    make_certificates(tmp_path / "pki", ["127.0.0.1"])
    pki = tmp_path / "pki"
    daemon = start_daemon(
        "--port", "ssl:0:interface=127.0.0.1", "--tls-cert", str(pki / "server.pem"),
        "--tls-key", str(pki / "server.key"), "--allow", "127.0.0.2",
    )  # fmt: skip
    target = f"tls:127.0.0.1:{daemon.tcp_port()}"
    tls = [ECHOD, "client", "--cacert", str(pki / "ca.pem"), "--count", "1"]
    served = subprocess.run([*tls, "--source", "127.0.0.2", target],
                            capture_output=True, timeout=60)  # fmt: skip
    assert served.returncode == 0, served
    refused = subprocess.run([*tls, target], capture_output=True, timeout=60)
    assert refused.returncode != 0, refused
    daemon.wait_for(r"closed 127\.0\.0\.2:\d+ in=64 out=64 ")


def test_tos_marks_every_packet_as_nc_does(start_daemon: DaemonStarter) -> None:
    """-T, beside OpenBSD nc's -T, seen by tcpdump on loopback: the TOS byte
    (IPv6: traffic class) on every packet the client sends, its SYN first;
    over IPv6 and UDP too; and through echod bench."""
    daemon = start_daemon("--port", LOCAL, "--port", "tcp6:0:interface=\\:\\:1")
    port4, port6 = (int(a.rsplit(":", 1)[1]) for a in daemon.addresses(2))
    nc = need_tool("nc")
    for tos, target, port, nc_args in (
        ("ef", f"127.0.0.1:{port4}", port4, ["127.0.0.1", str(port4)]),
        ("af41", f"[::1]:{port6}", port6, ["-6", "::1", str(port6)]),
    ):
        for command in ([ECHOD, "client", "-T", tos, target],
                        [nc, "-N", "-T", tos, *nc_args]):  # fmt: skip
            with capture(port) as seen:
                out = subprocess.run(command, input=b"marked\n", capture_output=True,
                                     timeout=30)  # fmt: skip
            assert (out.returncode, out.stdout) == (0, b"marked\n"), (command, out)
            packets = seen.to_port()
            expected = 0xB8 if tos == "ef" else 0x88
            assert packets and packets[0][1].startswith("Flags [S]"), packets
            assert {mark for mark, _ in packets} == {expected}, (command, packets)
    udp = udp_daemon(start_daemon)
    with capture(udp, "udp") as seen:
        out = client("--udp", "-T", "cs1", f"127.0.0.1:{udp}", stdin=b"dgram\n")
    assert (out.returncode, out.stdout) == (0, b"dgram\n"), out
    assert seen.to_port() == [(0x20, "UDP, length 6")]  # the line, its newline too
    with capture(port4) as seen:
        out = subprocess.run([ECHOD, "bench", "-T", "0x28", "-c", "2", "-d", "0.5",
                              f"127.0.0.1:{port4}"], capture_output=True,
                             timeout=60)  # fmt: skip
    assert out.returncode == 0, out
    assert {mark for mark, _ in seen.to_port()} == {0x28}
    for args, says in (
        (["-T", "bogus", f"127.0.0.1:{port4}"], "-T 'bogus': not a TOS"),
        (["-T", "256", f"127.0.0.1:{port4}"], "-T '256': not a TOS"),
        (["-T", "ef", "unix:path=/x"], "-T goes with HOST:PORT"),
    ):
        out = client(*args)
        assert out.returncode == 2 and out.stderr.count(b"\n") == 1, out
        assert says.encode() in out.stderr
