"""End-to-end TLS: a real twistd against the real openssl s_client and Python's ssl."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from echod.certs import make_certificates
from tests.certs import issue, private_ca, self_signed
from tests.daemon import ECHOD, Daemon, DaemonStarter, need_tool
from tests.peers import closed_by_peer, connect, free_port, round_trip
from tests.scrape import curl, metric, tls_sessions
from tests.terminal import Terminal


def ssl_daemon(
    start_daemon: DaemonStarter, cert: Path, key: Path, *extra: str
) -> tuple[int, Daemon]:
    daemon = start_daemon(
        "--port", "ssl:0:interface=127.0.0.1", "--tls-cert", str(cert),
        "--tls-key", str(key), *extra,
    )  # fmt: skip
    return daemon.tcp_port(), daemon


def s_client(
    port: int, *args: str, stdin: bytes = b"ping\n"
) -> subprocess.CompletedProcess[bytes]:
    """openssl s_client: one message, then close."""
    return subprocess.run(
        [need_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
         "-servername", "localhost", "-quiet", "-no_ign_eof", *args],
        input=stdin, capture_output=True, timeout=30,
    )  # fmt: skip


def handshake(port: int, *args: str) -> bool:
    out = subprocess.run(
        [need_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input=b"", capture_output=True, timeout=30,
    )  # fmt: skip
    return b"Cipher is (NONE)" not in out.stdout and out.returncode == 0


def test_tls_versions_by_default(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)
    port, _ = ssl_daemon(start_daemon, cert, key)
    legacy = ("-cipher", "DEFAULT@SECLEVEL=0")
    assert not handshake(port, "-tls1", *legacy)
    assert not handshake(port, "-tls1_1", *legacy)
    assert handshake(port, "-tls1_2")
    assert handshake(port, "-tls1_3")


def test_min_version_1_3_refuses_1_2(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    key, cert = self_signed(tmp_path)
    port, _ = ssl_daemon(start_daemon, cert, key, "--tls-min-version", "1.3")
    assert not handshake(port, "-tls1_2")
    assert handshake(port, "-tls1_3")


def test_each_connection_says_its_tls_version_and_cipher(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """The closed line of a TLS connection ends with the version and cipher its
    handshake made, as HAProxy's %sslv/%sslc and nginx's $ssl_protocol log them;
    /metrics counts them (open connections included), through a PROXY header
    too; a plain connection's line is as before."""
    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", "ssl:0:interface=127.0.0.1", "--port", "tcp:0:interface=127.0.0.1",
        "--port", "haproxy:ssl:0:interface=127.0.0.1", "--tls-cert", str(cert),
        "--tls-key", str(key), "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    tls, plain, proxied = (int(a.rsplit(":", 1)[1]) for a in daemon.addresses(3))
    context = ssl.create_default_context(cafile=str(cert))
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        pinned = ssl.create_default_context(cafile=str(cert))
        pinned.minimum_version = pinned.maximum_version = version
        sock = connect("127.0.0.1", tls)
        with pinned.wrap_socket(sock, server_hostname="localhost") as secure:
            assert round_trip(secure, b"hello") == b"hello"
    with connect("127.0.0.1", plain) as sock:
        assert round_trip(sock, b"plain") == b"plain"
    with connect("127.0.0.1", proxied) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 10000\r\n")
        with context.wrap_socket(sock, server_hostname="localhost") as secure:
            secure.sendall(b"behind a proxy")
            assert secure.recv(100) == b"behind a proxy"
            _, text = curl(f"http://{daemon.metrics_address()}/metrics")
    counted = [(c, v, n) for where, v, c, n in tls_sessions(text) if where == "echod"]
    by_version = sorted((version, n) for _, version, n in counted)
    assert by_version == [("TLSv1.2", 1.0), ("TLSv1.3", 2.0)], counted
    ciphers = {version: cipher for cipher, version, _ in counted}
    ends = r" duration=\S+ reason=\w+"
    daemon.wait_for(
        r"closed 127\.0\.0\.1:\d+ in=5 out=5" + ends + "$"  # plain: no tls=
    )
    for named, size, peer in (
        ("TLSv1.2", 5, r"127\.0\.0\.1:\d+"),
        ("TLSv1.3", 5, r"127\.0\.0\.1:\d+"),
        ("TLSv1.3", 14, r"203\.0\.113\.9:40000"),  # from the PROXY header
    ):
        daemon.wait_for(
            rf"closed {peer} in={size} out={size}{ends} tls={named} "
            rf"cipher={re.escape(ciphers[named])} sni=localhost$"
        )


def test_profile_ciphers_only(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)
    port, _ = ssl_daemon(start_daemon, cert, key)
    assert handshake(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not handshake(port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")  # CBC
    assert not handshake(port, "-tls1_2", "-cipher", "AES128-GCM-SHA256")  # no PFS


def test_mutual_tls(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    make_certificates(ours, ["localhost"])
    make_certificates(theirs, ["localhost"])
    port, daemon = ssl_daemon(
        start_daemon, ours / "server.pem", ours / "server.key",
        "--tls-client-ca", str(ours / "ca.pem"),
    )  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [ECHOD, "client", "--cacert", str(ours / "ca.pem"), *args,
             f"tls:localhost:{port}"],
            input=b"mutual\n", capture_output=True, timeout=30,
        )  # fmt: skip

    right = run("--cert", str(ours / "client.pem"), "--key", str(ours / "client.key"))
    assert (right.returncode, right.stdout) == (0, b"mutual\n"), right.stderr
    # the closed line names the client's certificate, as HAProxy's %[ssl_c_s_dn(cn)]
    daemon.wait_for(
        r"closed 127\.0\.0\.1:\d+ in=7 out=7 .* reason=\w+ tls=TLSv1\.3 "
        r"cipher=\S+ sni=localhost client_cn=echod\\x20client$"
    )
    none = run()
    assert none.returncode != 0 and none.stdout == b""
    other = run(
        "--cert", str(theirs / "client.pem"), "--key", str(theirs / "client.key")
    )
    assert other.returncode != 0 and other.stdout == b""
    # the same three with openssl s_client (TLS 1.2, where the server's verdict on
    # the client's certificate is part of the handshake itself)
    ca = ("-tls1_2", "-CAfile", str(ours / "ca.pem"))
    assert not handshake(port, *ca)
    assert not handshake(
        port,
        *ca,
        "-cert",
        str(theirs / "client.pem"),
        "-key",
        str(theirs / "client.key"),
    )
    assert handshake(
        port, *ca, "-cert", str(ours / "client.pem"), "-key", str(ours / "client.key")
    )
    daemon.wait_for(r"reason=tls-error", count=4)


def not_after(cert: Path) -> float:
    """When C{cert} expires (Unix time), as the real openssl x509 reads it."""
    out = subprocess.run(
        [need_tool("openssl"), "x509", "-noout", "-enddate", "-in", str(cert)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    stamp = out.stdout.strip().removeprefix("notAfter=")
    when = datetime.datetime.strptime(stamp, "%b %d %H:%M:%S %Y GMT")
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


def test_reload_on_sighup_keeps_open_connections(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    ca = private_ca(tmp_path)
    live_key, live_cert = tmp_path / "live.key", tmp_path / "live.pem"
    first = issue(tmp_path, ca, "first")
    second = issue(tmp_path, ca, "second")
    shutil.copy(first[0], live_key)
    shutil.copy(first[1], live_cert)
    port, daemon = ssl_daemon(
        start_daemon, live_cert, live_key, "--metrics", "tcp:0:interface=127.0.0.1"
    )
    context = ssl.create_default_context(cafile=str(ca[1]))
    metrics = f"http://{daemon.metrics_address()}/metrics"
    expiry = f'echod_tls_certificate_expiry_timestamp_seconds{{file="{live_cert}"}}'

    def reloads(result: str) -> float:
        _, text = curl(metrics)
        return metric(text, f'echod_reloads_total{{result="{result}",what="tls"}}')

    def reload_state() -> tuple[float, float, float, float]:
        """Expiry served; reloads ok, refused; whether the last one took."""
        _, text = curl(metrics)
        return (
            metric(text, expiry), reloads("ok"), reloads("refused"),
            metric(text, 'echod_reload_last_successful{what="tls"}'),
        )  # fmt: skip

    assert reload_state() == (not_after(first[1]), 0, 0, 1)

    def subject_cn(sock: ssl.SSLSocket) -> str:
        cert = sock.getpeercert()
        assert cert is not None
        subject: Any = cert["subject"]
        return str(dict(rdn[0] for rdn in subject)["commonName"])

    old = context.wrap_socket(connect("127.0.0.1", port), server_hostname="localhost")
    try:
        assert subject_cn(old) == "first"
        shutil.copy(second[0], live_key)
        shutil.copy(second[1], live_cert)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("TLS certificate reloaded")
        assert reload_state() == (not_after(second[1]), 1, 0, 1)
        with context.wrap_socket(
            connect("127.0.0.1", port), server_hostname="localhost"
        ) as new:
            assert subject_cn(new) == "second"
            assert round_trip(new, b"new") == b"new"
        assert round_trip(old, b"old connection still echoes") == (
            b"old connection still echoes"
        )
        # A broken pair: the key of the first certificate with the second one.
        shutil.copy(first[0], live_key)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("TLS reload refused, the old certificate stays")
        # /metrics says so, and which certificate is still served
        assert reload_state() == (not_after(second[1]), 1, 1, 0)
        with context.wrap_socket(
            connect("127.0.0.1", port), server_hostname="localhost"
        ) as after:
            assert subject_cn(after) == "second"
    finally:
        old.close()


def test_bad_peers_are_closed_and_others_served(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    key, cert = self_signed(tmp_path)
    port, daemon = ssl_daemon(start_daemon, cert, key, "--tls-handshake-timeout", "1")
    context = ssl.create_default_context(cafile=str(cert))
    with context.wrap_socket(
        connect("127.0.0.1", port), server_hostname="localhost"
    ) as good:
        with connect("127.0.0.1", port) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert closed_by_peer(plain)
        with connect("127.0.0.1", port) as garbage:
            garbage.sendall(random.Random(3).randbytes(4096))
            assert closed_by_peer(garbage)
        with connect("127.0.0.1", port) as truncated:
            truncated.sendall(
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
            )  # cut short
            assert closed_by_peer(truncated, timeout=5)
        with connect("127.0.0.1", port) as silent:
            started = time.monotonic()
            assert closed_by_peer(silent, timeout=5)
            assert time.monotonic() - started < 4
        assert round_trip(good, b"unaffected") == b"unaffected"
    daemon.wait_for("did not finish in time", count=2)


def test_idle_timeout_ends_with_close_notify(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """The idle timeout closes a TLS connection cleanly: close_notify, then the
    close once the client answers it (it was a reset). A client that never
    answers is cut at the idle sweeper's next look."""
    key, cert = self_signed(tmp_path)
    port, daemon = ssl_daemon(start_daemon, cert, key, "--idle-timeout", "1")
    context = ssl.create_default_context(cafile=str(cert))

    def tls_client() -> ssl.SSLSocket:
        return context.wrap_socket(
            connect("127.0.0.1", port), server_hostname="localhost",
            suppress_ragged_eofs=False,
        )  # fmt: skip

    with tls_client() as answering, tls_client() as silent:
        assert round_trip(answering, b"then idle") == b"then idle"
        assert round_trip(silent, b"then mute") == b"then mute"
        answering.settimeout(10)
        assert answering.recv(1) == b""  # close_notify (SSLEOFError without)
        answering.unwrap()  # our close_notify: the daemon closes the connection
        # and the silent one, which never answers, is cut soon after
        daemon.wait_for(r"closed \S+ in=9 out=9 .*reason=idle-timeout", count=2)


def test_slow_reader_over_tls_keeps_rss_bounded(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """A TLS client that writes and never reads: the daemon stops reading
    through the TLS layer too, so its memory stays bounded."""
    key, cert = self_signed(tmp_path)
    port, daemon = ssl_daemon(start_daemon, cert, key, "--idle-timeout", "0")
    context = ssl.create_default_context(cafile=str(cert))
    with context.wrap_socket(
        connect("127.0.0.1", port), server_hostname="localhost"
    ) as warm:  # a warm-up, so that the baseline includes the TLS code paths
        assert round_trip(warm, b"w" * 100_000) == b"w" * 100_000
    time.sleep(0.2)
    before = daemon.rss_kib()
    chunk, goal, sent = b"\xa5" * 65536, 1 << 30, 0
    with context.wrap_socket(
        connect("127.0.0.1", port), server_hostname="localhost"
    ) as tls:
        tls.settimeout(2.0)  # no progress for 2 s: the daemon stopped reading
        deadline = time.monotonic() + 60
        with contextlib.suppress(TimeoutError):
            while sent < goal and time.monotonic() < deadline:
                tls.sendall(chunk)
                sent += len(chunk)
        after = daemon.rss_kib()
    growth = after - before
    print(f"TLS slow reader: pushed {sent} bytes; RSS growth {growth} KiB")
    assert sent < 64 << 20, "the daemon kept reading from a client that never reads"
    assert growth < 16 * 1024


def test_16_mib_then_close_notify(start_daemon: DaemonStarter, tmp_path: Path) -> None:
    """Every byte comes back after the client's close_notify, then a clean TLS close."""
    key, cert = self_signed(tmp_path)
    port, daemon = ssl_daemon(start_daemon, cert, key)
    data = random.Random(16).randbytes(16 << 20)
    context = ssl.create_default_context(cafile=str(cert))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    sock = connect("127.0.0.1", port)
    sock.setblocking(False)
    received = bytearray()
    sent = 0
    closing = False
    clean_close = False

    def pump() -> bool:
        """Move bytes between the socket and the TLS object; False at EOF."""
        while outgoing.pending:
            chunk = outgoing.read(65536)
            sock.setblocking(True)
            sock.sendall(chunk)
            sock.setblocking(False)
        try:
            raw = sock.recv(262144)
        except BlockingIOError:
            return True
        if not raw:
            incoming.write_eof()
            return False
        incoming.write(raw)
        return True

    deadline = time.monotonic() + 60
    with sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        while time.monotonic() < deadline:
            if sent < len(data):
                sent += tls.write(data[sent : sent + 65536])
            elif not closing:
                closing = True
                with contextlib.suppress(ssl.SSLWantReadError):
                    tls.unwrap()  # sends close_notify
            alive = pump()
            try:
                while True:
                    received += tls.read(262144)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                clean_close = True
                break
            if not alive:
                break
    line = daemon.wait_for(r"closed 127\.0\.0\.1:\d+ in=(\d+) out=(\d+)")[0]
    assert (int(line[1]), int(line[2]), len(received)) == (len(data),) * 3
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert clean_close, "the server answered with its own close_notify"
    daemon.wait_for(rf"closed 127\.0\.0\.1:\d+ in={len(data)} out={len(data)}")


def expired_pair(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(past).not_valid_after(past + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_path, cert_path = directory / "old.key", directory / "old.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_expired_certificate_warns_at_start(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    key, cert = expired_pair(tmp_path)
    _, daemon = ssl_daemon(start_daemon, cert, key)
    daemon.wait_for("has expired: clients will refuse it")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "cannot read certificate"),
        ("mismatch", "does not match the certificate"),
        ("empty-ca", "no certificate in CA file"),
        ("no-cert", "needs a certificate"),
        ("empty-dir", "no NAME.pem file"),
    ],
)
def test_bad_tls_files_are_one_clear_line(
    start_daemon: DaemonStarter, tmp_path: Path, case: str, message: str
) -> None:
    key, cert = self_signed(tmp_path)
    other_key, _ = issue(tmp_path, private_ca(tmp_path), "other")
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    empty_dir = tmp_path / "no-pems"
    empty_dir.mkdir()
    args = {
        "missing": ["--port", "ssl:0", "--tls-cert", str(tmp_path / "nope.pem"),
                    "--tls-key", str(key)],
        "mismatch": ["--port", "ssl:0", "--tls-cert", str(cert),
                     "--tls-key", str(other_key)],
        "empty-ca": ["--port", "ssl:0", "--tls-cert", str(cert), "--tls-key", str(key),
                     "--tls-client-ca", str(empty)],
        "no-cert": ["--port", "ssl:0"],
        "empty-dir": ["--port", f"tls:{empty_dir}:port=0"],
    }[case]  # fmt: skip
    daemon = start_daemon(*args)
    lines = [x for x in daemon.refusal_lines() if x.strip()]
    assert len(lines) == 1 and message in lines[0], daemon.output
    assert "Traceback" not in daemon.output


def test_echod_cert_writes_a_working_set(tmp_path: Path) -> None:
    out = subprocess.run([ECHOD, "cert", str(tmp_path / "c"), "localhost", "127.0.0.1"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for name in ("ca", "server", "client"):
        assert (tmp_path / "c" / f"{name}.pem").exists()
        assert (tmp_path / "c" / f"{name}.key").stat().st_mode & 0o077 == 0
    verify = subprocess.run(
        [need_tool("openssl"), "verify", "-CAfile", str(tmp_path / "c" / "ca.pem"),
         str(tmp_path / "c" / "server.pem"), str(tmp_path / "c" / "client.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    kept = (tmp_path / "c" / "ca.pem").read_bytes()
    again = subprocess.run([ECHOD, "cert", str(tmp_path / "c"), "echo.test"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "kept the CA already in" in again.stdout
    (tmp_path / "trusted.pem").write_bytes(kept)  # what clients were given before
    verify = subprocess.run(
        [need_tool("openssl"), "verify", "-CAfile", str(tmp_path / "trusted.pem"),
         "-verify_hostname", "echo.test", str(tmp_path / "c" / "server.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def install_pem(pems: Path, name: str, made: Path) -> None:
    """NAME.pem for a tls:DIRECTORY listener: the key and certificate in C{made}."""
    pem = (made / "server.key").read_bytes() + (made / "server.pem").read_bytes()
    (pems / f"{name}.pem").write_bytes(pem)


def test_tls_directory_listener_gets_the_profile_sni_and_mutual_tls(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """tls:DIRECTORY (a NAME.pem per host, as Twisted's) with the --tls-* options."""
    pems = tmp_path / "pems"
    pems.mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    make_certificates(a, ["alpha.test"])
    make_certificates(b, ["beta.test"], days=30)
    for name, d in (("alpha.test", a), ("beta.test", b)):
        install_pem(pems, name, d)
    port = free_port()
    daemon = start_daemon(
        "--port", f"tls:{pems}:port={port}:interface=127.0.0.1",
        "--tls-min-version", "1.3", "--tls-client-ca", str(a / "ca.pem"),
    )  # fmt: skip
    daemon.wait_for("listening on tls:")
    for name, d in (("alpha.test", a), ("beta.test", b)):
        context = ssl.create_default_context(cafile=str(d / "ca.pem"))
        context.load_cert_chain(str(a / "client.pem"), str(a / "client.key"))
        with context.wrap_socket(connect("127.0.0.1", port), server_hostname=name) as s:
            assert round_trip(s, name.encode()) == name.encode()  # SNI chose the pair
    # A name in another case gets its pair; a name with no file gets the first
    # file's (the handshake verifies against that pair's CA only).
    for sent, d in (("BETA.TEST", b), ("other.test", a)):
        context = ssl.create_default_context(cafile=str(d / "ca.pem"))
        context.check_hostname = False
        context.load_cert_chain(str(a / "client.pem"), str(a / "client.key"))
        with context.wrap_socket(connect("127.0.0.1", port), server_hostname=sent) as s:
            assert round_trip(s, sent.encode()) == sent.encode()
    assert not handshake(port, "-tls1_2")  # --tls-min-version applies
    no_client_cert = s_client(
        port, "-CAfile", str(a / "ca.pem"), "-servername", "alpha.test"
    )
    assert no_client_cert.stdout == b""  # --tls-client-ca applies


def test_tls_directory_reload_on_sighup(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    pems = tmp_path / "pems"
    pems.mkdir()
    first, second = tmp_path / "first", tmp_path / "second"
    make_certificates(first, ["localhost"])
    make_certificates(second, ["localhost"])

    install_pem(pems, "localhost", first)
    port = free_port()
    daemon = start_daemon(
        "--port", f"tls:{pems}:port={port}:interface=127.0.0.1",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    daemon.wait_for("listening on tls:")
    metrics = f"http://{daemon.metrics_address()}/metrics"

    def expiries() -> dict[str, float]:
        """echod_tls_certificate_expiry_timestamp_seconds, by file."""
        _, text = curl(metrics)
        found = re.findall(
            r'^echod_tls_certificate_expiry_timestamp_seconds\{file="([^"]+)"\} (\S+)$',
            text, re.MULTILINE,
        )  # fmt: skip
        return {file: float(value) for file, value in found}

    served = str(pems / "localhost.pem")
    assert expiries() == {served: not_after(first / "server.pem")}
    trusting = {
        d: ssl.create_default_context(cafile=str(d / "ca.pem")) for d in (first, second)
    }
    with trusting[first].wrap_socket(
        connect("127.0.0.1", port), server_hostname="localhost"
    ) as s:
        assert round_trip(s, b"first") == b"first"
    install_pem(pems, "localhost", second)
    install_pem(pems, "echo.test", first)  # a second name, a second file
    daemon.process.send_signal(signal.SIGHUP)
    daemon.wait_for("TLS certificates reloaded")
    assert expiries() == {
        served: not_after(second / "server.pem"),
        str(pems / "echo.test.pem"): not_after(first / "server.pem"),
    }
    with trusting[second].wrap_socket(
        connect("127.0.0.1", port), server_hostname="localhost"
    ) as s:
        assert round_trip(s, b"second") == b"second"


def test_drain_closes_tls_connections_with_close_notify(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """At the end of the drain time a TLS client gets its echo, then a TLS close
    (close_notify), not a bare TCP FIN under the TLS stream; the client's own
    close then ends the connection at once.

    (echod stopped reading once it had sent close_notify, so it never saw the
    client's close: it waited the 5 s flush grace and logged drain-abort.)"""
    key, cert = self_signed(tmp_path)
    port, daemon = ssl_daemon(start_daemon, cert, key, "--drain-timeout", "0")
    context = ssl.create_default_context(cafile=str(cert))
    raw = connect("127.0.0.1", port)
    with context.wrap_socket(
        raw, server_hostname="localhost", suppress_ragged_eofs=False
    ) as sock:
        assert round_trip(sock, b"before the stop") == b"before the stop"
        began = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        sock.settimeout(10)
        assert sock.recv(100) == b""  # close_notify; a bare EOF would raise SSLEOFError
    assert daemon.process.wait(30) in (0, -signal.SIGTERM)
    assert time.monotonic() - began < 3, "waited out the flush grace"
    daemon.wait_for(
        r"closed 127\.0\.0\.1:\d+ in=15 out=15 .*reason=drain tls=TLSv1\.3 cipher=\S+ "
        r"sni=localhost$"
    )


def encrypt_key(key: Path, out: Path) -> Path:
    """C{key} encrypted with a pass phrase, as openssl writes it (PKCS#8)."""
    subprocess.run(
        [need_tool("openssl"), "pkey", "-in", str(key), "-aes256",
         "-passout", "pass:secret", "-out", str(out)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    return out


def test_an_encrypted_key_never_blocks_on_a_pass_phrase_prompt(
    tmp_path: Path,
) -> None:
    """On a terminal, OpenSSL asked for the pass phrase: the daemon blocked at
    start, and on SIGHUP in the middle of serving, every client with it; the
    clients asked twice. Now: one line, and a reload refused."""
    ca = private_ca(tmp_path)
    key, cert = issue(tmp_path, ca, "localhost")
    live_key = tmp_path / "live.key"
    shutil.copy(key, live_key)
    locked = encrypt_key(key, tmp_path / "locked.key")
    twistd = str(Path(sys.executable).with_name("twistd"))
    port = free_port()
    serve = [twistd, "-n", "--pidfile=", "echod", "--tls-cert", str(cert),
             "--port", f"ssl:{port}:interface=127.0.0.1"]  # fmt: skip
    refusal = f"the key '{locked}' is encrypted with a pass phrase"
    start = Terminal([*serve, "--tls-key", str(locked)], timeout=20)
    try:
        start.expect_exact(refusal)
        start.expect(pexpect.EOF)
        assert start.wait() == 1
        assert "pass phrase:" not in (start.before or b"").decode()
    finally:
        start.close()
    client = Terminal(
        [ECHOD, "client", "--cacert", str(ca[1]), "--cert", str(cert),
         "--key", str(locked), f"tls:localhost:{port}"],
        timeout=20,
    )  # fmt: skip
    try:
        client.expect_exact(f"echod client: error: {refusal}")
        client.expect(pexpect.EOF)
        assert client.wait() == 2
    finally:
        client.close()
    daemon = Terminal([*serve, "--tls-key", str(live_key)], timeout=20)
    try:
        daemon.expect_exact("listening on ssl:")
        shutil.copy(locked, live_key)
        daemon.process.send_signal(signal.SIGHUP)
        daemon.expect_exact(
            "TLS reload refused, the old certificate stays: "
            f"the key '{live_key}' is encrypted with a pass phrase"
        )
        context = ssl.create_default_context(cafile=str(ca[1]))
        with context.wrap_socket(
            connect("127.0.0.1", port), server_hostname="localhost"
        ) as sock:  # still served: nothing waits for a pass phrase
            assert round_trip(sock, b"after reload") == b"after reload"
    finally:
        daemon.process.send_signal(signal.SIGTERM)
        daemon.close()
