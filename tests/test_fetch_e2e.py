"""End-to-end: ``echod fetch`` against real servers on loopback.

nginx from Debian (static files, a large file, chunked SSI pages, redirects,
TLS with a private CA), Python's http.server (HTTP/1.0, close-delimited),
twisted.web (chunked), curl as the reference for the saved bytes, and a
hostile server of the tests' own (tests/hostile.py). Every run goes through
the real ``echod`` command.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.certs import issue, private_ca
from tests.daemon import ECHOD, need_tool, terminate
from tests.hostile import HostileServer, hostile_server
from tests.httpapps import pattern
from tests.launch import prepared
from tests.netns import LinkLocalNamespace
from tests.nginx import Nginx
from tests.peers import free_port
from tests.terminal import Terminal

BIG = 24 << 20


class Run:
    """A finished ``echod fetch``: exit code, output, peak RSS and time taken."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        timeout: float,
        env: dict[str, str] | None = None,
    ) -> None:
        started = time.monotonic()
        process = subprocess.Popen(
            [ECHOD, "fetch", *args], cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
        self.peak_rss_kib = 0
        outputs: dict[str, bytes] = {}

        def collect() -> None:
            out, err = process.communicate(timeout=timeout)
            outputs.update(out=out, err=err)

        reader = threading.Thread(target=collect, daemon=True)
        reader.start()
        while reader.is_alive():
            self.peak_rss_kib = max(self.peak_rss_kib, _hwm_kib(process.pid))
            reader.join(0.05)
        self.seconds = time.monotonic() - started
        self.code = process.returncode
        self.stdout = outputs.get("out", b"")
        self.stderr = outputs.get("err", b"").decode(errors="replace")

    def __repr__(self) -> str:
        return f"<exit {self.code}: {self.stderr.strip()[-500:]!r}>"


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fetch(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> Run:
    """Run ``echod fetch ARGS`` in C{cwd}, with C{env} added to the environment."""
    return Run(list(args), cwd, timeout, env)


def curl(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run the real curl."""
    return subprocess.run(
        [need_tool("curl"), "-s", *args], cwd=cwd, capture_output=True, timeout=60
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A document root: a page, a large random file, SSI pages served chunked."""
    root = tmp_path_factory.mktemp("www")
    (root / "index.html").write_bytes(b"<html>hello from nginx</html>\n")
    (root / "big.bin").write_bytes(random.Random(1).randbytes(BIG))
    ssi = root / "ssi"
    ssi.mkdir()
    (ssi / "part.html").write_bytes(random.Random(2).randbytes(300_000).hex().encode())
    (ssi / "page.html").write_bytes(
        b"<p>before</p>\n"
        + b'<!--# include file="part.html" -->\n' * 3
        + b"<p>after</p>\n"
    )
    (ssi / "uri.html").write_bytes(b'<!--# echo var="request_uri" -->')
    return root


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA and a certificate for localhost signed by it."""
    directory = tmp_path_factory.mktemp("pki")
    ca = private_ca(directory)
    san = "DNS:localhost,IP:127.0.0.1,DNS:xn--bcher-kva.test"  # bücher.test
    key, cert = issue(directory, ca, "localhost", san)
    client_key, client_cert = issue(directory, ca, "client", "DNS:client.test")
    return {
        "ca": ca[1],
        "key": key,
        "cert": cert,
        "client_key": client_key,
        "client_cert": client_cert,
    }


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, site: Path, pki: dict[str, Path]
) -> Iterator[Nginx]:
    """Debian's nginx on the test site, plain and TLS."""
    server = Nginx(
        tmp_path_factory.mktemp("nginx"), site, (pki["key"], pki["cert"]), pki["ca"]
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """The hostile server."""
    with hostile_server() as server:
        yield server


class App:
    """A server from tests/httpapps.py, in a subprocess."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.httpapps", kind, str(directory)],
            cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("listening "), line
        self.port = int(line.split()[1])

    def url(self, path: str) -> str:
        """A URL on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Kill the server."""
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def app_server(site: Path) -> Iterator[Any]:
    """Start servers from tests/httpapps.py; all are killed after the test."""
    started: list[App] = []

    def start(kind: str) -> App:
        app = App(kind, site)
        started.append(app)
        return app

    try:
        yield start
    finally:
        for app in started:
            app.stop()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Bodies: byte-identical to curl's, from nginx, plain and TLS.


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("path", ["/index.html", "/big.bin", "/ssi/page.html"])
def test_body_identical_to_curl(
    nginx: Nginx, pki: dict[str, Path], tmp_path: Path, path: str, tls: bool
) -> None:
    url = nginx.url(path, tls)
    ca = ["--cacert", str(pki["ca"])] if tls else []
    ours = fetch(*ca, "-o", "ours", url, cwd=tmp_path)
    assert ours.code == 0, ours
    theirs = curl(*ca, "-o", "curl", url, cwd=tmp_path)
    assert theirs.returncode == 0, theirs.stderr
    assert (tmp_path / "ours").stat().st_size == (tmp_path / "curl").stat().st_size
    assert sha(tmp_path / "ours") == sha(tmp_path / "curl")
    header = ours.stdout
    assert header.startswith(b"HTTP/1.1 200 OK\r\n") and header.endswith(b"\r\n\r\n")
    if path == "/ssi/page.html":
        assert b"Transfer-Encoding: chunked\r\n" in header
        assert (tmp_path / "ours").stat().st_size > 1_800_000
    if path == "/big.bin":
        assert f"Content-Length: {BIG}\r\n".encode() in header
        # Streamed to disk: the process never held the 24 MiB body.
        assert ours.peak_rss_kib < 80_000, ours.peak_rss_kib


def test_dot_segments_resolved_as_curl_unless_path_as_is(
    nginx: Nginx, tmp_path: Path
) -> None:
    """The path nginx received (its request_uri, echoed by SSI) is curl's:
    /./ and /../ resolved before sending, or kept with --path-as-is; and
    -w url_effective says the same as curl's."""
    url = nginx.url("/ssi/x/./y/../../uri.html", False)
    base = url.split("/ssi/")[0]
    for options, sent in (
        ([], "/ssi/uri.html"),
        (["--path-as-is"], "/ssi/x/./y/../../uri.html"),
    ):
        ours = fetch("-s", *options, "-w", "\n%{url_effective}", url, cwd=tmp_path)
        theirs = curl(*options, "-w", "\n%{url_effective}", url, cwd=tmp_path)
        assert (ours.code, theirs.returncode) == (0, 0), (ours, theirs.stderr)
        assert ours.stdout == f"{sent}\n{base}{sent}".encode(), ours.stdout
        assert ours.stdout == theirs.stdout, theirs.stdout
        shown = fetch("-v", "-o", "/dev/null", *options, url, cwd=tmp_path)
        assert f"> GET {sent} HTTP/1.1\n" in shown.stderr, shown.stderr


def test_raw_keeps_the_chunked_coding(nginx: Nginx, site: Path, tmp_path: Path) -> None:
    url = nginx.url("/ssi/page.html")
    raw = fetch("--raw", "-o", "raw", url, cwd=tmp_path)
    decoded = fetch("-o", "decoded", url, cwd=tmp_path)
    assert raw.code == decoded.code == 0
    data, body = (tmp_path / "raw").read_bytes(), (tmp_path / "decoded").read_bytes()
    assert data.endswith(b"\r\n0\r\n\r\n")
    # Decoding the raw bytes by hand gives the decoded body.
    out, rest = b"", data
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    assert out == body


def test_header_shown_exactly_as_received(
    hostile: HostileServer, tmp_path: Path
) -> None:
    run = fetch("-o", "body", hostile.url("/bare-lf"), cwd=tmp_path)
    assert run.code == 0, run
    assert run.stdout == b"HTTP/1.1 200 OK\nContent-Length: 5\n\n"
    assert (tmp_path / "body").read_bytes() == b"hello"
    assert "warning: 3 line(s) end with a bare LF instead of CRLF" in run.stderr
    shown = fetch("--show-crlf", "-o", "body", hostile.url("/bare-lf"), cwd=tmp_path)
    assert shown.stdout.decode() == ("HTTP/1.1 200 OK\\n\nContent-Length: 5\\n\n\\n\n")


def test_verbose_shows_the_request_bytes(nginx: Nginx, tmp_path: Path) -> None:
    run = fetch(
        "-v", "--show-crlf", "-o", "x", nginx.url("/index.html?a=1&b"), cwd=tmp_path
    )
    assert run.code == 0, run
    assert "> GET /index.html?a=1&b HTTP/1.1\\r\\n\n" in run.stderr
    assert f"> Host: 127.0.0.1:{nginx.port}\\r\\n\n" in run.stderr
    assert "> Connection: close\\r\\n\n" in run.stderr
    assert f"* connected to 127.0.0.1:{nginx.port}\n" in run.stderr


class Capture:
    """A server that records the request bytes and answers 200 with their SHA-256."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.peers: list[str] = []
        self.ports: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            self.ports.append(peer[1])
            with conn:
                conn.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and b"\n\n" not in data:
                        piece = conn.recv(65536)
                        if not piece:
                            break
                        data += piece
                    head = data.split(b"\r\n\r\n")[0].lower()
                    if b"content-length:" in head:
                        length = int(
                            head.split(b"content-length:")[1].split(b"\r\n")[0]
                        )
                        while len(data) - len(head) - 4 < length:
                            data += conn.recv(65536)
                except OSError:
                    pass
                self.requests.append(data)
                digest = hashlib.sha256(data).hexdigest().encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n"
                    b"Connection: close\r\n\r\n" + digest
                )

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def test_request_file_goes_byte_for_byte(tmp_path: Path) -> None:
    server = Capture()
    # The textbook's broken line ending, reproduced on purpose.
    raw = b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\n\r\n"
    (tmp_path / "req").write_bytes(raw)
    run = fetch("--request-file", "req", "-o", "out", server.url(), cwd=tmp_path)
    assert run.code == 0, run
    assert server.requests == [raw]


def test_post_data_and_data_file(tmp_path: Path) -> None:
    server = Capture()
    run = fetch("-d", "a=1", "-H", "X-Test: yes", "-H", "User-Agent:", server.url("/p"),
                "-o", "out", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    sent = server.requests[0]
    assert sent.startswith(b"POST /p HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 3\r\n" in sent and b"X-Test: yes\r\n" in sent
    assert b"User-Agent" not in sent
    assert sent.endswith(b"\r\n\r\na=1")
    data = random.Random(3).randbytes(5 << 20)
    (tmp_path / "upload").write_bytes(data)
    run = fetch(
        "--data-file", "upload", "-X", "PUT", server.url(), "-o", "out", cwd=tmp_path
    )
    assert run.code == 0, run
    sent = server.requests[1]
    assert sent.startswith(b"PUT / HTTP/1.1\r\n")
    assert sent.endswith(data)
    assert (tmp_path / "out").read_bytes() == hashlib.sha256(sent).hexdigest().encode()
    # curl's -d @FILE reads the file (it was sent as the text "@body.json"); the
    # bytes as they are, as curl's --data-binary @FILE; --data-raw keeps a '@'
    (tmp_path / "body.json").write_bytes(b'{"a":\r\n1}')
    run = fetch("-d", "@body.json", server.url(), "-o", "out", cwd=tmp_path)
    assert run.code == 0, run
    sent = server.requests[2]
    assert b"Content-Type: application/x-www-form-urlencoded\r\n" in sent
    assert b"Content-Length: 9\r\n" in sent
    assert sent.endswith(b'\r\n\r\n{"a":\r\n1}')
    run = fetch("--data-raw", "@body.json", server.url(), "-o", "out", cwd=tmp_path)
    assert server.requests[3].endswith(b"\r\n\r\n@body.json"), run
    piped = subprocess.run(
        [ECHOD, "fetch", "-d", "@-", "-o", "out", server.url()], cwd=tmp_path,
        input=b"from stdin", capture_output=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert server.requests[4].endswith(b"\r\n\r\nfrom stdin")


def test_curl_head_user_and_user_agent(tmp_path: Path) -> None:
    """curl's -I, -u and -A (were "unrecognized arguments", exit 2)."""
    server = Capture()
    run = fetch("-I", "-u", "alice:s3cret", "-A", "probe/1", server.url("/h"),
                cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    sent = server.requests[0]
    assert sent.startswith(b"HEAD /h HTTP/1.1\r\n")
    assert b"\r\nUser-Agent: probe/1\r\n" in sent
    assert b"echod/" not in sent  # -A replaces the default
    basic = base64.b64encode(b"alice:s3cret")
    assert b"\r\nAuthorization: Basic " + basic + b"\r\n" in sent
    assert run.stdout.startswith(b"HTTP/1.1 200 OK\r\n")  # the header, as curl -I
    run = fetch("-s", "-I", "-o", "head.txt", server.url("/h"), cwd=tmp_path)
    assert run.code == 0 and run.stdout == b"", run  # -o takes the header, as curl
    assert (tmp_path / "head.txt").read_bytes().startswith(b"HTTP/1.1 200 OK\r\n")
    # -u wins over the URL's user:password@, -H Authorization over both
    run = fetch("-u", "bob:pw", "-H", "Authorization: Bearer t", "-o", "out",
                server.url().replace("//", "//u:p@"), cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    assert b"\r\nAuthorization: Bearer t\r\n" in server.requests[2]
    assert b"Basic" not in server.requests[2]
    # -u USER: the password is asked on a terminal, as curl asks
    child = Terminal([ECHOD, "fetch", "-s", "-o", "out", "-u", "carol", server.url()],
                     cwd=str(tmp_path), timeout=20)  # fmt: skip
    child.expect("Enter host password for user 'carol':")
    child.sendline("pw")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    basic = base64.b64encode(b"carol:pw")
    assert b"\r\nAuthorization: Basic " + basic + b"\r\n" in server.requests[3]
    # ... and without a terminal there is nobody to ask
    run = fetch("-u", "carol", server.url(), cwd=tmp_path)
    assert run.code == 2 and "no password, and no terminal to ask" in run.stderr


def test_http10_close_delimited_from_http_server(
    app_server: Any, site: Path, tmp_path: Path
) -> None:
    server = app_server("stdlib")
    run = fetch("--http1.0", "-v", "-o", "big", server.url("/close-delimited/big.bin"),
                cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    assert "> GET /close-delimited/big.bin HTTP/1.0" in run.stderr
    assert run.stdout.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Length" not in run.stdout
    assert sha(tmp_path / "big") == sha(site / "big.bin")
    theirs = curl("-o", "curl", server.url("/close-delimited/big.bin"), cwd=tmp_path)
    assert theirs.returncode == 0
    assert sha(tmp_path / "curl") == sha(tmp_path / "big")


def test_retry_as_curl(app_server: Any, site: Path, tmp_path: Path) -> None:
    """--retry beside curl's --retry against a server that answers 503 (with
    Retry-After: 1) twice before the page: both save the page alone, after
    waiting at least a second twice; echod shows each 503's header and says
    each retry. Fewer retries than 503s: the last 503 is the answer (exit 0,
    or 22 with -f), as curl's."""
    server = app_server("stdlib")
    page = (site / "index.html").read_bytes()

    def both(
        tries: int, *args: str, after: int = 1
    ) -> list[tuple[int, bytes, bytes, float]]:
        runs = []
        for tool in ("echod", "curl"):
            key = f"{tool}-{tries}-{len(args)}"
            url = server.url(f"/unavailable/2/{key}?after={after}")
            options = ("--retry", str(tries), *args, "-o", tool, url)
            started = time.monotonic()
            if tool == "echod":
                ours = fetch(*options, cwd=tmp_path)
                code, out, err = ours.code, ours.stdout, ours.stderr.encode()
            else:
                theirs = curl(*options, cwd=tmp_path)
                code, out, err = theirs.returncode, theirs.stdout, theirs.stderr
            runs.append((code, out, err, time.monotonic() - started))
        return runs

    ours, theirs = both(3)
    assert (ours[0], theirs[0]) == (0, 0), (ours, theirs)
    assert (tmp_path / "echod").read_bytes() == (tmp_path / "curl").read_bytes() == page
    assert ours[3] >= 2 and theirs[3] >= 2  # Retry-After: 1, twice
    assert ours[1].count(b"HTTP/1.0 503 Service Unavailable\r\n") == 2, ours[1]
    assert ours[2].decode().splitlines() == [
        "echod fetch: HTTP 503 Service Unavailable: trying again in 1 s (2 more "
        "retries at most)",
        "echod fetch: HTTP 503 Service Unavailable: trying again in 1 s (1 more "
        "retry at most)",
    ], ours[2]
    counted = fetch("--retry", "3", "-s", "-o", "/dev/null", "-w", "%{num_retries}",
                    server.url("/unavailable/2/counted"), cwd=tmp_path)  # fmt: skip
    assert (counted.code, counted.stdout) == (0, b"2"), counted  # curl 8.9's -w
    ours, theirs = both(1)
    assert (ours[0], theirs[0]) == (0, 0), (ours, theirs)
    assert (tmp_path / "echod").read_bytes() == (tmp_path / "curl").read_bytes()
    assert (tmp_path / "echod").read_bytes() == b"unavailable, try 2\n"
    ours, theirs = both(1, "-f")
    assert (ours[0], theirs[0]) == (22, 22), (ours, theirs)
    # Retry-After: 3 would start the retry after --retry-max-time: none
    ours, theirs = both(3, "--retry-max-time", "2", after=3)
    assert (ours[0], theirs[0]) == (0, 0), (ours, theirs)
    assert (tmp_path / "echod").read_bytes() == b"unavailable, try 1\n"
    assert (tmp_path / "curl").read_bytes() == b"unavailable, try 1\n"
    for options, says in (
        (["--retry", "-1"], "--retry is a number of retries, 0 or more"),
        (["--retry-delay", "-2"], "--retry-delay must be a number of seconds"),
    ):
        run = fetch(*options, server.url("/"), cwd=tmp_path)
        assert run.code == 2 and run.stderr.count("\n") == 1, run
        assert says in run.stderr, run


def test_retry_connrefused_waits_for_the_server(site: Path, tmp_path: Path) -> None:
    """A server that starts listening 1.5 s late: --retry alone does not wait
    for it (refused is not transient, exit 4; curl's 7); with
    --retry-connrefused both echod and curl get the page."""
    page = (site / "index.html").read_bytes()
    port = free_port()
    alone = fetch("--retry", "3", f"http://127.0.0.1:{port}/", cwd=tmp_path)
    assert alone.code == 4 and "connection refused" in alone.stderr, alone
    given_up = fetch("--retry", "2", "--retry-connrefused", "--retry-delay", "0.1",
                     "-s", "-w", "%{num_retries} %{exitcode}",
                     f"http://127.0.0.1:{port}/", cwd=tmp_path)  # fmt: skip
    assert (given_up.code, given_up.stdout) == (4, b"2 4"), given_up
    assert curl("--retry", "3", f"http://127.0.0.1:{port}/", cwd=tmp_path
                ).returncode == 7  # fmt: skip
    for tool in ("echod", "curl"):
        port = free_port()
        handler = partial(SimpleHTTPRequestHandler, directory=str(site))
        late = threading.Timer(1.5, serve_one, (port, handler))
        late.start()
        try:
            options = ("--retry", "4", "--retry-connrefused", "-o", tool,
                       f"http://127.0.0.1:{port}/index.html")  # fmt: skip
            if tool == "echod":
                run = fetch(*options, cwd=tmp_path)
                assert run.code == 0, run
                assert "connection refused: trying again in 1 s" in run.stderr
            else:
                assert curl(*options, cwd=tmp_path).returncode == 0
        finally:
            late.join(30)
        assert (tmp_path / tool).read_bytes() == page


def test_retry_stops_once_a_body_is_delivered(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """A server that never answers is tried again (a read timeout is
    transient); one that stalls after 10 bytes of the body is not: those
    bytes are out, and echod does not rewrite what it delivered (curl would
    truncate the file and start again)."""
    silent = fetch("--retry", "1", "--retry-delay", "0.1", "--read-timeout", "1",
                   hostile.url("/never-answers"), cwd=tmp_path)  # fmt: skip
    assert silent.code == 6, silent
    assert silent.stderr.count("trying again in 0.1 s (the last try)") == 1, silent
    assert hostile.paths.count("/never-answers") == 2
    stalled = fetch("--retry", "3", "--read-timeout", "1", "-o", "part",
                    hostile.url("/stall-mid-body"), cwd=tmp_path)  # fmt: skip
    assert stalled.code == 6 and "trying again" not in stalled.stderr, stalled
    assert hostile.paths.count("/stall-mid-body") == 1
    assert (tmp_path / "part").read_bytes() == b"0123456789"


def serve_one(port: int, handler: Any) -> None:
    """Listen on C{port} and serve one request with C{handler}."""
    with HTTPServer(("127.0.0.1", port), handler) as server:
        server.timeout = 30
        server.handle_request()


def test_chunked_from_twisted_web(app_server: Any, site: Path, tmp_path: Path) -> None:
    server = app_server("twisted")
    run = fetch("-o", "chunked", server.url("/chunked?size=3000000"), cwd=tmp_path)
    assert run.code == 0, run
    assert b"Transfer-Encoding: chunked\r\n" in run.stdout
    assert (tmp_path / "chunked").read_bytes() == pattern(3_000_000)
    static = fetch("-O", server.url("/static/index.html"), cwd=tmp_path)
    assert static.code == 0, static
    assert (tmp_path / "index.html").read_bytes() == (site / "index.html").read_bytes()


def test_dash_big_o_names_a_directory_url_index_html(
    nginx: Nginx, tmp_path: Path
) -> None:
    run = fetch("-O", nginx.url("/"), cwd=tmp_path)
    assert run.code == 0, run
    assert (tmp_path / "index.html").read_bytes() == b"<html>hello from nginx</html>\n"
    run = fetch("-O", nginx.url("/big.bin?x=1"), cwd=tmp_path)
    assert run.code == 0 and (tmp_path / "big.bin").stat().st_size == BIG


def test_body_to_stdout_when_piped(nginx: Nginx, tmp_path: Path) -> None:
    run = fetch(nginx.url("/index.html"), cwd=tmp_path)
    assert run.code == 0
    assert run.stdout == b"<html>hello from nginx</html>\n"
    assert "HTTP/1.1 200 OK" in run.stderr  # the header moves to stderr


def test_silent_and_fail(nginx: Nginx, tmp_path: Path) -> None:
    silent = fetch("-s", nginx.url("/index.html"), cwd=tmp_path)
    assert silent.code == 0
    assert silent.stdout == b"<html>hello from nginx</html>\n"
    assert silent.stderr == ""  # no header, no progress
    failed = fetch("-f", "-o", "missing", nginx.url("/no-such-page"), cwd=tmp_path)
    assert failed.code == 22, failed
    assert "the server answered 404 Not Found" in failed.stderr
    assert not (tmp_path / "missing").exists()  # the error page is not saved
    fine = fetch("-f", "-o", "page", nginx.url("/index.html"), cwd=tmp_path)
    assert fine.code == 0 and (tmp_path / "page").exists()


def test_mutual_tls(nginx: Nginx, pki: dict[str, Path], tmp_path: Path) -> None:
    url = nginx.url("/index.html", mtls=True)
    ca = ["--cacert", str(pki["ca"])]
    without = fetch(*ca, "-o", "x", url, cwd=tmp_path)
    assert without.code == 0 and b"400 Bad Request" in without.stdout  # nginx's way
    assert b"No required SSL certificate was sent" in (tmp_path / "x").read_bytes()
    client = ["--cert", str(pki["client_cert"]), "--key", str(pki["client_key"])]
    with_cert = fetch(*ca, *client, "-o", "y", url, cwd=tmp_path)
    assert with_cert.code == 0, with_cert
    assert with_cert.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert (tmp_path / "y").read_bytes() == b"<html>hello from nginx</html>\n"
    half = fetch(*ca, "--cert", str(pki["client_cert"]), url, cwd=tmp_path)
    assert half.code == 2 and "--cert and --key go together" in half.stderr


def test_redirects(nginx: Nginx, pki: dict[str, Path], hostile: HostileServer,
                   tmp_path: Path) -> None:  # fmt: skip
    not_followed = fetch("-o", "r", nginx.url("/redirect"), cwd=tmp_path)
    assert not_followed.code == 0 and b"302 Moved Temporarily" in not_followed.stdout
    followed = fetch("-L", "-o", "r", nginx.url("/redirect"), cwd=tmp_path)
    assert followed.code == 0, followed
    assert followed.stdout.count(b"HTTP/1.1 ") == 2
    assert (tmp_path / "r").read_bytes() == b"<html>hello from nginx</html>\n"
    down = fetch("-L", "--cacert", str(pki["ca"]), nginx.url("/to-plain", tls=True),
                 "-o", "d", cwd=tmp_path)  # fmt: skip
    assert down.code == 12, down
    assert "refused to follow a redirect from https to http://" in down.stderr
    loop = fetch(
        "-L", "--max-redirs", "3", hostile.url("/loop"), "-o", "l", cwd=tmp_path
    )
    assert loop.code == 12 and "more than 3 redirects" in loop.stderr
    endless = fetch("-L", "--max-redirs", "-1", "--max-time", "2", "-s",
                    hostile.url("/loop"), "-o", "l", cwd=tmp_path)  # fmt: skip
    assert endless.code == 6, endless  # -1: no limit, as curl; --max-time ends it
    assert hostile.paths.count("/loop") > 3 + 10
    broken = fetch("-L", hostile.url("/to-broken-ipv6"), "-o", "b", cwd=tmp_path)
    assert broken.code == 9, broken  # a malformed answer
    assert broken.stderr == (
        f"echod fetch: 127.0.0.1:{hostile.port}: bad Location 'http://[::1/x': "
        "bad IPv6 address in 'http://[::1/x'\n"
    )
    # raw UTF-8 in a Location: followed percent-encoded, as curl follows it
    # (was "bad Location ... the character 'Ã'", exit 9)
    utf8 = fetch("-L", hostile.url("/to-utf-8"), "-o", "u", cwd=tmp_path)
    assert utf8.code == 0, utf8
    assert (tmp_path / "u").read_bytes() == b"ok"
    assert hostile.paths[-2:] == ["/to-utf-8", "/caf%C3%A9"]
    curled = curl("-sL", "-o", "c", hostile.url("/to-utf-8"), cwd=tmp_path)
    assert curled.returncode == 0, curled
    assert hostile.paths[-2:] == ["/to-utf-8", "/caf%c3%a9"]  # RFC 3986: the same


def test_basic_auth_from_the_url(nginx: Nginx, tmp_path: Path) -> None:
    """user:password@ in the URL, percent-decoded, as curl sends it (was refused)."""
    url = nginx.url("/private/ok.txt")
    denied = fetch("-f", "-s", url, cwd=tmp_path)
    assert denied.code == 22, denied.stderr
    let_in = url.replace("://", "://us%40er:p%40ss%20w@")
    run = fetch("-f", "-s", "-o", "-", let_in, cwd=tmp_path)
    assert (run.code, run.stdout) == (0, b"let in\n"), run.stderr
    shown = fetch("-v", "-s", "-o", "/dev/null", let_in, cwd=tmp_path)
    assert "Authorization: Basic dXNAZXI6cEBzcyB3" in shown.stderr, shown.stderr
    assert "p@ss" not in shown.stderr and "p%40ss" not in shown.stderr


def test_head_and_304_have_no_body(nginx: Nginx, tmp_path: Path) -> None:
    head = fetch("-X", "HEAD", "-o", "h", nginx.url("/big.bin"), cwd=tmp_path)
    assert head.code == 0, head
    assert f"Content-Length: {BIG}".encode() in head.stdout
    assert (tmp_path / "h").read_bytes() == b""
    etag = next(
        line.split(b": ", 1)[1]
        for line in head.stdout.split(b"\r\n")
        if line.lower().startswith(b"etag:")
    ).decode()
    cached = fetch("-H", f"If-None-Match: {etag}", "-o", "c", nginx.url("/big.bin"),
                   cwd=tmp_path)  # fmt: skip
    assert cached.code == 0, cached
    assert cached.stdout.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert (tmp_path / "c").read_bytes() == b""


def test_stdout_gone_or_closed_is_exit_13_in_one_line(
    nginx: Nginx, tmp_path: Path
) -> None:
    """As curl's "Failure writing output": one line, no traceback, nothing after."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away

    def run(args: list[str], close_stdout: bool) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            prepared([ECHOD, "fetch", *args], close_stdout=close_stdout),
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=write_end,
            stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip

    where = f"echod fetch: 127.0.0.1:{nginx.port}"
    try:
        body = run(["-s", "-o", "-", nginx.url("/big.bin")], close_stdout=False)
        header = run(["-o", "saved", nginx.url("/index.html")], close_stdout=True)
    finally:
        os.close(write_end)
    assert (body.returncode, body.stderr) == (
        13,
        f"{where}: cannot write stdout: Broken pipe\n",
    )
    assert (header.returncode, header.stderr) == (
        13,
        f"{where}: cannot write the header: Bad file descriptor\n",
    )


def test_tls_verification(nginx: Nginx, pki: dict[str, Path], tmp_path: Path) -> None:
    url = nginx.url("/index.html", tls=True)
    unknown_ca = fetch("-o", "x", url, cwd=tmp_path)
    assert unknown_ca.code == 7, unknown_ca
    assert "certificate verify failed: unable to get local issuer" in unknown_ca.stderr
    port = nginx.tls_port
    wrong_name = fetch(
        "--cacert", str(pki["ca"]), "--resolve", f"other.test:{port}:127.0.0.1",
        "-o", "x", f"https://other.test:{port}/index.html", cwd=tmp_path,
    )  # fmt: skip
    assert wrong_name.code == 7, wrong_name
    assert "does not match" in wrong_name.stderr
    insecure = fetch("-k", "-o", "x", url, cwd=tmp_path)
    assert insecure.code == 0, insecure
    assert "NOT verified" in insecure.stderr
    timed = fetch(
        "--cacert", str(pki["ca"]), "--timing", "-v", "-o", "x", url, cwd=tmp_path
    )
    assert timed.code == 0, timed
    for step in ("dns", "connect", "tls", "first byte", "total"):
        assert f"\n  {step} " in timed.stderr
    assert "* TLS: TLSv1.2, ECDHE-" in timed.stderr, timed.stderr  # nginx 1.22: 1.2 max
    assert "certificate CN=localhost issued by CN=ca" in timed.stderr


def test_tls_versions_as_curl(
    nginx: Nginx, pki: dict[str, Path], site: Path, tmp_path: Path
) -> None:
    """--tlsv1.2/--tlsv1.3 and --tls-max, as curl's: against nginx speaking
    TLS 1.2 only, --tlsv1.3 fails for both (exit 7 in one line; curl 35);
    against one speaking 1.2 and 1.3, each bound makes the version curl's
    makes, as both say with -v, and the same page."""
    ca = str(pki["ca"])
    old = nginx.url("/index.html", tls=True)
    ours = fetch("--cacert", ca, "--tlsv1.3", "-o", "x", old, cwd=tmp_path)
    theirs = curl("--cacert", ca, "--tlsv1.3", "-o", "x", old, cwd=tmp_path)
    assert (ours.code, theirs.returncode) == (7, 35), (ours, theirs)
    assert ours.stderr.count("\n") == 1, ours
    assert "TLS failure: tlsv1 alert protocol version" in ours.stderr, ours
    (tmp_path / "both").mkdir()
    both = Nginx(tmp_path / "both", site, (pki["key"], pki["cert"]),
                 tls_protocols="TLSv1.2 TLSv1.3")  # fmt: skip
    try:
        url = both.url("/index.html", tls=True)
        for options, version in (
            ([], "TLSv1.3"),
            (["--tls-max", "1.2"], "TLSv1.2"),
            (["--tlsv1.2"], "TLSv1.3"),
            (["--tlsv1.3", "--tls-max", "1.3"], "TLSv1.3"),
        ):
            ours = fetch("-v", "--cacert", ca, *options, "-o", "ours", url,
                         cwd=tmp_path)  # fmt: skip
            theirs = curl("-v", "--cacert", ca, *options, "-o", "theirs", url,
                          cwd=tmp_path)  # fmt: skip
            assert (ours.code, theirs.returncode) == (0, 0), (options, ours, theirs)
            assert f"* TLS: {version}, " in ours.stderr, (options, ours.stderr)
            assert f"SSL connection using {version} ".encode() in theirs.stderr
            assert (tmp_path / "ours").read_bytes() == (
                tmp_path / "theirs"
            ).read_bytes()
    finally:
        both.stop()
    for options, says in (
        (["--tlsv1.3", "--tls-max", "1.2"], "leave no TLS version to speak"),
        (["--tls-max", "1.0"], "argument --tls-max: invalid choice: '1.0'"),
    ):
        run = fetch(*options, url, cwd=tmp_path)
        assert run.code == 2 and says in run.stderr, run


def test_haproxy_protocol_as_curl(
    pki: dict[str, Path], site: Path, tmp_path: Path
) -> None:
    """--haproxy-protocol, as curl's, to nginx listening with proxy_protocol
    (plain, and TLS after the header): nginx answers with the header's client
    address and the connection's own; --haproxy-clientip names another."""
    (tmp_path / "pp").mkdir()
    server = Nginx(tmp_path / "pp", site, (pki["key"], pki["cert"]),
                   proxy_protocol=True)  # fmt: skip
    ca = str(pki["ca"])
    plain = f"http://127.0.0.1:{server.pp_port}/"
    secure = f"https://localhost:{server.pp_tls_port}/"
    said = re.compile(rb"(\S+) (\d+) 127\.0\.0\.1\n")
    try:
        for url in (plain, secure):
            ours = fetch("-s", "--haproxy-protocol", "--cacert", ca, "-o", "ours", url,
                         cwd=tmp_path)  # fmt: skip
            theirs = curl("--haproxy-protocol", "--cacert", ca, "-o", "theirs", url,
                          cwd=tmp_path)  # fmt: skip
            assert (ours.code, theirs.returncode) == (0, 0), (url, ours, theirs)
            for name in ("ours", "theirs"):
                match = said.fullmatch((tmp_path / name).read_bytes())
                assert match is not None and match[1] == b"127.0.0.1", name
            named = fetch("-s", "--haproxy-clientip", "203.0.113.5", "--cacert", ca,
                          "-o", "named", url, cwd=tmp_path)  # fmt: skip
            assert named.code == 0, named
            match = said.fullmatch((tmp_path / "named").read_bytes())
            assert match is not None and match[1] == b"203.0.113.5"
            without = fetch("-s", "--cacert", ca, "-o", "x", url, cwd=tmp_path)
            assert without.code != 0, without  # nginx wants the header first
        for options, says in (
            (["--haproxy-clientip", "2001:db8::5", plain], "the connection is IPv4"),
            (["--haproxy-clientip", "nope", plain], "not an IP address"),
            (["--haproxy-protocol", "-x", "127.0.0.1:1", plain], "cannot go together"),
        ):
            run = fetch(*options, cwd=tmp_path)
            assert run.code == 2 and run.stderr.count("\n") == 1, (options, run)
            assert says in run.stderr, run
    finally:
        server.stop()


def test_an_international_host_name_goes_as_its_a_labels(
    nginx: Nginx, pki: dict[str, Path], tmp_path: Path
) -> None:
    """bücher.test is looked up, sent and verified as xn--bcher-kva.test, as curl
    does (it was "the URL has the character 'ü' in it (percent-encode it)")."""
    server = Capture()
    run = fetch("--resolve", f"bücher.test:{server.port}:127.0.0.1", "-o", "out",
                f"http://BÜCHER.test:{server.port}/x", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    assert server.requests[0].startswith(
        f"GET /x HTTP/1.1\r\nHost: xn--bcher-kva.test:{server.port}\r\n".encode()
    )
    port = nginx.tls_port
    run = fetch("--cacert", str(pki["ca"]), "-o", "page",
                "--resolve", f"xn--bcher-kva.test:{port}:127.0.0.1",
                f"https://bücher.test:{port}/index.html", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run  # the certificate names xn--bcher-kva.test
    assert (tmp_path / "page").read_bytes() == b"<html>hello from nginx</html>\n"
    # IDNA 2008: a symbol is no host name; elsewhere in the URL, the encoding to use
    for url, says in (
        ("http://\u2603.test/", "bad international host name '\u2603.test'"),
        (
            "http://x.test/caf\u00e9",
            "the character '\u00e9' in it (write it as %C3%A9)",
        ),
    ):
        run = fetch(url, cwd=tmp_path)
        assert run.code == 2 and run.stderr.count("\n") == 1, run
        assert says in run.stderr, run


def test_interface_picks_the_source_address(tmp_path: Path) -> None:
    """--interface ADDRESS, as curl's with an address: the server sees it."""
    server = Capture()
    run = fetch("--interface", "127.0.0.2", "-o", "out", server.url(), cwd=tmp_path)
    assert run.code == 0, run
    run = fetch("-o", "out", server.url(), cwd=tmp_path)
    assert run.code == 0, run
    assert server.peers == ["127.0.0.2", "127.0.0.1"]
    for options, code, says in (
        (["--interface", "192.0.2.1"], 2,
         "cannot bind the source address: Cannot assign requested address"),
        (["--interface", "nosuch0"], 2,
         "--interface 'nosuch0': neither an IP address nor an interface of this "
         "machine (host names are not taken)"),
        (["--interface", "if!127.0.0.1"], 2, "--interface 'if!127.0.0.1': neither"),
        (["--interface", "host!localhost"], 2,
         "--interface 'host!localhost': host names are not taken"),
        (["--interface", "::1"], 2,
         "--interface ::1 is an IPv6 address, and 127.0.0.1 is an IPv4 address"),
    ):  # fmt: skip
        run = fetch(*options, server.url(), cwd=tmp_path)
        assert run.code == code and run.stderr.count("\n") == 1, run
        assert says in run.stderr, run


@contextmanager
def adjacent_ports(tries: int = 50) -> Iterator[int]:
    """A loopback port held by a listening socket (until the block ends) whose
    next port is free now. (One try found the next port taken, now and then.)"""
    for _ in range(tries):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = int(taken.getsockname()[1])
            try:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", busy + 1))
            except OSError:
                continue
            yield busy
            return
    pytest.fail(f"no free port after a taken one in {tries} tries")


def test_local_port_picks_the_source_port(tmp_path: Path) -> None:
    """--local-port NUM[-NUM], as curl's: the server sees the port; in a range,
    a port in use is passed over; alone, it is one line, exit 2."""
    server = Capture()
    with adjacent_ports() as busy:
        run = fetch("--local-port", f"{busy}-{busy + 1}", "-o", "out",
                    server.url(), cwd=tmp_path)  # fmt: skip
        assert run.code == 0, run
        assert server.ports[-1] == busy + 1
        with socket.socket() as next_taken:  # now the whole range is in use
            next_taken.bind(("127.0.0.1", busy + 1))
            next_taken.listen()
            run = fetch("--local-port", f"{busy}-{busy + 1}", server.url(),
                        cwd=tmp_path)  # fmt: skip
        assert (run.code, run.stderr.count("\n")) == (2, 1), run
        assert (
            f"cannot bind the local port: {busy}-{busy + 1} (--local-port) in use"
            in run.stderr
        ), run
        run = fetch("--local-port", str(busy), server.url(), cwd=tmp_path)
        assert (run.code, run.stderr.count("\n")) == (2, 1), run
        assert f"cannot bind the local port: {busy} (--local-port) in use" in run.stderr
    local = free_port()
    run = fetch("-v", "--local-port", str(local), "-o", "out", server.url(),
                cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    assert server.ports[-1] == local
    # -v names the local end, as curl's "Local port"
    assert f"* connected to 127.0.0.1:{server.port} from 127.0.0.1:{local}\n" in (
        run.stderr
    )
    for text, says in (
        ("0", "ports are 1 to 65535, the first no more than the last"),
        ("9-8", "ports are 1 to 65535, the first no more than the last"),
        ("x", "(write it as NUM or NUM-NUM)"),
    ):
        run = fetch("--local-port", text, server.url(), cwd=tmp_path)
        assert (run.code, run.stderr.count("\n")) == (2, 1), run
        assert says in run.stderr, run


def test_connect_to_goes_elsewhere_and_keeps_the_url_s_name(
    nginx: Nginx, pki: dict[str, Path], tmp_path: Path
) -> None:
    """--connect-to HOST1:PORT1:HOST2:PORT2, as curl's: the connection goes to
    HOST2:PORT2; the Host header, SNI and certificate check keep HOST1."""
    server = Capture()
    run = fetch("--connect-to", f"example.test:80:127.0.0.1:{server.port}",
                "-o", "out", "http://example.test/p", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run
    assert server.requests[0].startswith(b"GET /p HTTP/1.1\r\nHost: example.test\r\n")
    port = nginx.tls_port
    run = fetch("--cacert", str(pki["ca"]), "-o", "page",
                "--connect-to", f"localhost:443:127.0.0.1:{port}",
                "https://localhost/index.html", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run  # nginx's certificate names localhost
    assert (tmp_path / "page").read_bytes() == b"<html>hello from nginx</html>\n"
    run = fetch("--cacert", str(pki["ca"]), "--connect-to", f"::localhost:{port}",
                "https://other.test/", cwd=tmp_path)  # fmt: skip
    assert run.code == 7 and "does not match" in run.stderr, run  # TLS: other.test
    refused = free_port()
    run = fetch("--connect-to", f"::127.0.0.1:{refused}", "http://example.test/",
                cwd=tmp_path)  # fmt: skip
    assert (run.code, run.stderr) == (4, (
        f"echod fetch: example.test: connection refused (--connect-to "
        f"127.0.0.1:{refused})\n"
    )), run  # fmt: skip
    run = fetch("--connect-to", "x:80", "http://x/", cwd=tmp_path)
    assert run.code == 2 and "bad --connect-to 'x:80'" in run.stderr, run


# The hostile server: each case ends in a clear line, bounded time and memory.

HOSTILE = [
    # path, extra options, exit code, what stderr says
    ("/oversized-header", [], 11, "header section is larger than 65536 bytes"),
    ("/endless-header", [], 11, "header section is larger than 65536 bytes"),
    ("/infinite-chunked", ["--max-filesize", "50000000"], 11,
     "body is larger than 50000000 bytes"),
    ("/infinite-chunked", ["--max-time", "1", "-o", "/dev/null"], 6,
     "timed out after 1 s (--max-time)"),
    ("/short-body", [], 10, "the body was cut short: 10 of 100 bytes (Content-Length)"),
    ("/cut-chunked", [], 10, "the chunked body was cut short after 5 bytes"),
    ("/premature-close", [], 10, "closed in the middle of the response header"),
    ("/empty", [], 10, "closed the connection without answering"),
    ("/never-answers", ["--read-timeout", "1"], 6, "no data from the server for 1 s"),
    ("/never-answers", ["--max-time", "1"], 6, "timed out after 1 s (--max-time)"),
    ("/conflicting-length", [], 9, "conflicting Content-Length headers: 3, 4"),
    ("/garbage-status", [], 9,
     "not an HTTP response: it begins 'SSH-2.0-OpenSSH_9.2'"),
    # was exit 6 at the read timeout: the banner was waited on as a header
    ("/banner-and-wait", ["--max-time", "20"], 9,
     "not an HTTP response: it begins 'SSH-2.0-OpenSSH_9.2p1 Debian-2'"),
    ("/reset-mid-body", [], 8, "reset by the peer after 1000 body bytes"),
    ("/long-body", [], 0, "more bytes than the response's framing announced: 5"),
    ("/long-body", ["--lint"], 9, "1 protocol violation(s) (--lint)"),
    ("/body-on-204", [], 0, "a body on a 204 response: 4 extra byte(s) ignored"),
    ("/duplicate-length", [], 0, "Content-Length appears 2 times"),
    ("/te-and-cl", [], 0, "both Transfer-Encoding and Content-Length"),
    ("/bare-lf", ["--lint"], 9, "bare LF"),
    ("/continue-then-ok", [], 0, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "extra", "code", "says"),
    HOSTILE,
    ids=[f"{p[1:]}{'+' + x[0][2:] if x else ''}" for p, x, _, _ in HOSTILE],
)
def test_hostile_server(
    hostile: HostileServer, tmp_path: Path, path: str, extra: list[str], code: int,
    says: str,
) -> None:  # fmt: skip
    run = fetch(*extra, "-o", "body", hostile.url(path), cwd=tmp_path, timeout=30)
    assert run.code == code, run
    assert says in run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "warning" not in line]
    assert len(errors) <= 1, run.stderr
    assert run.seconds < 20
    assert run.peak_rss_kib < 100_000, run.peak_rss_kib


def test_hostile_bodies_that_are_right(hostile: HostileServer, tmp_path: Path) -> None:
    run = fetch("-o", "b", hostile.url("/te-and-cl"), cwd=tmp_path)
    assert (tmp_path / "b").read_bytes() == b"abc"
    run = fetch("-o", "b", hostile.url("/continue-then-ok"), cwd=tmp_path)
    assert run.stdout.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert (tmp_path / "b").read_bytes() == b"ok"


# Errors of the command itself: one line, documented exit codes.


def test_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        (["http://127.0.0.1:1/"], 4, "connection refused"),
        (["http://no-such-host.invalid/"], 3, "cannot resolve the name"),
        (["ftp://example/"], 2, "unsupported scheme 'ftp'"),
        (["http://127.0.0.1/a b"], 2, "space"),
        (
            ["--data-file", "missing", "http://127.0.0.1/"],
            2,
            "cannot read the data file",
        ),
        (["-H", "bad header", "http://127.0.0.1/"], 2, "bad header"),
        (["--max-time", "nan", "http://127.0.0.1/"], 2, "--max-time must be a number"),
        (["--resolve", "x", "http://127.0.0.1/"], 2, "bad --resolve"),
        (["--cacert", "missing.pem", "https://127.0.0.1:1/"], 2, "missing.pem"),
        # was Twisted's "An error occurred while connecting: 22: Invalid argument."
        (
            ["http://[fe80::1]:8080/"],
            2,
            "fe80::1 is a link-local address: it needs its zone, the interface it "
            "is on, as in http://[fe80::1%25eth0]/",
        ),
    ]
    for args, code, says in cases:
        run = fetch(*args, cwd=tmp_path)
        assert run.code == code, (args, run)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (args, run.stderr)


def test_a_proxy_in_the_environment_is_named_when_the_server_is_not_reached(
    nginx: Nginx, tmp_path: Path
) -> None:
    """curl would have gone through http_proxy; echod fetch connects itself, so
    when that fails behind a proxy-only network, the error says why."""
    proxy = {"http_proxy": "http://127.0.0.1:1/", "no_proxy": "", "NO_PROXY": ""}
    run = fetch("http://127.0.0.1:1/", cwd=tmp_path, env=proxy)
    assert run.code == 4, run
    assert run.stderr.strip().splitlines() == [
        "echod fetch: 127.0.0.1:1: connection refused (http_proxy is set: echod "
        "fetch does not read it, it connects to the server itself; -x URL goes "
        "through a proxy)"
    ]
    run = fetch("https://no-such-host.invalid/", cwd=tmp_path, env=proxy)
    assert run.code == 3 and "(http_proxy is set" not in run.stderr, run
    run = fetch(
        "https://no-such-host.invalid/",
        cwd=tmp_path,
        env={**proxy, "HTTPS_PROXY": "http://127.0.0.1:1/"},
    )
    assert run.code == 3 and run.stderr.rstrip().endswith(
        "(HTTPS_PROXY is set: echod fetch does not read it, it connects to the "
        "server itself; -x URL goes through a proxy)"
    ), run
    # no_proxy leaves the host out, as curl would: no hint
    run = fetch(
        "http://127.0.0.1:1/", cwd=tmp_path, env={**proxy, "no_proxy": "127.0.0.0/8"}
    )
    assert run.code == 4 and "proxy" not in run.stderr, run
    # the server answered: the proxy was not the trouble
    run = fetch("-o", "b", nginx.url("/index.html"), cwd=tmp_path, env=proxy)
    assert run.code == 0 and "proxy" not in run.stderr, run


def test_unwritable_output(nginx: Nginx, tmp_path: Path) -> None:
    run = fetch("-o", "no/such/dir/file", nginx.url("/index.html"), cwd=tmp_path)
    assert run.code == 13, run
    assert "cannot write no/such/dir/file: No such file or directory" in run.stderr


def test_a_full_disk_is_exit_13_not_a_traceback(nginx: Nginx, tmp_path: Path) -> None:
    """A small body sits in Python's buffer until the file is closed: a full
    disk showed only then, as a traceback (exit 1)."""
    run = fetch("-o", "/dev/full", nginx.url("/index.html"), cwd=tmp_path)
    assert run.code == 13, run
    assert run.stderr.strip().splitlines() == [
        f"echod fetch: {nginx.url('/')[len('http://') : -1]}: cannot write "
        "/dev/full: No space left on device"
    ]


# On a terminal.


def on_terminal(url: str, expected: str, cwd: Path) -> None:
    """Run ``echod fetch URL`` in a pty; it shows C{expected} and exits 0."""
    child = Terminal([ECHOD, "fetch", url], cwd=str(cwd), timeout=20)
    child.expect(expected)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_terminal_text_shown_binary_withheld(nginx: Nginx, tmp_path: Path) -> None:
    on_terminal(nginx.url("/index.html"), "hello from nginx", tmp_path)
    withheld = "the body is binary and stdout is a terminal: not shown"
    on_terminal(nginx.url("/big.bin"), withheld, tmp_path)


def test_progress_bar_on_a_terminal(nginx: Nginx, tmp_path: Path) -> None:
    child = Terminal(
        [ECHOD, "fetch", "-o", "big", nginx.url("/big.bin")], cwd=str(tmp_path),
        timeout=30, env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    child.expect(r"\d+(\.\d+)?[kMG]?\s?\[\d\d:\d\d<.*B/s\]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert (tmp_path / "big").stat().st_size == BIG


def test_interrupted(hostile: HostileServer, tmp_path: Path) -> None:
    process = subprocess.Popen(
        prepared([ECHOD, "fetch", hostile.url("/never-answers")], default_sigint=True),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "/never-answers" not in hostile.paths and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert "/never-answers" in hostile.paths, "the request never arrived"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # as Ctrl-C
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"no exit after SIGINT; stderr: {err.decode()!r}")
    assert process.returncode == 130
    assert err.decode() == "echod fetch: interrupted\n"


def test_connect_and_handshake_timeouts(hostile: HostileServer, tmp_path: Path) -> None:
    # A listener whose backlog is full: the kernel drops the next SYN.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    waiting = []
    for _ in range(3):
        peer = socket.socket()
        peer.setblocking(False)
        peer.connect_ex(full.getsockname())
        waiting.append(peer)
    try:
        port = full.getsockname()[1]
        run = fetch("--connect-timeout", "1", f"http://127.0.0.1:{port}/", cwd=tmp_path)
        assert run.code == 6, run
        assert "connecting timed out after 1 s" in run.stderr
        assert run.seconds < 10
    finally:
        for peer in waiting:
            peer.close()
        full.close()
    # A server that accepts and never says a word of TLS.
    url = hostile.url("/never-answers").replace("http://", "https://")
    run = fetch("--connect-timeout", "1", url, cwd=tmp_path)
    assert run.code == 6, run
    assert "TLS handshake timed out (--connect-timeout)" in run.stderr


def test_a_link_local_url_with_its_zone(
    link_local: LinkLocalNamespace, tmp_path: Path
) -> None:
    """http://[fe80::1%25v1]:PORT/ (RFC 6874): was 'cannot resolve the name'
    (exit 3). The zone picks the interface; the Host header leaves it out, as
    curl's does."""
    (tmp_path / "a.txt").write_bytes(b"zoned\n")
    with http_server_in(link_local, "::", tmp_path):
        for url in (
            f"http://[{link_local.ADDRESS}%25{link_local.INTERFACE}]:8080/a.txt",
            f"http://[{link_local.zoned}]:8080/a.txt",  # curl takes it too
        ):
            out = subprocess.run(
                [*link_local.prefix, ECHOD, "fetch", "-v", url],
                capture_output=True, timeout=60,
            )  # fmt: skip
            assert (out.returncode, out.stdout) == (0, b"zoned\n"), out.stderr
            assert b"> Host: [fe80::1]:8080\n" in out.stderr


@contextmanager
def http_server_in(
    namespace: LinkLocalNamespace, bind: str, directory: Path
) -> Iterator[None]:
    """Python's http.server on port 8080 of C{bind} in C{namespace}, serving
    C{directory}; stopped on leaving."""
    server = subprocess.Popen(
        [*namespace.prefix, sys.executable, "-u", "-m", "http.server", "8080",
         "--bind", bind, "--directory", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert "Serving HTTP" in server.stdout.readline()
        yield
    finally:
        server.terminate()
        server.wait(10)


def test_ipv4_or_ipv6_only(link_local: LinkLocalNamespace, tmp_path: Path) -> None:
    """-4 and -6, as curl: a name with both addresses (the namespace's own
    /etc/hosts), a server on ::1 alone."""
    link_local.hosts("127.0.0.1 dual.test\n::1 dual.test\n")
    (tmp_path / "a.txt").write_bytes(b"six\n")
    with http_server_in(link_local, "::1", tmp_path):

        def run(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [*link_local.prefix, ECHOD, "fetch", *args], capture_output=True,
                timeout=60, cwd=tmp_path,
            )  # fmt: skip

        url = "http://dual.test:8080/a.txt"
        for options in ([], ["-6"], ["--ipv6"]):
            out = run(*options, "-v", url)
            assert (out.returncode, out.stdout) == (0, b"six\n"), out.stderr
            assert b"* connected to [::1]:8080\n" in out.stderr, out.stderr
        out = run("-4", url)
        assert (out.returncode, out.stderr) == (
            4, b"echod fetch: dual.test:8080: connection refused\n"
        )  # fmt: skip
        for options, says in (
            (["-4", "http://[::1]:8080/"], "-4 asks for IPv4, and ::1 is an IPv6"),
            (["-6", "--resolve", "dual.test:8080:127.0.0.1", url],
             "--resolve dual.test:8080: -6 asks for IPv6, and 127.0.0.1 is an IPv4"),
        ):  # fmt: skip
            out = run(*options)
            assert out.returncode == 2, out
            assert says in out.stderr.decode() and out.stderr.count(b"\n") == 1


def test_interface_by_name_binds_to_the_device_as_curl(
    link_local: LinkLocalNamespace, tmp_path: Path
) -> None:
    """--interface NAME, beside curl's, in a namespace with a server on
    127.0.0.1: through lo it connects; through v0 (a veth whose peer has no
    such address) the SYN leaves by v0 and nothing answers, as for curl: the
    socket is bound to the device, not merely to an address. Then with the
    address (no device): the interface's own address is the source."""
    (tmp_path / "a.txt").write_bytes(b"lo\n")
    fmt = "%{http_code} %{local_ip}"
    with http_server_in(link_local, "127.0.0.1", tmp_path):

        def both(*args: str) -> tuple[subprocess.CompletedProcess[bytes], ...]:
            url = "http://127.0.0.1:8080/a.txt"
            common = ["-o", "/dev/null", "-w", fmt, "--connect-timeout", "2", *args]
            return tuple(
                subprocess.run([*link_local.prefix, *tool, *common, url],
                               capture_output=True, timeout=60, cwd=tmp_path)
                for tool in ([ECHOD, "fetch", "-s", "-v"], [need_tool("curl"), "-s"])
            )  # fmt: skip

        for interface in ("lo", "if!lo"):
            ours, theirs = both("--interface", interface)
            assert (ours.returncode, theirs.returncode) == (0, 0), (ours, theirs)
            assert ours.stdout == theirs.stdout == b"200 127.0.0.1", (ours, theirs)
            assert b"* through the interface lo (bound to the device)\n" in ours.stderr
        ours, theirs = both("--interface", "v0")
        assert (ours.returncode, theirs.returncode) == (6, 28), (ours, theirs)
        assert ours.stdout == theirs.stdout == b"000 ", (ours, theirs)
        assert b"* through the interface v0 (bound to the device)\n" in ours.stderr
        assert b"connecting timed out after 2 s" in ours.stderr


def test_write_out_as_curl_s(nginx: Nginx, tmp_path: Path) -> None:
    """-w FORMAT, curl's --write-out, against nginx and beside curl itself:
    the same figures for the same fetch; 000 and the exit code when there
    was no response; an unknown variable is a usage error before sending."""
    fmt = (
        "%{http_code} %{num_redirects} %{content_type} %{size_download} "
        "%{remote_ip} %{remote_port} %{scheme} %{exitcode}\\n"
    )
    url = nginx.url("/redirect")
    run = fetch("-s", "-L", "-o", "/dev/null", "-w", fmt, url, cwd=tmp_path)
    theirs = curl("-L", "-o", "/dev/null", "-w", fmt, url, cwd=tmp_path)
    assert run.code == 0 and theirs.returncode == 0, (run, theirs)
    assert run.stdout == theirs.stdout, (run.stdout, theirs.stdout)
    assert run.stdout.startswith(b"200 1 text/html ")
    times = fetch("-s", "-o", "/dev/null", "-w",
                  "%{time_connect} %{time_starttransfer} %{time_total}",
                  nginx.url("/index.html"), cwd=tmp_path)  # fmt: skip
    connect, first, total = (float(x) for x in times.stdout.split())
    assert 0 < connect <= first <= total, times.stdout
    refused = free_port()
    down = fetch("-s", "-w", "%{http_code} %{exitcode} %{errormsg}",
                 f"http://127.0.0.1:{refused}/", cwd=tmp_path)  # fmt: skip
    assert (down.code, down.stdout) == (4, b"000 4 connection refused"), down
    (tmp_path / "fmt").write_text("%{response_code}%%\\t@file\\n")
    from_file = fetch("-s", "-o", "/dev/null", "-w", "@fmt", nginx.url("/index.html"),
                      cwd=tmp_path)  # fmt: skip
    assert from_file.stdout == b"200%\t@file\n", from_file.stdout
    unknown = fetch("-w", "%{http_cod}", nginx.url("/index.html"), cwd=tmp_path)
    assert unknown.code == 2 and unknown.stdout == b"", unknown
    assert "-w: unknown variable %{http_cod}" in unknown.stderr
    # stdout closed, its reader gone, or full: a traceback before (OSError)
    command = f"'{ECHOD}' fetch -s -o /dev/null -w '%{{http_code}}' {nginx.url('/')}"
    for redirect, code, says in (
        (">&-", 0, ""),
        ("| true", 0, ""),
        ("> /dev/full", 13, "echod fetch: cannot write the -w report: No space left"),
    ):
        shell = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command} {redirect}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shell.returncode == code, (redirect, shell)
        assert shell.stderr.startswith(says) and "Traceback" not in shell.stderr


def test_unix_socket_as_curl(
    nginx: Nginx, pki: dict[str, Path], tmp_path: Path
) -> None:
    """--unix-socket and --abstract-unix-socket, as curl's: nginx on a UNIX
    socket (plain and TLS), and socat forwarding an abstract name to it; the
    same bytes and -w figures as curl's (remote_ip: the path; remote_port: the
    URL's; local_ip and local_port: empty and 0)."""
    fmt = (
        "%{http_code} %{size_download} %{remote_ip}|%{remote_port} "
        "[%{local_ip}] %{local_port} %{num_redirects}"
    )
    socket_path = str(nginx.unix_socket)
    for url, extra in (
        ("http://localhost/big.bin", ()),
        ("http://localhost/redirect", ("-L",)),  # the redirect: the same socket
        ("https://localhost/index.html", ("--cacert", str(pki["ca"]))),
    ):
        path = str(nginx.unix_tls_socket) if url.startswith("https") else socket_path
        theirs = curl("--unix-socket", path, *extra, "-o", "theirs", "-w", fmt, url,
                      cwd=tmp_path)  # fmt: skip
        run = fetch("-s", "--unix-socket", path, *extra, "-o", "ours", "-w", fmt, url,
                    cwd=tmp_path)  # fmt: skip
        assert (run.code, theirs.returncode) == (0, 0), (run, theirs)
        assert run.stdout == theirs.stdout, (run.stdout, theirs.stdout)
        assert sha(tmp_path / "ours") == sha(tmp_path / "theirs")
    assert run.stdout.endswith(b".sock|443 [] 0 0"), run.stdout
    verbose = fetch("-v", "--unix-socket", socket_path, "-o", "/dev/null",
                    "http://localhost/index.html", cwd=tmp_path)  # fmt: skip
    assert f"connected to {socket_path}" in verbose.stderr, verbose.stderr
    assert "Host: localhost" in verbose.stderr, verbose.stderr  # the URL's
    name = f"echod-test-{os.getpid()}"
    socat = subprocess.Popen(
        [need_tool("socat"), f"ABSTRACT-LISTEN:{name},fork",
         f"UNIX-CONNECT:{socket_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            run = fetch("-s", "--abstract-unix-socket", name, "-o", "abstract",
                        "http://localhost/index.html", cwd=tmp_path)  # fmt: skip
            if run.code != 4 or time.monotonic() > deadline:  # 4: not up yet
                break
            time.sleep(0.05)
        assert run.code == 0, run
        theirs = curl("--abstract-unix-socket", name, "-o", "/dev/null", "-w", fmt,
                      "http://localhost:8080/index.html", cwd=tmp_path)  # fmt: skip
        ours = fetch("-s", "--abstract-unix-socket", name, "-o", "/dev/null", "-w",
                     fmt, "http://localhost:8080/index.html", cwd=tmp_path)  # fmt: skip
        assert ours.stdout == theirs.stdout == b"200 30 |8080 [] 0 0", (ours, theirs)
        assert (
            tmp_path / "abstract"
        ).read_bytes() == b"<html>hello from nginx</html>\n"
    finally:
        terminate(socat)
    missing = fetch("--unix-socket", str(tmp_path / "none.sock"), "http://x/",
                    cwd=tmp_path)  # fmt: skip
    assert missing.code == 4, missing
    assert missing.stderr == (
        f"echod fetch: x: connection refused: no such socket file "
        f"({tmp_path}/none.sock)\n"
    ), missing.stderr
    gone = fetch("--abstract-unix-socket", name, "http://x/", cwd=tmp_path)
    assert gone.code == 4 and f"(@{name})" in gone.stderr, gone
    for options, says in (
        (["--unix-socket", "s", "--resolve", "x:80:127.0.0.1"],
         "--resolve applies to TCP connections, not to --unix-socket"),
        (["--abstract-unix-socket", "s", "-4", "--local-port", "4000"],
         "-4 and --local-port apply to TCP connections, not to --abstract-unix-socket"),
        (["--unix-socket", "s", "--abstract-unix-socket", "s"], "cannot go together"),
        (["--unix-socket", ""], "--unix-socket: no socket path"),
        (["--unix-socket", "/" + "x" * 107], "a UNIX socket path holds at most 107"),
    ):  # fmt: skip
        out = fetch(*options, "http://x/", cwd=tmp_path)
        assert out.code == 2 and out.stderr.count("\n") == 1, out
        assert says in out.stderr, out
