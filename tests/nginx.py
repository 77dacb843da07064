"""Debian's nginx, started by a test on loopback with a configuration of its own."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.daemon import need_tool, terminate
from tests.peers import free_port

CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    gzip off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    types {{ text/html html; application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{port};
        listen unix:{sockets}/http.sock;
        {tls_listen}
        root {root};
        location /ssi/ {{ ssi on; }}
        location = /redirect {{ return 302 /index.html; }}
        location = /to-plain {{ return 301 http://127.0.0.1:{port}/index.html; }}
        location /private/ {{
            auth_basic "echod"; auth_basic_user_file {dir}/htpasswd;
            alias {dir}/private/;
        }}
    }}
    {mtls_server}
    {pp_server}
}}
"""

PROXY_PROTOCOL_SERVER = """
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        {tls_listen}
        location / {{
            return 200 "$proxy_protocol_addr $proxy_protocol_port $remote_addr\\n";
        }}
    }}
"""
"""A server that takes a PROXY header (and TLS after it on the TLS port) and
answers with the client's address from it, and the connection's own."""


class Nginx:
    """nginx serving C{root} on a free port (and a TLS port with C{tls},
    speaking the C{tls_protocols}: TLS 1.2 only unless told, whatever the
    nginx release's default)."""

    def __init__(
        self,
        directory: Path,
        root: Path,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        tls_protocols: str = "TLSv1.2",
        proxy_protocol: bool = False,
    ) -> None:
        nginx = need_tool("nginx")
        self.port = free_port()
        # UNIX sockets: a short directory of their own (a socket path holds
        # at most 107 bytes, and pytest's temporary paths can be longer).
        self.sockets = Path(tempfile.mkdtemp(prefix="echod-nginx-"))
        self.unix_socket = self.sockets / "http.sock"
        self.unix_tls_socket = self.sockets / "https.sock" if tls else None
        self.tls_port = free_port() if tls else None
        tls_listen = mtls_server = ""
        self.mtls_port = free_port() if tls and client_ca else None
        if tls is not None:
            key, cert = tls
            pair = (
                f"ssl_certificate {cert}; ssl_certificate_key {key}; "
                f"ssl_protocols {tls_protocols};"
            )
            tls_listen = (
                f"listen 127.0.0.1:{self.tls_port} ssl; "
                f"listen unix:{self.unix_tls_socket} ssl; {pair}"
            )
            if client_ca is not None:
                # Mutual TLS: a client certificate from client_ca, or no page.
                mtls_server = (
                    f"server {{ listen 127.0.0.1:{self.mtls_port} ssl; {pair} "
                    f"ssl_client_certificate {client_ca}; ssl_verify_client on; "
                    f"root {root}; }}"
                )
        self.pp_port = free_port() if proxy_protocol else None
        self.pp_tls_port = free_port() if proxy_protocol and tls else None
        pp_server = ""
        if self.pp_port is not None:
            pp_tls = ""
            if self.pp_tls_port is not None:
                pp_tls = (
                    f"listen 127.0.0.1:{self.pp_tls_port} ssl proxy_protocol; {pair}"
                )
            pp_server = PROXY_PROTOCOL_SERVER.format(
                port=self.pp_port, tls_listen=pp_tls
            )
        # /private/ok.txt takes Basic auth: user "us@er", password "p@ss w".
        (directory / "htpasswd").write_text("us@er:{PLAIN}p@ss w\n")
        (directory / "private").mkdir(exist_ok=True)
        (directory / "private" / "ok.txt").write_text("let in\n")
        config = directory / "nginx.conf"
        config.write_text(
            CONFIG.format(
                dir=directory,
                sockets=self.sockets,
                port=self.port,
                root=root,
                tls_listen=tls_listen,
                mtls_server=mtls_server,
                pp_server=pp_server,
            )
        )
        self.process = subprocess.Popen(
            [nginx, "-p", str(directory), "-c", str(config), "-e",
             str(directory / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._wait_up()

    def _wait_up(self) -> None:
        import socket

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read() if self.process.stderr else b""
                raise AssertionError(f"nginx exited: {err.decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not start listening")

    def url(self, path: str, tls: bool = False, mtls: bool = False) -> str:
        """A URL on this nginx (https on the TLS ports, host name localhost)."""
        if mtls:
            return f"https://localhost:{self.mtls_port}{path}"
        if tls:
            return f"https://localhost:{self.tls_port}{path}"
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Stop nginx (kill it if it will not stop); remove its sockets."""
        terminate(self.process)
        shutil.rmtree(self.sockets, ignore_errors=True)
