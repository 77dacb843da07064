"""End-to-end: echod behind a real HAProxy (Debian's package), PROXY v1 and v2."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue, private_ca, self_signed
from tests.daemon import ECHOD, Daemon, DaemonStarter
from tests.haproxy import HAProxy, simple_config
from tests.peers import (
    closed_by_peer,
    connect,
    drain,
    echoed_from,
    free_port,
    round_trip,
)
from tests.proxyheaders import proxy_v2, tlv
from tests.scrape import check_metrics_allow, curl, metric, tls_sessions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def haproxies(tmp_path: Path) -> Iterator[list[HAProxy]]:
    started: list[HAProxy] = []
    try:
        yield started
    finally:
        for h in started:
            h.stop()


def in_front(
    haproxies: list[HAProxy], daemon: Daemon, tmp_path: Path, send_proxy: str
) -> int:
    """Start HAProxy in front of C{daemon}'s first listener; its frontend port."""
    frontend = free_port()
    config = simple_config(frontend, daemon.tcp_port(), send_proxy)
    haproxies.append(HAProxy(config, tmp_path, frontend))
    return frontend


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_behind_haproxy_real_client_addresses(
    start_daemon: DaemonStarter,
    haproxies: list[HAProxy],
    tmp_path: Path,
    send_proxy: str,
) -> None:
    listener = "haproxy:tcp:0:interface=127.0.0.1"
    daemon = start_daemon(
        "--port", listener, "--max-per-ip", "1",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    frontend = in_front(haproxies, daemon, tmp_path, send_proxy)
    with connect("127.0.0.1", frontend, source="127.0.0.3") as a:
        assert round_trip(a, b"from .3") == b"from .3"
        # every connection reaches echod from HAProxy's address; the limit
        # must count the client's own
        with connect("127.0.0.1", frontend, source="127.0.0.4") as b:
            assert round_trip(b, b"from .4") == b"from .4"
        with connect("127.0.0.1", frontend, source="127.0.0.3") as again:
            assert closed_by_peer(again)
        assert round_trip(a, b"still") == b"still"
    daemon.wait_for(r"refused 127\.0\.0\.3:\d+: max-per-ip")
    daemon.wait_for(r"closed 127\.0\.0\.4:\d+ in=7 out=7")
    daemon.wait_for(r"closed 127\.0\.0\.3:\d+ in=12 out=12")
    # The listener's count, end to end through HAProxy (it was unit-tested
    # only): the connections served, as echod_connections_total counts them,
    # and not the one refused after its header. (HAProxy's own start-up
    # probe of its frontend may reach echod too, as an empty connection.)
    _, text = curl(f"http://{daemon.metrics_address()}/metrics")
    served = metric(text, f'echod_listener_connections_total{{endpoint="{listener}"}}')
    assert served == metric(text, "echod_connections_total") in (2, 3), text
    assert metric(text, 'echod_connections_refused_total{reason="max-per-ip"}') == 1


@pytest.mark.parametrize(
    "server_options",
    [
        "send-proxy",  # TLS passes through HAProxy, after the header
        "send-proxy-v2",
        "ssl verify required ca-file {cert} verifyhost localhost send-proxy-v2",
    ],
)
def test_tls_behind_haproxy_gets_the_header_first_then_echods_tls(
    start_daemon: DaemonStarter,
    haproxies: list[HAProxy],
    tmp_path: Path,
    server_options: str,
) -> None:
    """HAProxy sends the PROXY header in clear, then TLS (its own, or the
    client's passed through). echod read the header inside TLS, as Twisted's
    haproxy:ssl: does, so no HAProxy could reach it; and that listener had
    Twisted's TLS, not echod's profile (--tls-min-version 1.3 gave TLS 1.2)."""
    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", "haproxy:ssl:0:interface=127.0.0.1",
        "--tls-cert", str(cert), "--tls-key", str(key), "--tls-min-version", "1.3",
    )  # fmt: skip
    options = server_options.format(cert=cert)
    frontend = in_front(haproxies, daemon, tmp_path, options)
    if " ssl " in f" {options} ":  # HAProxy speaks TLS to echod; the client, plain
        with connect("127.0.0.1", frontend, source="127.0.0.3") as sock:
            assert round_trip(sock, b"through") == b"through"
    else:
        context = ssl.create_default_context(cafile=str(cert))
        with (
            connect("127.0.0.1", frontend, source="127.0.0.3") as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            assert sock.version() == "TLSv1.3"
            assert round_trip(sock, b"through") == b"through"
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with connect("127.0.0.1", frontend) as raw, pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="localhost")
    daemon.wait_for(r"closed 127\.0\.0\.3:\d+ in=7 out=7")
    assert daemon.stop() in (0, -signal.SIGTERM)
    assert "Traceback" not in daemon.output, daemon.output


def test_tls_terminated_by_haproxy_is_logged_from_the_header_s_tlvs(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """HAProxy ends the client's TLS and tells echod about it in the PROXY v2
    header's TLVs (send-proxy-v2-ssl-cn, ssl-cipher, authority, crc32c): each
    closed line says the host name the client asked for, the version and
    cipher it made with HAProxy, its certificate's name and whether HAProxy
    verified it; /metrics counts them as terminated by the proxy. A header
    whose CRC32C does not match is refused (bad-proxy-header), and the next
    connection is served."""
    ca = private_ca(tmp_path)
    key, cert = issue(tmp_path, ca, "localhost")
    pair = tmp_path / "pair.pem"
    pair.write_bytes(cert.read_bytes() + key.read_bytes())
    client_key, client_cert = issue(tmp_path, ca, "client.test", "DNS:client.test")
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    backend, frontend = daemon.tcp_port(), free_port()
    config = simple_config(
        frontend, backend,
        "send-proxy-v2-ssl-cn proxy-v2-options ssl-cipher,authority,crc32c",
        f"ssl crt {pair} ca-file {ca[1]} verify optional crt-ignore-err all",
    )  # fmt: skip
    haproxies.append(HAProxy(config, tmp_path, frontend))
    (tmp_path / "other").mkdir()
    stranger = issue(tmp_path / "other", private_ca(tmp_path / "other"), "stranger")
    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    for version, message, client, said in (
        (v12, b"twelve", None, ""),
        (v13, b"thirteen", (client_cert, client_key),
         " proxy_client_cn=client.test proxy_client_verified=yes"),
        (v13, b"untrusted", (stranger[1], stranger[0]),  # crt-ignore-err lets it in
         " proxy_client_cn=stranger proxy_client_verified=no"),
    ):  # fmt: skip
        context = ssl.create_default_context(cafile=str(ca[1]))
        context.check_hostname = False  # SNI echo.test, a certificate for localhost
        context.minimum_version = context.maximum_version = version
        if client is not None:
            context.load_cert_chain(*client)
        with (
            connect("127.0.0.1", frontend, source="127.0.0.3") as raw,
            context.wrap_socket(raw, server_hostname="echo.test") as sock,
        ):
            assert round_trip(sock, message) == message
            cipher = (sock.cipher() or ("",))[0]
            if message == b"thirteen":
                _, text = curl(f"http://{daemon.metrics_address()}/metrics")
        n = len(message)
        daemon.wait_for(
            rf"closed 127\.0\.0\.3:\d+ in={n} out={n} duration=\S+ reason=\w+ "
            rf"authority=echo\.test proxy_tls={version.name.replace('_', '.')} "
            rf"proxy_cipher={re.escape(cipher)}{said}$"
        )
    counted = sorted((where, v, n) for where, v, _, n in tls_sessions(text))
    assert counted == [("proxy", "TLSv1.2", 1.0), ("proxy", "TLSv1.3", 1.0)]
    # a v2 header (127.0.0.9:1 to 127.0.0.1:2) with a CRC32C TLV that is wrong
    header = proxy_v2(tlv(0x03, b"\x12\x34\x56\x78"))
    with connect("127.0.0.1", backend) as sock:
        sock.sendall(header + b"never echoed")
        assert closed_by_peer(sock)
    daemon.wait_for(
        r"refused 127\.0\.0\.1:\d+: malformed PROXY header TLVs: a CRC32C that "
        r"does not match"
    )
    with connect("127.0.0.1", frontend) as raw:
        context = ssl.create_default_context(cafile=str(ca[1]))
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert round_trip(sock, b"next") == b"next"


def test_haproxy_s_unique_id_and_alpn_are_in_the_closed_line(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """With proxy-v2-options unique-id, the closed line carries HAProxy's own
    ID for the connection (its log's %ID), so one connection can be found in
    both logs; with ALPN at HAProxy's TLS bind, the protocol the client agreed
    (proxy_alpn=)."""
    key, cert = self_signed(tmp_path)
    pair = tmp_path / "pair.pem"
    pair.write_bytes(cert.read_bytes() + key.read_bytes())
    daemon = start_daemon("--port", "haproxy:tcp:0:interface=127.0.0.1")
    frontend = free_port()
    config = "global\n    log stdout format raw local0\n" + simple_config(
        frontend, daemon.tcp_port(),
        "send-proxy-v2-ssl proxy-v2-options unique-id,crc32c",
        f"ssl crt {pair} alpn echo,x-other",
    ).replace(
        "    default_backend be\n",
        "    default_backend be\n    log global\n"
        "    unique-id-format %{+X}o\\ %ci:%cp_%fi:%fp_%Ts_%rt:%pid\n"
        '    log-format "haproxy-id %ID %B"\n',
    )  # fmt: skip
    haproxy = HAProxy(config, tmp_path, frontend)
    haproxies.append(haproxy)
    context = ssl.create_default_context(cafile=str(cert))
    context.set_alpn_protocols(["echo"])
    with (
        connect("127.0.0.1", frontend) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert sock.selected_alpn_protocol() == "echo"
        assert round_trip(sock, b"find me in both logs") == b"find me in both logs"
    [closed] = daemon.wait_for(
        r"closed 127\.0\.0\.1:\d+ in=20 out=20 .* proxy_alpn=echo proxy_tls=TLSv1\.3 "
        r"unique_id=(\S+)$"
    )
    logged = haproxy.wait_for(r"^haproxy-id \S+ 20$")
    assert logged == [f"haproxy-id {closed[1]} 20"], logged


def test_tls_kinds_from_headers_are_bounded_in_metrics(
    start_daemon: DaemonStarter,
) -> None:
    """A PROXY v2 header names the client's TLS version and cipher in free
    text; 200 connections naming 200 ciphers make at most 64 series (the rest
    count as version and cipher "other"), so neither the daemon's memory nor
    the metric's series grow with what headers say. Every echo is served."""
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1",
        "--metrics", "tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    port = daemon.tcp_port()
    for n in range(200):  # SSL TLV: the client spoke TLS, a version, a cipher
        ssl = b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3") + tlv(0x23, b"CIPHER-%d" % n)
        header = proxy_v2(tlv(0x20, ssl))
        with connect("127.0.0.1", port) as sock:
            sock.sendall(header)
            assert round_trip(sock, b"kind %d" % n) == b"kind %d" % n
    daemon.wait_for(r"closed 127\.0\.0\.9:1 .* proxy_cipher=CIPHER-199$")
    _, text = curl(f"http://{daemon.metrics_address()}/metrics")
    series = tls_sessions(text)
    assert len(series) == 65, series  # 64 kinds and "other"
    assert ("proxy", "other", "other", 136.0) in series


def test_the_client_sends_the_header_itself(
    start_daemon: DaemonStarter, tmp_path: Path
) -> None:
    """echod client and bench --haproxy-protocol / --haproxy-clientip, as
    curl's: straight to echod's haproxy: listeners, no HAProxy between; the
    header before TLS on haproxy:ssl:; every byte back; the daemon sees the
    address the header names."""
    key, cert = self_signed(tmp_path)
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1",
        "--port", "haproxy:ssl:0:interface=127.0.0.1",
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    plain, secure = (int(a.rsplit(":", 1)[1]) for a in daemon.addresses(2))
    data = bytes(range(256)) * 4096  # 1 MiB, piped and half-closed
    for options, target, peer in (
        (["--haproxy-protocol"], f"127.0.0.1:{plain}", r"127\.0\.0\.1"),
        (["--haproxy-clientip", "203.0.113.5"], f"127.0.0.1:{plain}",
         r"203\.0\.113\.5"),
        (["--haproxy-clientip", "203.0.113.6", "--cacert", str(cert)],
         f"tls:localhost:{secure}", r"203\.0\.113\.6"),
    ):  # fmt: skip
        out = subprocess.run([ECHOD, "client", *options, target], input=data,
                             capture_output=True, timeout=60)  # fmt: skip
        assert (out.returncode, out.stderr) == (0, b""), (options, out.stderr)
        assert out.stdout == data, options
        daemon.wait_for(rf"closed {peer}:\d+ in={len(data)} out={len(data)} ")
    bench = subprocess.run(
        [ECHOD, "bench", "--haproxy-clientip", "203.0.113.7", "-c", "2", "-d", "0.5",
         f"127.0.0.1:{plain}"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    assert b"2/2 connections ended cleanly" in bench.stdout
    daemon.wait_for(r"closed 203\.0\.113\.7:\d+ ", count=2)
    for options, says in (
        (["--haproxy-protocol", "-u", f"127.0.0.1:{plain}"],
         "--haproxy-protocol goes with TCP"),
        (["--haproxy-clientip", "::1", "-z", f"127.0.0.1:{plain}"],
         "--haproxy-clientip ::1: the connection is IPv4"),
        (["--haproxy-protocol", "--proxy", "socks5://127.0.0.1:1",
          f"127.0.0.1:{plain}"], "--haproxy-protocol and --proxy cannot go"),
    ):  # fmt: skip
        out = subprocess.run([ECHOD, "client", *options], input=b"x",
                             capture_output=True, timeout=60)  # fmt: skip
        assert out.returncode == 2 and out.stderr.count(b"\n") == 1, (options, out)
        assert says.encode() in out.stderr, out.stderr


def test_half_close_through_haproxy(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    daemon = start_daemon("--port", "haproxy:tcp:0:interface=127.0.0.1")
    frontend = in_front(haproxies, daemon, tmp_path, "send-proxy-v2")
    payload = bytes(range(256)) * 8192  # 2 MiB
    with connect("127.0.0.1", frontend) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock, timeout=30) == payload
    daemon.wait_for(
        rf"closed 127\.0\.0\.1:\d+ in={len(payload)} out={len(payload)} .*reason=eof"
    )


def test_example_config_two_instances_one_stopped(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """deploy/haproxy.cfg as shipped (ports moved): clients served when one stops."""
    ports = {p: free_port() for p in ("7000", "10001", "10002", "9101", "9102")}
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for old, new in ports.items():
        config = config.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        config = config.replace(f"port {old}", f"port {new}")
    daemons = [
        start_daemon(
            "--port",
            f"haproxy:tcp:{ports[echo]}:interface=127.0.0.1",
            "--metrics",
            f"tcp:{ports[metrics]}:interface=127.0.0.1",
            "--drain-timeout",
            "2",
        )
        for echo, metrics in (("10001", "9101"), ("10002", "9102"))
    ]
    for d in daemons:
        d.tcp_port()
    frontend = ports["7000"]
    haproxies.append(HAProxy(config, tmp_path, frontend))
    time.sleep(2.5)  # both pass their health checks (rise 2, inter 1s)

    def serve_clients(n: int) -> None:
        for i in range(n):
            with connect("127.0.0.1", frontend) as sock:
                message = b"client %d" % i
                assert round_trip(sock, message) == message

    serve_clients(20)
    served = [len(d.wait_for(r"closed .* reason=eof", count=1)) for d in daemons]
    assert all(served), "leastconn spread the clients over both instances"
    assert daemons[0].stop() in (0, -signal.SIGTERM)
    serve_clients(30)  # all served by the instance still up
    daemons[1].wait_for(r"closed .* reason=eof", count=20)


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_a_client_without_an_ip_address_behind_haproxy(
    start_daemon: DaemonStarter,
    haproxies: list[HAProxy],
    tmp_path: Path,
    send_proxy: str,
) -> None:
    """A client of HAProxy's UNIX-socket frontend has no IP address: HAProxy
    sends the short C{PROXY UNKNOWN\\r\\n} (v1), which echod refused as
    malformed (Twisted's parser wants the long form), or a v2 header."""
    daemon = start_daemon("--port", "haproxy:tcp:0:interface=127.0.0.1")
    frontend, front_socket = free_port(), tmp_path / "front.sock"
    config = simple_config(frontend, daemon.tcp_port(), send_proxy)
    config += f"frontend local\n    bind {front_socket}\n    default_backend be\n"
    haproxies.append(HAProxy(config, tmp_path, frontend))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(front_socket))
        assert round_trip(sock, b"no address") == b"no address"
        sock.shutdown(socket.SHUT_WR)
        assert drain(sock) == b""
    line = daemon.wait_for(r"closed (\S+) in=10 out=10 .*reason=eof")[0]
    print(f"{send_proxy}: logged as {line[1]}")
    assert "refused" not in daemon.output


def test_health_checks_through_the_proxy_protocol_to_metrics(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """--metrics haproxy:tcp:PORT: the header was never read, so HAProxy's
    check (check-send-proxy) got 400 and took the instance out of service."""
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1",
        "--metrics", "haproxy:tcp:0:interface=127.0.0.1",
    )  # fmt: skip
    echo_port = daemon.tcp_port()
    metrics = daemon.metrics_address().rsplit(":", 1)[1]
    frontend = free_port()
    config = simple_config(
        frontend, echo_port,
        f"send-proxy-v2 check port {metrics} check-send-proxy inter 200ms "
        "rise 1 fall 1",
    ).replace(
        "backend be\n",
        "backend be\n    option httpchk\n    http-check send meth GET uri /healthz\n"
        "    http-check expect status 200\n",
    )  # fmt: skip
    haproxies.append(HAProxy(config, tmp_path, frontend))
    time.sleep(1.5)  # several checks: one failing one takes it out (fall 1)
    for i in range(5):
        with connect("127.0.0.1", frontend) as sock:
            assert round_trip(sock, b"checked %d" % i) == b"checked %d" % i


def test_metrics_allow_matches_the_client_behind_haproxy(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """--metrics haproxy:tcp:PORT --metrics-allow: the scraper the header names
    is checked, not HAProxy (which was, and refused every scrape through it,
    127.0.0.1 not being listed). curl from 127.0.0.5 through HAProxy scrapes;
    from 127.0.0.6 it is closed, logged by its own address and counted."""
    daemon = start_daemon(
        "--port", "tcp:0:interface=127.0.0.1",
        "--metrics", "haproxy:tcp:0:interface=127.0.0.1",
        "--metrics-allow", "127.0.0.5",
    )  # fmt: skip
    metrics = int(daemon.metrics_address().rsplit(":", 1)[1])
    frontend = free_port()
    haproxies.append(
        HAProxy(simple_config(frontend, metrics, "send-proxy"), tmp_path, frontend)
    )
    url = f"http://127.0.0.1:{frontend}/metrics"
    check_metrics_allow(daemon, url, allowed="127.0.0.5", refused="127.0.0.6")


def test_allow_and_deny_match_the_client_behind_haproxy(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """Every connection reaches echod from HAProxy's address (127.0.0.1, here
    denied); --allow and --deny match the client's own, from the header."""
    daemon = start_daemon(
        "--port", "haproxy:tcp:0:interface=127.0.0.1",
        "--allow", "127.0.0.0/8", "--deny", "127.0.0.1,127.0.0.4",
    )  # fmt: skip
    frontend = in_front(haproxies, daemon, tmp_path, "send-proxy-v2")
    assert echoed_from("127.0.0.3", "127.0.0.1", frontend)
    assert not echoed_from("127.0.0.4", "127.0.0.1", frontend)
    daemon.wait_for(r"closed 127\.0\.0\.3:\d+ in=14 out=14")
    daemon.wait_for(r"refused 127\.0\.0\.4:\d+: denied")


def test_the_idle_timeout_is_a_normal_end_in_haproxy_s_log(
    start_daemon: DaemonStarter, haproxies: list[HAProxy], tmp_path: Path
) -> None:
    """echod's idle close is a server's ordinary close: HAProxy's log ends the
    session normally (C{--}); the reset it was ended it as a server abort
    (C{SD}, an error in HAProxy's counters)."""
    daemon = start_daemon("--port", "tcp:0:interface=127.0.0.1", "--idle-timeout", "1")
    frontend = free_port()
    config = "global\n    log stdout format raw local0\n" + simple_config(
        frontend, daemon.tcp_port(), ""
    ).replace("defaults\n", "defaults\n    log global\n    option tcplog\n")
    haproxy = HAProxy(config, tmp_path, frontend)
    haproxies.append(haproxy)
    with connect("127.0.0.1", frontend) as sock:
        assert round_trip(sock, b"then idle") == b"then idle"
        assert closed_by_peer(sock, timeout=10)
    daemon.wait_for(r"closed \S+ in=9 out=9 .*reason=idle-timeout")
    # HAProxy logs the session as it releases it, after the client's close:
    # wait for the line (our session: 9 bytes back), not for HAProxy's end.
    logged = haproxy.wait_for(r" fe be/echod .* 9 ")
    assert len(logged) == 1, logged
    assert " 9 -- " in logged[0], logged
