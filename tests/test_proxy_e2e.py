"""End-to-end: ``--proxy`` (and fetch's ``-x``) through Debian's tinyproxy
(HTTP CONNECT), Dante (SOCKS5) and microsocks (SOCKS5 with a user name and
password) to a real daemon and nginx, beside OpenBSD nc's ``-X``/``-x`` and
curl's ``-x``."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from echod.certs import make_certificates
from tests.certs import issue, private_ca
from tests.daemon import ECHOD, DaemonStarter, need_tool
from tests.haproxy import HAProxy, simple_config
from tests.nginx import Nginx
from tests.peers import free_port
from tests.proxies import PASSWORD, dante, microsocks, tinyproxy

LOCAL = "tcp:0:interface=127.0.0.1"


def echod(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run ``echod ARGS``."""
    return subprocess.run([ECHOD, *args], input=stdin, capture_output=True, timeout=60)


FIGURES = "%{http_code} %{size_download} %{remote_ip} %{remote_port}"
"""The -w figures echod fetch and curl are compared on."""


def fetch_beside_curl(
    proxy: str, url: str, tmp_path: Path, *options: str, curl_options: str = ""
) -> bytes:
    """echod fetch -x PROXY URL beside curl's (with C{curl_options} too): both
    succeed, with the same body and the same L{FIGURES}; those figures."""
    ours = echod("fetch", "-s", "-x", proxy, *options, "-o", str(tmp_path / "ours"),
                 "-w", FIGURES, url)  # fmt: skip
    theirs = subprocess.run(
        [need_tool("curl"), "-s", "-x", proxy, *curl_options.split(), *options,
         "-o", str(tmp_path / "theirs"), "-w", FIGURES, url],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert (ours.returncode, theirs.returncode) == (0, 0), (proxy, url, ours, theirs)
    assert ours.stdout == theirs.stdout, (proxy, url, ours, theirs)
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "theirs").read_bytes()
    return ours.stdout


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[int]:
    """tinyproxy, with Basic authentication for the user echo."""
    with tinyproxy(tmp_path, user="echo") as port:
        yield port


@pytest.fixture
def socks_proxy(tmp_path: Path) -> Iterator[int]:
    """Dante, no authentication."""
    with dante(tmp_path) as port:
        yield port


@pytest.fixture
def https_proxy(http_proxy: int, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An https:// proxy: Debian's HAProxy ending TLS (a certificate for
    localhost from a private CA) in front of tinyproxy; its port and the CA."""
    (tmp_path / "https-proxy").mkdir()
    ca = private_ca(tmp_path / "https-proxy")
    key, cert = issue(tmp_path / "https-proxy", ca, "localhost")
    pair = tmp_path / "https-proxy" / "pair.pem"
    pair.write_bytes(cert.read_bytes() + key.read_bytes())
    frontend = free_port()
    config = simple_config(frontend, http_proxy, "", f"ssl crt {pair}")
    haproxy = HAProxy(config, tmp_path / "https-proxy", frontend)
    try:
        yield frontend, ca[1]
    finally:
        haproxy.stop()


def test_through_an_https_proxy_as_curl(
    start_daemon: DaemonStarter, https_proxy: tuple[int, Path], tmp_path: Path
) -> None:
    """https:// proxies, as curl's: TLS to the proxy, verified against its name
    (--proxy-cacert, or --proxy-insecure with a warning), the CONNECT inside it,
    and the target's own TLS inside the tunnel. The probe, -z over TLS in TLS,
    and fetch beside curl (plain and https pages from nginx: the same bodies and
    -w figures); an untrusted proxy fails TLS for both (7; curl 60)."""
    port, proxy_ca = https_proxy
    proxy = f"https://echo:{PASSWORD}@localhost:{port}"
    trust = ("--proxy-cacert", str(proxy_ca))
    echo = start_daemon("--port", LOCAL).tcp_port()
    probe = echod("client", "--proxy", proxy, *trust, "--count", "2",
                  f"127.0.0.1:{echo}")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert f"(via https://localhost:{port}): seq=2 ".encode() in probe.stdout
    make_certificates(tmp_path, ["localhost"])
    tls_echo = start_daemon(
        "--port", "ssl:0:interface=127.0.0.1", "--tls-cert",
        str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
    ).tcp_port()  # fmt: skip
    inner = echod("client", "-zv", "--proxy", proxy, *trust, "--cacert",
                  str(tmp_path / "ca.pem"), f"tls:localhost:{tls_echo}")  # fmt: skip
    assert inner.returncode == 0, inner.stderr
    assert b", TLS verified (TLSv1.3, " in inner.stderr
    insecure = echod("client", "-z", "--proxy", proxy, "--proxy-insecure",
                     f"127.0.0.1:{echo}")  # fmt: skip
    assert insecure.returncode == 0, insecure.stderr
    assert b"--proxy-insecure: the proxy's certificate and name are NOT verified" in (
        insecure.stderr
    )
    untrusted = echod("client", "-z", "--proxy", proxy, f"127.0.0.1:{echo}")
    assert untrusted.returncode == 7 and untrusted.stderr.count(b"\n") == 1
    assert (
        f"the proxy https://localhost:{port}: TLS failure: certificate verify "
        "failed: unable to get local issuer certificate"
    ).encode() in untrusted.stderr
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(random.Random(11).randbytes(1 << 20))
    (root / "index.html").write_bytes(b"<html>inside</html>\n")
    site_ca = private_ca(tmp_path, "site-ca")
    server = Nginx(tmp_path, root, issue(tmp_path, site_ca, "localhost"))
    try:
        for url in (
            f"http://127.0.0.1:{server.port}/big.bin",
            f"https://localhost:{server.tls_port}/index.html",
        ):
            site = ("--cacert", str(site_ca[1]))
            fetch_beside_curl(
                proxy, url, tmp_path, *trust, *site, curl_options="--proxytunnel"
            )
        url = f"http://127.0.0.1:{server.port}/big.bin"
        shown = echod("fetch", "-v", "-x", proxy, *trust, "-o", "/dev/null", url)
        assert shown.returncode == 0, shown.stderr
        said = shown.stderr.decode().splitlines()
        tls = next(i for i, x in enumerate(said) if x.startswith("* TLS to the proxy"))
        assert said[tls].startswith("* TLS to the proxy: TLSv1.3, "), said
        assert said[tls + 1].startswith("> CONNECT 127.0.0.1:"), said  # then inside
        ours = echod("fetch", "-x", proxy, "-o", "/dev/null", url)
        theirs = subprocess.run([need_tool("curl"), "-s", "-x", proxy, url],
                                capture_output=True, timeout=60)  # fmt: skip
        assert (ours.returncode, theirs.returncode) == (7, 60), (ours, theirs)
    finally:
        server.stop()
    plain = echod("client", "--proxy", "http://h:1", "--proxy-cacert", "ca.pem",
                  "h:7")  # fmt: skip
    assert plain.returncode == 2
    assert b"--proxy-cacert applies to https:// proxies" in plain.stderr


def test_probe_through_each_kind_of_proxy(
    start_daemon: DaemonStarter, http_proxy: int, socks_proxy: int
) -> None:
    """The same probe through an HTTP proxy (with its credentials) and
    through SOCKS5, the name looked up here (socks5) or by the proxy
    (socks5h); each line says which proxy it went through."""
    port = start_daemon("--port", LOCAL).tcp_port()
    for proxy in (
        f"http://echo:{PASSWORD}@127.0.0.1:{http_proxy}",
        f"socks5://127.0.0.1:{socks_proxy}",
        f"socks5h://127.0.0.1:{socks_proxy}",
    ):
        out = echod("client", "--proxy", proxy, "--count", "3", "--size", "1000",
                    f"localhost:{port}")  # fmt: skip
        text = out.stdout.decode()
        assert out.returncode == 0, (proxy, out.stderr)
        shown = proxy.replace(f"echo:{PASSWORD}@", "")  # never the password
        assert f"1000 bytes from localhost:{port} (via {shown}): seq=3 " in text
        assert "3 sent, 3 echoed intact, 0 wrong, 0 lost" in text


def test_pipe_through_socks5_byte_exact_as_nc(
    start_daemon: DaemonStarter, socks_proxy: int
) -> None:
    """Dante passes a half-close on: every byte comes back, as with nc -X 5."""
    port = start_daemon("--port", LOCAL).tcp_port()
    data = random.Random(5).randbytes(3 << 20)
    proxy = f"socks5://127.0.0.1:{socks_proxy}"
    out = echod("client", "--proxy", proxy, "127.0.0.1", str(port), stdin=data)
    assert (out.returncode, out.stderr) == (0, b"")
    assert out.stdout == data
    nc = subprocess.run(
        [need_tool("nc"), "-N", "-X", "5", "-x", f"127.0.0.1:{socks_proxy}",
         "127.0.0.1", str(port)],
        input=data, capture_output=True, timeout=60,
    )  # fmt: skip
    assert nc.stdout == data


def test_tls_end_to_end_through_the_tunnel(
    start_daemon: DaemonStarter, http_proxy: int, socks_proxy: int, tmp_path: Path
) -> None:
    """TLS runs inside the tunnel, verified against the target's name; -z
    proves tunnel and handshake; bench verifies every byte through it."""
    make_certificates(tmp_path, ["localhost"])
    daemon = start_daemon(
        "--port", "ssl:0:interface=127.0.0.1", "--tls-cert",
        str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.key"),
    )  # fmt: skip
    port = daemon.tcp_port()
    ca = ("--cacert", str(tmp_path / "ca.pem"))
    proxy = f"http://echo:{PASSWORD}@127.0.0.1:{http_proxy}"
    probe = echod("client", "--proxy", proxy, *ca, "--count", "2",
                  f"tls:localhost:{port}")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    zero = echod("client", "-zv", "--proxy", f"socks5h://127.0.0.1:{socks_proxy}",
                 *ca, f"tls:localhost:{port}")  # fmt: skip
    assert zero.returncode == 0, zero.stderr
    assert b"(via socks5h://127.0.0.1:" in zero.stderr
    assert b", TLS verified (TLSv1.3, " in zero.stderr, zero.stderr
    untrusted = echod("client", "-z", "--proxy", proxy, f"tls:localhost:{port}")
    assert untrusted.returncode == 7, untrusted.stderr  # the server's, not the proxy's
    bench = echod("bench", "--proxy", f"socks5://127.0.0.1:{socks_proxy}", *ca,
                  "-c", "4", "-d", "1", f"tls:localhost:{port}")  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    assert b"every byte back, in order; 4/4 connections ended cleanly" in bench.stdout
    # short connections: a CONNECT tunnel and a TLS handshake inside it, each
    short = echod("bench", "--short", "--proxy", proxy, *ca, "-c", "2", "-d", "1",
                  "--json", f"tls:localhost:{port}")  # fmt: skip
    assert short.returncode == 0, short.stdout + short.stderr
    f = json.loads(short.stdout)
    assert f["ok"] and f["clean_connections"] == f["opened_connections"] > 2, f


def test_what_the_proxy_says_no_to(
    start_daemon: DaemonStarter, http_proxy: int, socks_proxy: int
) -> None:
    """Each refusal in one line, with the proxy's own words, and the exit
    code of what failed: 4 refused, 3 a name the proxy could not find."""
    port = start_daemon("--port", LOCAL).tcp_port()
    closed = free_port()
    http = f"127.0.0.1:{http_proxy}"
    for proxy, target, code, says in (
        (http, f"127.0.0.1:{port}", 4,
         "the proxy wants credentials: 407 Proxy Authentication Required"),
        (f"http://echo:{PASSWORD}@{http}", f"127.0.0.1:{closed}", 4,
         "the proxy refused the tunnel: 500 Unable to connect"),
        (f"socks5://127.0.0.1:{socks_proxy}", f"127.0.0.1:{closed}", 4,
         "the SOCKS5 proxy refused the tunnel: connection refused by the target"),
        (f"socks5://127.0.0.1:{socks_proxy}", "no-such-host.invalid:7", 3,
         "cannot resolve the name"),
        (f"socks5://127.0.0.1:{closed}", f"127.0.0.1:{port}", 4,
         f"the proxy socks5://127.0.0.1:{closed}: connection refused"),
        (f"127.0.0.1:{port}", f"127.0.0.1:{port}", 4,  # an echo is no proxy
         "not an HTTP proxy: it answered 'CONNECT 127.0.0.1:"),
    ):  # fmt: skip
        out = echod("client", "-z", "--proxy", proxy, target)
        err = out.stderr.decode()
        assert out.returncode == code and err.count("\n") == 1, (proxy, target, err)
        assert f"echod client: {target}: {says}" in err, err
    for options, says in (
        (["--proxy", "ftp://h:1", "h:7"], "echod speaks http://, https://, socks5"),
        (["--proxy", "socks4://h:1", "[::1]:7"], "a SOCKS4 proxy takes IPv4 addresses"),
        (["--proxy", "socks5://:p@h", "h:7"], "a SOCKS5 user name has 1 to 255"),
        (["--proxy", "h:1", "unix:path=/s"], "--proxy goes with HOST:PORT"),
        (["--proxy", "h:1", "-u", "h:7"], "--proxy tunnels TCP"),
        (["--proxy", "[::1]:1", "-4", "h:7"], "-4 asks for IPv4, and ::1 is an IPv6"),
    ):
        out = echod("client", *options)
        err = out.stderr.decode()
        assert out.returncode == 2 and err.count("\n") == 1, (options, err)
        assert says in err, err


def test_fetch_through_a_proxy_as_curl(
    http_proxy: int, socks_proxy: int, tmp_path: Path
) -> None:
    """echod fetch -x beside curl -x --proxytunnel, through both proxies to
    Debian's nginx, plain and TLS: the same body, the same -w figures
    (remote_ip and remote_port are the proxy's, as curl's)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(random.Random(7).randbytes(2 << 20))
    (root / "index.html").write_bytes(b"<html>through</html>\n")
    ca = private_ca(tmp_path)
    server = Nginx(tmp_path, root, issue(tmp_path, ca, "localhost", "IP:127.0.0.1"))
    try:
        for proxy in (
            f"http://echo:{PASSWORD}@127.0.0.1:{http_proxy}",
            f"socks5h://127.0.0.1:{socks_proxy}",
        ):
            for url in (
                f"http://127.0.0.1:{server.port}/big.bin",
                f"https://127.0.0.1:{server.tls_port}/index.html",
            ):
                fetch_beside_curl(proxy, url, tmp_path, "--cacert", str(ca[1]),
                                  curl_options="--proxytunnel")  # fmt: skip
        socks = f"socks5://127.0.0.1:{socks_proxy}"
        page = f"http://127.0.0.1:{server.port}/"
        verbose = echod("fetch", "-v", "-x", socks, "-o", "/dev/null", page)
        assert verbose.returncode == 0, verbose.stderr
        assert (
            f"connected to 127.0.0.1:{socks_proxy} (the proxy socks5://127.0.0.1:"
            f"{socks_proxy})".encode()
        ) in verbose.stderr
        # -v shows what opened the tunnel: SOCKS5's bytes, in hex
        assert b"* SOCKS5 sent 05 01 00 05 01 00 01 7f 00 00 01 " in verbose.stderr
        assert b"* SOCKS5 received 05 00 05 00 00 " in verbose.stderr
        http = f"http://echo:{PASSWORD}@127.0.0.1:{http_proxy}"
        shown = echod("fetch", "-v", "-x", http, "-o", "/dev/null", page)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stderr.decode().splitlines()
        assert lines[1:3] == [
            f"> CONNECT 127.0.0.1:{server.port} HTTP/1.1",
            f"> Host: 127.0.0.1:{server.port}",
        ], lines  # then the credentials, as sent
        assert "< HTTP/1.0 200 Connection established" in lines, lines
        refused = echod("fetch", "-x", f"127.0.0.1:{http_proxy}",
                        f"http://127.0.0.1:{server.port}/")  # fmt: skip
        assert refused.returncode == 4
        assert b"the proxy wants credentials: 407" in refused.stderr
        both = echod("fetch", "-x", "h:1", "--unix-socket", "/s", "http://x/")
        assert both.returncode == 2 and b"cannot go together" in both.stderr
    finally:
        server.stop()


def test_fetch_socks5_looks_up_the_target_with_resolve_as_curl(
    socks_proxy: int, tmp_path: Path
) -> None:
    """socks5:// looks the target up here, so --resolve gives its address, as
    curl's does: a name no resolver knows reaches nginx through Dante, and the
    proxy is asked for the address given (SOCKS5 address type 01)."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_bytes(b"<html>resolved</html>\n")
    server = Nginx(tmp_path, root)
    try:
        url = f"http://through.invalid:{server.port}/index.html"
        resolve = f"through.invalid:{server.port}:127.0.0.1"
        proxy = f"socks5://127.0.0.1:{socks_proxy}"
        fmt = "%{http_code} %{size_download}"
        ours = echod("fetch", "-s", "-v", "-x", proxy, "--resolve", resolve,
                     "-o", str(tmp_path / "ours"), "-w", fmt, url)  # fmt: skip
        theirs = subprocess.run(
            [need_tool("curl"), "-s", "-x", proxy, "--resolve", resolve,
             "-o", str(tmp_path / "theirs"), "-w", fmt, url],
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert (ours.returncode, theirs.returncode) == (0, 0), (ours, theirs)
        assert ours.stdout == theirs.stdout == b"200 22", (ours, theirs)
        assert (tmp_path / "ours").read_bytes() == b"<html>resolved</html>\n"
        assert b"* through.invalid is 127.0.0.1\n" in ours.stderr, ours.stderr
        asked = (
            f"05 01 00 01 7f 00 00 01 {server.port >> 8:02x} {server.port & 255:02x}"
        )
        assert f"* SOCKS5 sent 05 01 00 {asked}".encode() in ours.stderr, ours.stderr
        unknown = echod("fetch", "-x", proxy, url)  # without --resolve
        assert unknown.returncode == 3, unknown.stderr
        assert unknown.stderr.count(b"\n") == 1, unknown.stderr
        assert b"cannot resolve the name 'through.invalid'" in unknown.stderr
    finally:
        server.stop()


@pytest.fixture
def socks_with_password() -> Iterator[int]:
    """microsocks, asking for the user echo's password."""
    with microsocks("echo") as port:
        yield port


def test_socks5_user_name_and_password_as_curl(
    start_daemon: DaemonStarter, socks_with_password: int
) -> None:
    """RFC 1929 through microsocks: the probe and bench go through with the
    URL's credentials (never shown); a wrong password, and none at all, are
    each refused in one line (exit 4), where curl refuses them too."""
    port = start_daemon("--port", LOCAL).tcp_port()
    at = f"127.0.0.1:{socks_with_password}"
    good = f"socks5h://echo:{PASSWORD}@{at}"
    probe = echod("client", "--proxy", good, "--count", "3", f"localhost:{port}")
    assert probe.returncode == 0, probe.stderr
    text = probe.stdout.decode()
    assert f"(via socks5h://{at}): seq=3 " in text and PASSWORD not in text
    assert "3 sent, 3 echoed intact, 0 wrong, 0 lost" in text
    bench = echod("bench", "--proxy", f"socks5://echo:{PASSWORD}@{at}",
                  "-c", "4", "-d", "1", f"localhost:{port}")  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    assert b"every byte back, in order; 4/4 connections ended cleanly" in bench.stdout
    for proxy, says, curl_says in (
        (f"socks5h://echo:wrong@{at}",
         "the SOCKS5 proxy refused the user name and password (status ",
         b"User was rejected by the SOCKS5 server"),
        (f"socks5h://{at}",
         "the SOCKS5 proxy wants authentication (--proxy socks5://USER:PASSWORD@...)",
         b"No authentication method was acceptable"),
    ):  # fmt: skip
        out = echod("client", "-z", "--proxy", proxy, f"localhost:{port}")
        err = out.stderr.decode()
        assert out.returncode == 4 and err.count("\n") == 1, (proxy, err)
        assert f"echod client: localhost:{port}: {says}" in err, err
        curl = subprocess.run(
            [need_tool("curl"), "-sS", "-x", proxy, f"http://localhost:{port}/"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert curl.returncode == 97 and curl_says in curl.stderr, curl  # CURLE_PROXY


def test_fetch_through_socks5_with_a_password_as_curl(
    socks_with_password: int, tmp_path: Path
) -> None:
    """echod fetch -x socks5h://USER:PASSWORD@ beside curl's, through
    microsocks to nginx: the same body and -w figures; -v shows every byte
    that opened the tunnel but the password's."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(random.Random(9).randbytes(1 << 20))
    server = Nginx(tmp_path, root)
    proxy = f"socks5h://echo:{PASSWORD}@127.0.0.1:{socks_with_password}"
    url = f"http://127.0.0.1:{server.port}/big.bin"
    try:
        figures = fetch_beside_curl(proxy, url, tmp_path)
        assert figures.startswith(b"200 1048576 127.0.0.1 ")
        assert (tmp_path / "ours").read_bytes() == (root / "big.bin").read_bytes()
        shown = echod("fetch", "-v", "-x", proxy, "-o", "/dev/null", url)
        assert shown.returncode == 0, shown.stderr
        user = b"echo".hex(" ")
        masked = " ".join(["xx"] * len(PASSWORD))
        sent = f"* SOCKS5 sent 05 02 00 02 01 04 {user} {len(PASSWORD):02x} {masked} "
        assert sent.encode() in shown.stderr, shown.stderr
        assert b"* SOCKS5 received 05 02 01 00 05 00 " in shown.stderr, shown.stderr
        assert PASSWORD.encode().hex(" ").encode() not in shown.stderr
        assert PASSWORD.encode() not in shown.stderr
    finally:
        server.stop()


def test_socks4_through_dante_as_nc_and_curl(
    start_daemon: DaemonStarter, socks_proxy: int, tmp_path: Path
) -> None:
    """SOCKS4 through Dante: nc's -X 4 command line piping the same bytes as
    OpenBSD nc's; the probe with a user ID; a refusal in Dante's words; echod
    fetch -x socks4:// beside curl's to nginx (the same body and -w figures);
    an IPv6 target refused by both."""
    port = start_daemon("--port", LOCAL).tcp_port()
    data = random.Random(4).randbytes(1 << 20)
    socks = ["-X", "4", "-x", f"127.0.0.1:{socks_proxy}", "localhost", str(port)]
    ours = echod("client", *socks, stdin=data)
    nc = subprocess.run([need_tool("nc"), "-N", *socks], input=data,
                        capture_output=True, timeout=60)  # fmt: skip
    assert ours.returncode == 0 and ours.stdout == nc.stdout == data, ours.stderr
    proxy = f"socks4://127.0.0.1:{socks_proxy}"
    probe = echod("client", "--proxy", f"socks4://me@127.0.0.1:{socks_proxy}",
                  "--count", "2", f"localhost:{port}")  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert f"(via {proxy}): seq=2 ".encode() in probe.stdout
    refused = echod("client", "-z", "--proxy", proxy, f"127.0.0.1:{free_port()}")
    assert refused.returncode == 4 and refused.stderr.count(b"\n") == 1
    assert b"the SOCKS4 proxy refused the tunnel: request rejected or failed" in (
        refused.stderr
    )
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(random.Random(3).randbytes(1 << 20))
    server = Nginx(tmp_path, root)
    try:
        url = f"http://localhost:{server.port}/big.bin"
        figures = fetch_beside_curl(proxy, url, tmp_path)
        assert figures.startswith(b"200 1048576 127.0.0.1 ")
        assert (tmp_path / "ours").read_bytes() == (root / "big.bin").read_bytes()
        shown = echod("fetch", "-v", "-x", proxy, "-o", "/dev/null", url)
        asked = f"04 01 {server.port >> 8:02x} {server.port & 255:02x} 7f 00 00 01 00"
        assert f"* SOCKS4 sent {asked}\n".encode() in shown.stderr, shown.stderr
        assert b"* SOCKS4 received 00 5a " in shown.stderr, shown.stderr
        six = f"http://[::1]:{server.port}/big.bin"
        ours = echod("fetch", "-x", proxy, six)
        theirs = subprocess.run([need_tool("curl"), "-sS", "-x", proxy, six],
                                capture_output=True, timeout=60)  # fmt: skip
        assert ours.returncode == 2 and ours.stderr.count(b"\n") == 1, ours.stderr
        assert b"a SOCKS4 proxy takes IPv4 addresses, not ::1" in ours.stderr
        assert theirs.returncode == 97, (
            theirs
        )  # "SOCKS4 connection to ::1 not supported"
    finally:
        server.stop()


def test_proxy_user_as_curl(
    start_daemon: DaemonStarter, http_proxy: int, tmp_path: Path
) -> None:
    """--proxy-user USER:PASSWORD (fetch's -U), curl's: the credentials as
    they are, a password with '@' and ':' in it not percent-encoded, split at
    the first colon; beside curl -U through microsocks and tinyproxy. Without
    a password and a terminal to ask on, one line, exit 2."""
    password = "p@ss:w0rd"
    root = tmp_path / "www"
    root.mkdir()
    (root / "page.html").write_bytes(b"<html>as curl</html>\n")
    server = Nginx(tmp_path, root)
    port = start_daemon("--port", LOCAL).tcp_port()
    try:
        with microsocks("echo", password) as socks:
            proxy = f"socks5h://127.0.0.1:{socks}"
            user = ("--proxy-user", f"echo:{password}")
            probe = echod("client", "--proxy", proxy, *user, "--count", "2",
                          f"localhost:{port}")  # fmt: skip
            assert probe.returncode == 0, probe.stderr
            assert password.encode() not in probe.stdout + probe.stderr
            url = f"http://127.0.0.1:{server.port}/page.html"
            fetch_beside_curl(proxy, url, tmp_path, "-U", f"echo:{password}")
            wrong = echod("fetch", "-x", proxy, "-U", "echo:p@ss", url)
            assert wrong.returncode == 4, wrong.stderr
        http = f"http://127.0.0.1:{http_proxy}"
        fetch_beside_curl(http, url, tmp_path, "-U", f"echo:{PASSWORD}",
                          curl_options="--proxytunnel")  # fmt: skip
    finally:
        server.stop()
    for options, says in (
        (["--proxy", http, "--proxy-user", "echo", f"127.0.0.1:{port}"],
         "--proxy-user echo: no password, and no terminal to ask for it"),
        (["--proxy-user", "echo:x", f"127.0.0.1:{port}"],
         "--proxy-user applies to --proxy"),
        (["--proxy", "socks4://127.0.0.1:1", "--proxy-user", "me:x", "h:7"],
         "SOCKS4 takes a user ID, and no password"),
    ):  # fmt: skip
        out = echod("client", "-z", *options)
        assert out.returncode == 2 and out.stderr.count(b"\n") == 1, (options, out)
        assert says.encode() in out.stderr, out.stderr


def test_nc_letters_for_the_proxy(
    start_daemon: DaemonStarter, socks_proxy: int, tmp_path: Path
) -> None:
    """nc's -x HOST:PORT (SOCKS5, the name to the proxy) and -X connect, the
    same command lines as OpenBSD nc's, the same bytes back."""
    port = start_daemon("--port", LOCAL).tcp_port()
    data = random.Random(9).randbytes(1 << 20)
    socks = ["-x", f"127.0.0.1:{socks_proxy}", "localhost", str(port)]
    ours = echod("client", *socks, stdin=data)
    nc = subprocess.run([need_tool("nc"), "-N", *socks], input=data,
                        capture_output=True, timeout=60)  # fmt: skip
    assert ours.returncode == 0 and ours.stdout == nc.stdout == data, ours.stderr
    with tinyproxy(tmp_path) as http_port:  # no credentials asked
        probe = echod("client", "-X", "connect", "-x", f"127.0.0.1:{http_port}",
                      "--count", "2", f"127.0.0.1:{port}")  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        assert f"(via http://127.0.0.1:{http_port})".encode() in probe.stdout
    for options, says in (
        (
            ["-X", "4a", "-x", "p:1", "h:7"],
            "-X 4a: echod speaks 5 (SOCKS5), 4 (SOCKS4)",
        ),
        (["-X", "connect", "h:7"], "-X names the protocol of the proxy -x gives"),
        (["-x", "p:1", "--proxy", "p:1", "h:7"], "--proxy and -x cannot go together"),
        (["-x", "socks5://p:1", "h:7"], "-x takes HOST:PORT, not a URL"),
    ):
        out = echod("client", *options)
        err = out.stderr.decode()
        assert out.returncode == 2 and err.count("\n") == 1, (options, err)
        assert says in err, err
