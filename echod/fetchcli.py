"""``echod fetch URL``: the raw HTTP client, as a command.

A thin layer over L{echod.fetch.fetch}: it turns options into a
L{echod.fetchrequest.Request} and L{echod.fetch.FetchOptions}, prints what
the fetch observes, and saves the body.

Where things go: the response header section, exactly as received, to
stdout, or to stderr when stdout carries the body; the body to C{-o FILE},
to the URL's file name with C{-O} (C{index.html} for a directory URL, as the
textbook client did), or to stdout. On a terminal a body with a NUL byte is
not printed (as curl does); C{-o -} prints it anyway. C{-v} adds, on stderr,
what was looked up and connected to, the TLS session, and the request bytes
sent; C{--show-crlf} makes line endings visible. Warnings about protocol
violations always go to stderr; C{--lint} makes them an error (exit 9).
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from twisted.python.failure import Failure

from echod.cli import add_family_options, is_port, options_apply, parse_arguments
from echod.clienterrors import OK, USAGE, ClientError
from echod.fetch import (
    HTTP_ERROR,
    INTERNAL,
    MALFORMED,
    WRITE,
    FetchError,
    FetchObserver,
    FetchOptions,
    FetchResult,
    ResponseHead,
    ServerNotReachedError,
    Timing,
    fetch,
)
from echod.fetchrequest import (
    URL,
    Request,
    RequestError,
    basic_authorization,
    parse_header,
    parse_url,
)
from echod.hostnames import HostNameError, ascii_host
from echod.interfaces import is_interface
from echod.proxyheader import check_client_ip
from echod.proxytunnel import Proxy, parse_proxy, socks_sent_shown, with_proxy_tls
from echod.reactor import install_if_unset
from echod.resolve import ip_version, source_family
from echod.retry import RetryPolicy
from echod.stdstreams import ReportStdout, discard_stdout
from echod.targetoptions import (
    add_haproxy_arguments,
    add_proxy_tls_arguments,
    add_tls_version_arguments,
    client_tls,
    with_proxy_user,
)
from echod.writeout import Outcome, WriteOut, WriteOutError

PROG = "echod fetch"
EXIT_CODES = """\
exit codes: 0 read whole (any HTTP status unless -f), 1 internal error,
2 usage, 3 name not found, 4 refused, 5 unreachable, 6 timed out,
7 TLS failure, 8 reset, 9 malformed response (or a violation with --lint),
10 truncated or no response, 11 header or body over its limit,
12 redirect refused or too many, 13 cannot write the body,
22 HTTP status >= 400 with -f, 130 interrupted
"""
INTERRUPTED = 130


def visible(data: bytes) -> str:
    """C{data} with CR, LF, tabs and non-printable bytes written out (C{\\r\\n})."""
    out: list[str] = []
    for byte in data:
        if byte == 0x0D:
            out.append("\\r")
        elif byte == 0x0A:
            out.append("\\n\n")
        elif byte == 0x09:
            out.append("\\t")
        elif byte == 0x5C:
            out.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def prefixed(data: bytes, prefix: str, show_crlf: bool) -> str:
    """Each line of C{data} after C{prefix}, line endings visible or not."""
    if show_crlf:
        text = visible(data)
        lines = text.splitlines()
    else:
        lines = data.decode("latin-1").replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    return "".join(f"{prefix}{line}\n" for line in lines)


class BodyOutput:
    """Where the body goes: a file (opened when the body starts) or stdout."""

    def __init__(self, path: Path | None, stdout: IO[bytes], terminal: bool) -> None:
        self.path = path
        self.stdout = stdout
        self.terminal = terminal and path is None
        self.file: IO[bytes] | None = None
        self.written = 0
        self.withheld = False

    def open(self) -> None:
        """Open the output file; L{FetchError} when it cannot be written."""
        if self.path is None or self.file is not None:
            return
        try:
            self.file = self.path.open("wb")
        except OSError as e:
            raise FetchError(WRITE, f"cannot write {self.path}: {e.strerror}") from None

    def write(self, data: bytes) -> None:
        """Write C{data}, or withhold a binary body from a terminal."""
        if self.withheld:
            return
        if self.terminal and b"\0" in data:
            self.withheld = True
            return
        target = self.file if self.file is not None else self.stdout
        try:
            target.write(data)
            if target is self.stdout:
                target.flush()
        except OSError as e:
            if self.path is None:
                discard_stdout()
            where = self.path or "stdout"
            raise FetchError(WRITE, f"cannot write {where}: {e.strerror}") from None
        self.written += len(data)

    def close(self) -> FetchError | None:
        """Close the file, if one was opened: what is still buffered is written
        now, so a full disk may show only here; that error, or None."""
        if self.file is None:
            return None
        file, self.file = self.file, None
        try:
            file.close()
        except OSError as e:
            return FetchError(WRITE, f"cannot write {self.path}: {e.strerror}")
        return None


class CommandObserver(FetchObserver):
    """Prints what the fetch sees, as the options ask, and saves the body."""

    def __init__(self, args: argparse.Namespace, output: BodyOutput) -> None:
        self.args = args
        self.output = output
        self.err: IO[str] = sys.stderr
        # -I: the header is the output, to stdout or -o FILE (as curl -I),
        # even with -s; -X HEAD keeps the header apart, as for any method
        self.head_only = bool(args.head)
        body_on_stdout = output.path is None
        self.header_stream: IO[bytes] = (
            sys.stderr.buffer if body_on_stdout else sys.stdout.buffer
        )
        self.warnings: list[str] = []
        self.progress: Any = None
        self.failed_status: ResponseHead | None = None
        self.retries = 0

    def info(self, text: str) -> None:
        """A C{-v} line on stderr."""
        if self.args.verbose:
            self.err.write(f"* {text}\n")
            self.err.flush()

    def resolved(self, host: str, addresses: list[str]) -> None:
        """Say what the name resolved to."""
        self.info(f"{host} is {', '.join(addresses)}")

    def connected(self, peer: str, local: str | None = None) -> None:
        """Say where we connected (and from where, when that was asked for)."""
        self.info(f"connected to {peer}" + (f" from {local}" if local else ""))

    def tls_established(self, description: str) -> None:
        """Say which TLS session was made."""
        self.info(f"TLS: {description}")

    def proxy_secured(self, proxy: Proxy, version: str, cipher: str) -> None:
        """Say which TLS session the connection to an https:// proxy made."""
        self.info(f"TLS to the proxy: {version}, {cipher}")

    def tunnel_opened(self, proxy: Proxy, asked: bytes, answered: bytes) -> None:
        """Show what opened the tunnel through C{-x}'s proxy (C{-v}): the
        CONNECT and the proxy's answer as text, SOCKS's bytes in hex (a
        password's as C{xx})."""
        if not self.args.verbose:
            return
        if proxy.scheme in ("http", "https"):
            self.err.write(prefixed(asked, "> ", self.args.show_crlf))
            self.err.write(prefixed(answered, "< ", self.args.show_crlf))
        else:
            kind = proxy.scheme[:6].upper()  # SOCKS5 or SOCKS4
            self.info(f"{kind} sent {socks_sent_shown(asked)}")
            self.info(f"{kind} received {answered.hex(' ')}: the tunnel is open")
        self.err.flush()

    def request_sent(self, data: bytes) -> None:
        """Show the request bytes (C{-v})."""
        if not self.args.verbose:
            return
        head, blank, body = data.partition(b"\r\n\r\n")
        if self.args.request_file is not None:
            head, body = data, b""
        self.err.write(prefixed(head + blank, "> ", self.args.show_crlf))
        if body:
            self.err.write(f"* {len(body)} body bytes sent\n")
        self.err.flush()

    def head_received(self, head: ResponseHead) -> None:
        """Print the header section as it arrived."""
        raw = visible(head.raw).encode() if self.args.show_crlf else head.raw
        if self.head_only:
            self.output.open()
            self.output.write(raw)
            return
        if self.args.silent:
            return
        try:
            self.header_stream.write(raw)
            self.header_stream.flush()
        except OSError as e:
            if self.header_stream is sys.stdout.buffer:
                discard_stdout()
            raise FetchError(WRITE, f"cannot write the header: {e.strerror}") from None

    def body_started(self, head: ResponseHead, length: int | None) -> None:
        """Open the output, and a progress bar on a terminal."""
        if self.args.fail and head.status >= 400:
            self.failed_status = head
            return
        self.output.open()
        if not self.args.silent and sys.stderr.isatty() and not self.output.terminal:
            from tqdm import tqdm

            self.progress = tqdm(
                total=length,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                leave=False,
            )

    def body_received(self, data: bytes) -> None:
        """Save body bytes."""
        if self.failed_status is not None:
            return
        self.output.write(data)
        if self.progress is not None:
            self.progress.update(len(data))

    def body_finished(self) -> None:
        """Close the progress bar."""
        self.close_progress()

    def close_progress(self) -> None:
        """Take the progress bar off the terminal."""
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def warning(self, text: str) -> None:
        """Say a protocol violation on stderr (also with C{-s})."""
        self.warnings.append(text)
        self.err.write(f"{PROG}: warning: {text}\n")
        self.err.flush()

    def retrying(self, reason: str, wait: float, left: int) -> None:
        """Say that a transient failure is tried again (not with C{-s}), as
        curl's warning does."""
        self.retries += 1
        if self.args.silent:
            return
        more = {0: "the last try", 1: "1 more retry at most"}.get(
            left, f"{left} more retries at most"
        )
        self.err.write(f"{PROG}: {reason}: trying again in {wait:g} s ({more})\n")
        self.err.flush()

    def redirecting(self, url: URL) -> None:
        """Say where a redirect leads."""
        self.info(f"following the redirect to {url}")


def print_timing(timing: Timing, out: IO[str]) -> None:
    """The times of each step, from the start (as curl's -w time_* values)."""
    out.write("timing (seconds from the start):\n")
    for label, value in (
        ("dns", timing.dns),
        ("connect", timing.connect),
        ("tls", timing.tls),
        ("first byte", timing.first_byte),
        ("total", timing.total),
    ):
        if value is not None:
            out.write(f"  {label:<11} {value:.6f}\n")


def interface_option(
    text: str | None, family: int | None
) -> tuple[str | None, str | None]:
    """C{--interface} as curl takes it: (an IP address, of the version
    C{-4}/C{-6} asks for, None), or (None, the name of an interface of this
    machine; C{if!NAME} says it is one). Host names (curl's C{host!NAME})
    are not taken."""
    if text is None:
        return None, None
    name = text.removeprefix("if!")
    if text.startswith("host!"):
        raise RequestError(f"--interface {text!r}: host names are not taken")
    if name != text or ip_version(text) is None:
        if is_interface(name):
            return None, name
        raise RequestError(
            f"--interface {text!r}: neither an IP address nor an interface of "
            "this machine (host names are not taken)"
        )
    try:
        source_family(text, family, "--interface")
    except ValueError as e:
        raise RequestError(str(e)) from None
    return text, None


def split_hosts_and_ports(text: str, fields: int) -> list[str]:
    """C{text} split at its colons into C{fields} fields, an IPv6 address in
    brackets being one field (without them); ValueError if it will not go."""
    parts: list[str] = []
    rest = text
    while len(parts) < fields - 1:
        if rest.startswith("["):
            inside, closed, rest = rest[1:].partition("]")
            if not closed or (rest and not rest.startswith(":")):
                raise ValueError(text)
            parts.append(inside)
            rest = rest[1:]
        else:
            field, colon, rest = rest.partition(":")
            if not colon:
                raise ValueError(text)
            parts.append(field)
    parts.append(rest.removeprefix("[").removesuffix("]"))
    return parts


def parse_connect_to(text: str) -> tuple[str, int | None, str, int | None]:
    """C{HOST1:PORT1:HOST2:PORT2} as curl's --connect-to: an empty host or port
    matches any (1) or keeps the URL's (2); IPv6 addresses in brackets."""
    bad = RequestError(
        f"bad --connect-to {text!r} (write it as HOST1:PORT1:HOST2:PORT2; a part "
        "may be empty, an IPv6 address goes in brackets)"
    )
    try:
        host, port, to_host, to_port = split_hosts_and_ports(text, 4)
    except ValueError:
        raise bad from None
    numbers: list[int | None] = []
    for number in (port, to_port):
        if number and not (number.isdigit() and is_port(int(number))):
            raise bad
        numbers.append(int(number) if number else None)
    try:
        host, to_host = (ascii_host(h) if h else h for h in (host, to_host))
    except HostNameError as e:
        raise RequestError(f"bad --connect-to {text!r}: {e}") from None
    return host, numbers[0], to_host, numbers[1]


def parse_local_port(text: str | None) -> range | None:
    """C{NUM} or C{NUM-NUM} as curl's --local-port: the local ports to try."""
    if text is None:
        return None
    first, dash, last = text.partition("-")
    if not (first.isdigit() and (last.isdigit() or not dash)):
        raise RequestError(f"bad --local-port {text!r} (write it as NUM or NUM-NUM)")
    low, high = int(first), int(last or first)
    if not (is_port(low) and is_port(high) and low <= high):
        raise RequestError(
            f"bad --local-port {text!r}: ports are 1 to 65535, the first no more "
            "than the last"
        )
    return range(low, high + 1)


def parse_resolve(text: str) -> tuple[str, int, str]:
    """C{HOST:PORT:ADDRESS} (C{[v6]} in brackets), as curl's --resolve."""
    host, _, rest = text.partition(":")
    port, _, address = rest.partition(":")
    address = address.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not address:
        raise RequestError(f"bad --resolve {text!r} (write it as HOST:PORT:ADDRESS)")
    try:
        return ascii_host(host), int(port), address
    except HostNameError as e:
        raise RequestError(f"bad --resolve {text!r}: {e}") from None


def parser() -> argparse.ArgumentParser:
    """The options of ``echod fetch``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fetch a URL over HTTP/1.x and show exactly what crossed the "
        "wire: the response header as received, the body saved.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="http:// or https:// URL")
    out = p.add_argument_group("output")
    out.add_argument("-o", "--output", help="save the body to FILE ('-': stdout)")
    out.add_argument(
        "-O", "--remote-name", action="store_true",
        help="save the body under the URL's file name (index.html for a directory)",
    )  # fmt: skip
    out.add_argument(
        "--raw", action="store_true", help="keep a chunked body as received"
    )
    out.add_argument(
        "-s", "--silent", action="store_true", help="no header, no progress"
    )
    out.add_argument(
        "-v", "--verbose", action="store_true",
        help="also show (on stderr) the connection and the request bytes sent",
    )  # fmt: skip
    out.add_argument(
        "--show-crlf", action="store_true", help="make \\r and \\n visible"
    )
    out.add_argument(
        "--timing", action="store_true", help="print the time of each step"
    )
    out.add_argument(
        "-w", "--write-out", metavar="FORMAT",
        help="print FORMAT on stdout at the end, as curl's -w: %%{http_code}, "
        "%%{time_total}, %%{remote_ip}, ... (@FILE: the format from FILE)",
    )  # fmt: skip
    out.add_argument(
        "--lint", action="store_true",
        help="exit 9 when the response broke the protocol (always warned)",
    )  # fmt: skip
    out.add_argument(
        "-f", "--fail", action="store_true",
        help="exit 22 on an HTTP status of 400 or more, without saving the body",
    )  # fmt: skip
    req = p.add_argument_group("request")
    req.add_argument("-X", "--request", dest="method", help="the method (default GET)")
    req.add_argument(
        "-I", "--head", action="store_true", help="HEAD: the header alone, as curl -I"
    )
    req.add_argument(
        "-u", "--user", metavar="USER[:PASSWORD]",
        help="HTTP Basic authentication (asks for the password on a terminal "
        "when it is left out)",
    )  # fmt: skip
    req.add_argument("-A", "--user-agent", metavar="NAME", help="the User-Agent")
    req.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value' (repeatable)"
    )
    req.add_argument(
        "-d", "--data",
        help="send DATA as the body (POST); @FILE sends FILE's bytes as they are "
        "(curl's --data-binary @FILE), @- stdin's",
    )  # fmt: skip
    req.add_argument("--data-raw", help="send DATA as the body, a leading @ too")
    req.add_argument("--data-file", type=Path, help="send FILE as the body (POST)")
    req.add_argument("--http1.0", dest="http10", action="store_true", help="HTTP/1.0")
    req.add_argument(
        "--path-as-is", action="store_true",
        help="send the URL's path with its /./ and /../ as written (by default "
        "they are resolved first, as curl does)",
    )  # fmt: skip
    req.add_argument(
        "--request-file", type=Path,
        help="send FILE byte for byte as the whole request (raw mode)",
    )  # fmt: skip
    net = p.add_argument_group("connection")
    add_family_options(net, long=True)
    net.add_argument(
        "--connect-to", action="append", default=[],
        metavar="HOST1:PORT1:HOST2:PORT2",
        help="for HOST1:PORT1 (empty: any), connect to HOST2:PORT2 (empty: the "
        "same) instead; TLS still names and verifies HOST1 (as curl)",
    )  # fmt: skip
    net.add_argument(
        "--interface", metavar="ADDRESS|NAME",
        help="connect from this local address (its IP version is then the "
        "connection's), or through this interface (if!NAME: only an interface), "
        "as curl's --interface",
    )  # fmt: skip
    net.add_argument(
        "--local-port", metavar="NUM[-NUM]",
        help="connect from this local port, or the first free one of a range "
        "(as curl)",
    )  # fmt: skip
    net.add_argument(
        "-x", "--proxy", metavar="URL",
        help="through this proxy, always as a tunnel (curl's -x with "
        "--proxytunnel), so the server gets the bytes shown: http://[USER:"
        "PASSWORD@]HOST[:PORT] (CONNECT), socks5:// or socks5h:// (a USER:"
        "PASSWORD@ too), socks4://[USER@]",
    )  # fmt: skip
    add_proxy_tls_arguments(net, "-U")
    add_haproxy_arguments(net)
    net.add_argument(
        "--unix-socket", metavar="PATH",
        help="connect to this UNIX socket instead of the URL's host and port "
        "(every request, redirects too; the URL still gives Host and TLS's "
        "name), as curl",
    )  # fmt: skip
    net.add_argument(
        "--abstract-unix-socket", metavar="NAME",
        help="the same, to a socket in Linux's abstract namespace (ss and socat "
        "show it as @NAME), as curl",
    )  # fmt: skip
    net.add_argument("-L", "--location", action="store_true", help="follow redirects")
    net.add_argument(
        "--max-redirs", type=int, default=10, help="default 10; -1: no limit (as curl)"
    )
    net.add_argument(
        "--connect-timeout", type=float, default=30.0,
        help="seconds for lookup, connect and TLS handshake (default 30)",
    )  # fmt: skip
    net.add_argument(
        "-m", "--max-time", type=float,
        help="seconds for the whole fetch (each try, with --retry, as curl)",
    )  # fmt: skip
    net.add_argument(
        "--retry", type=int, default=0, metavar="NUM",
        help="try again up to NUM times after a transient failure: a timeout, a "
        "name not resolved, HTTP 408, 429, 500, 502, 503 or 504 (as curl)",
    )  # fmt: skip
    net.add_argument(
        "--retry-delay", type=float, metavar="SECONDS",
        help="wait this long before each retry (default: 1 s, doubled each "
        "time up to 10 minutes, or the response's Retry-After)",
    )  # fmt: skip
    net.add_argument(
        "--retry-max-time", type=float, metavar="SECONDS",
        help="start no retry later than this after the first try (0: no limit)",
    )  # fmt: skip
    net.add_argument(
        "--retry-connrefused", action="store_true",
        help="with --retry, a refused connection is transient too",
    )  # fmt: skip
    net.add_argument(
        "--read-timeout", type=float, default=120.0,
        help="seconds without a byte from the server (default 120; 0: none)",
    )  # fmt: skip
    net.add_argument(
        "--resolve", action="append", default=[], metavar="HOST:PORT:ADDRESS",
        help="connect to ADDRESS for HOST:PORT (no DNS)",
    )  # fmt: skip
    net.add_argument(
        "--max-header-size", type=int, default=65536, help="bytes (default 65536)"
    )
    net.add_argument("--max-filesize", type=int, help="refuse a longer body (bytes)")
    tls = p.add_argument_group("TLS")
    tls.add_argument("--cacert", type=Path, help="trust this CA file instead")
    tls.add_argument("--cert", type=Path, help="client certificate (mutual TLS)")
    tls.add_argument("--key", type=Path, help="client key (mutual TLS)")
    tls.add_argument(
        "-k", "--insecure", action="store_true",
        help="do not verify the server's certificate (warns)",
    )  # fmt: skip
    add_tls_version_arguments(tls)
    return p


@dataclass(frozen=True)
class Command:
    """The parsed command: what to send, how, and where the body goes."""

    request: Request
    options: FetchOptions
    output: Path | None
    write_out: WriteOut | None = None


def _readable(path: Path, what: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise RequestError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None


def _read(path: Path, what: str) -> bytes:
    """The bytes of C{path}, read once; L{RequestError} names C{what} it is."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise RequestError(f"cannot read {what} {str(path)!r}: {e.strerror}") from None


def user_credentials(user: str) -> str:
    """C{USER:PASSWORD} from C{-u}; for C{-u USER}, the password asked on the
    terminal (as curl does), or L{RequestError} when there is none."""
    if ":" in user:
        return user
    if not sys.stdin.isatty():
        raise RequestError(
            f"-u {user}: no password, and no terminal to ask for it: "
            "give -u USER:PASSWORD"
        )
    try:
        password = getpass.getpass(f"Enter host password for user '{user}':")
    except (EOFError, KeyboardInterrupt):
        raise RequestError("no password given") from None
    return f"{user}:{password}"


def request_body(args: argparse.Namespace) -> tuple[bytes | None, Path | None]:
    """The body to send, in memory or as a file to stream: C{-d DATA},
    C{-d @FILE} (the file's bytes as they are: curl's C{--data-binary @FILE};
    curl's C{-d @FILE} also drops CR and LF), C{-d @-} (stdin), C{--data-raw},
    C{--data-file}."""
    if args.data_raw is not None:
        return args.data_raw.encode(), None
    if args.data is None:
        return None, args.data_file
    if not args.data.startswith("@"):
        return args.data.encode(), None
    name = args.data[1:]
    if name == "-":
        return sys.stdin.buffer.read(), None
    if not name:
        raise RequestError("-d @ needs a file name (@FILE), or use --data-raw @")
    # in memory and form-typed, as curl (--data-file streams)
    return _read(Path(name), "the data file"), None


def build(args: argparse.Namespace) -> Command:
    """Options to a request and fetch options; L{RequestError} for bad ones."""
    url = parse_url(args.url, args.path_as_is)
    given = [args.data, args.data_raw, args.data_file]
    if sum(value is not None for value in given) > 1:
        raise RequestError("-d, --data-raw and --data-file cannot go together")
    body, data_file = request_body(args)
    if args.output is not None and args.remote_name:
        raise RequestError("-o and -O cannot go together")
    for name in ("connect_timeout", "max_time"):
        value = getattr(args, name)
        if value is not None and not 0 < value < math.inf:
            option = f"--{name.replace('_', '-')}"
            raise RequestError(f"{option} must be a number of seconds more than 0")
    if args.retry < 0:
        raise RequestError("--retry is a number of retries, 0 or more")
    for name in ("retry_delay", "retry_max_time"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < math.inf:
            option = f"--{name.replace('_', '-')}"
            raise RequestError(f"{option} must be a number of seconds, 0 or more")
    if not 0 <= args.read_timeout < math.inf:
        raise RequestError("--read-timeout must be a number of seconds (0: none)")
    if args.max_redirs < -1:
        raise RequestError("--max-redirs is a number of redirects, or -1 for no limit")
    if args.max_header_size < 1024:
        raise RequestError("--max-header-size is at least 1024 (bytes)")
    if args.max_filesize is not None and args.max_filesize < 0:
        raise RequestError("--max-filesize cannot be negative")
    headers = tuple(parse_header(h) for h in args.header)
    named = {name.lower() for name, _ in headers}
    credentials = user_credentials(args.user) if args.user else url.userinfo
    if credentials is not None and "authorization" not in named:
        # -u, or user:password@ in the URL, as curl sends them
        headers += (basic_authorization(credentials),)
    if args.user_agent is not None and "user-agent" not in named:
        headers += (("User-Agent", args.user_agent),)
    raw = None
    if args.request_file is not None:
        raw = _read(args.request_file, "the request file")
    if data_file is not None:
        _readable(data_file, "the data file")
    has_body = body is not None or data_file is not None
    if args.head and has_body:
        raise RequestError("-I (HEAD) and a body (-d, --data-raw, --data-file) "
                           "cannot go together")  # fmt: skip
    method = args.method or ("HEAD" if args.head else "POST" if has_body else "GET")
    if not method.isalpha():
        raise RequestError(f"bad method {method!r}")
    request = Request(
        url,
        method,
        headers,
        body,
        data_file,
        args.http10,
        raw,
    )
    source, interface = interface_option(args.interface, args.family)
    unix_socket = unix_socket_path(args)
    proxy = None
    if args.proxy is not None:
        if unix_socket is not None:
            raise RequestError("-x (a proxy) and a UNIX socket cannot go together")
        try:
            proxy = parse_proxy(args.proxy)
        except ClientError as e:
            raise RequestError(str(e)) from None
    try:
        proxy = with_proxy_user(proxy, args.proxy_user)
        proxy = with_proxy_tls(proxy, args.proxy_cacert, args.proxy_insecure)
    except ClientError as e:
        raise RequestError(str(e)) from None
    haproxy = args.haproxy_protocol or args.haproxy_clientip is not None
    try:
        client_ip = check_client_ip(args.haproxy_clientip)
    except ClientError as e:
        raise RequestError(str(e)) from None
    if haproxy and proxy is not None:
        raise RequestError(
            "--haproxy-protocol and -x cannot go together: the header would name "
            "the connection to the proxy"
        )
    options = FetchOptions(
        tls=client_tls(args),
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout or None,
        max_time=args.max_time,
        max_header_size=args.max_header_size,
        max_body_size=args.max_filesize,
        raw_body=args.raw,
        resolve=tuple(parse_resolve(r) for r in args.resolve),
        family=args.family,
        source=source,
        interface=interface,
        local_ports=parse_local_port(args.local_port),
        connect_to=tuple(parse_connect_to(c) for c in args.connect_to),
        follow_redirects=args.location,
        max_redirects=None if args.max_redirs == -1 else args.max_redirs,
        unix_socket=unix_socket,
        proxy=proxy,
        haproxy_protocol=haproxy,
        haproxy_client_ip=client_ip,
        # as in curl, --retry-delay 0 is the default backoff, --retry-max-time
        # 0 no limit
        retry=RetryPolicy(
            args.retry,
            args.retry_delay or None,
            args.retry_max_time or None,
            args.retry_connrefused,
        ),
    )
    output: Path | None = None
    if args.remote_name:
        output = Path(url.file_name())
    elif args.output not in (None, "-"):
        output = Path(args.output)
    return Command(request, options, output, write_out_format(args.write_out))


UNIX_PATH_MAX = 107
"""The longest UNIX socket path Linux takes, in bytes (sun_path, less its NUL)."""


def unix_socket_path(args: argparse.Namespace) -> str | None:
    """C{--unix-socket PATH}, or C{--abstract-unix-socket NAME} as the NUL
    that marks an abstract name and C{NAME}; L{RequestError} for an empty or
    too long one, or with the options that choose a TCP connection."""
    option, path = "--unix-socket", cast("str | None", args.unix_socket)
    if path is not None and args.abstract_unix_socket is not None:
        raise RequestError(
            "--unix-socket and --abstract-unix-socket cannot go together"
        )
    if args.abstract_unix_socket is not None:
        option, path = "--abstract-unix-socket", "\0" + args.abstract_unix_socket
    if path is None:
        return None
    if path in ("", "\0"):
        raise RequestError(f"{option}: no socket path")
    if len(path.encode()) > UNIX_PATH_MAX:
        raise RequestError(
            f"{option}: {len(path.encode())} bytes: a UNIX socket path holds at "
            f"most {UNIX_PATH_MAX}"
        )
    tcp_only = [
        name
        for name, given in (
            ("-4", args.family == 4),
            ("-6", args.family == 6),
            ("--resolve", args.resolve),
            ("--connect-to", args.connect_to),
            ("--interface", args.interface is not None),
            ("--local-port", args.local_port is not None),
        )
        if given
    ]
    if tcp_only:
        raise RequestError(
            f"{options_apply(tcp_only)} to TCP connections, not to {option}"
        )
    return path


def write_out_format(text: str | None) -> WriteOut | None:
    """C{-w FORMAT}, C{-w @FILE} or C{-w @-} (stdin), parsed; L{RequestError}
    for an unknown variable or a file that cannot be read."""
    if text is None:
        return None
    if text.startswith("@"):
        name = text[1:]
        data = sys.stdin.buffer.read() if name == "-" else _read(Path(name), "-w")
        text = data.decode("utf-8", "replace")
    try:
        return WriteOut.parse(text)
    except WriteOutError as e:
        raise RequestError(str(e)) from None


def main(argv: Sequence[str]) -> int:
    """Run ``echod fetch``; the result is the exit code."""
    args = parse_arguments(parser(), argv)
    if isinstance(args, int):
        return args
    try:
        command = build(args)
    except RequestError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return USAGE
    terminal = sys.stdout.isatty() and args.output != "-"
    output = BodyOutput(command.output, sys.stdout.buffer, terminal)
    observer = CommandObserver(args, output)
    install_if_unset()  # echod's lean reactor, as the daemon's
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor
    outcome: list[FetchResult | ClientError] = []
    interrupted: list[bool] = []

    def go() -> None:
        d = fetch(reactor, command.request, command.options, observer)
        d.addCallbacks(outcome.append, lambda f: outcome.append(_error(f)))
        d.addBoth(lambda _: None if interrupted else reactor.stop())

    def shutting_down() -> None:
        if not outcome:  # stopped by a signal before the fetch ended
            interrupted.append(True)

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    started = time.perf_counter()
    reactor.callWhenRunning(go)
    reactor.run()
    observer.close_progress()
    closing = output.close()
    if closing is not None and outcome and not isinstance(outcome[0], ClientError):
        outcome[0] = closing  # the body did not all reach the file
    if interrupted or not outcome:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return INTERRUPTED
    result = outcome[0]
    code = finish(args, command, output, observer, result)
    if command.write_out is not None:
        elapsed = time.perf_counter() - started
        if isinstance(result, ClientError):
            ended = Outcome(None, code, str(result), elapsed, observer.retries)
        else:
            ended = Outcome(result, code, retries=observer.retries)
        failed = write_report(command.write_out.render(ended))
        if failed is not None and code == OK:
            return failed
    return code


def write_report(text: str) -> int | None:
    """Write the C{-w} report to stdout; None, or the exit code when it was
    lost. A reader that went away (EPIPE) or a closed stdout (EBADF) did not
    want it: dropped without a word, as the client's and bench's reports."""
    report = ReportStdout(sys.stdout)
    report.write(text)
    report.flush()
    if report.error is None:
        return None
    sys.stderr.write(f"{PROG}: cannot write the -w report: {report.error.strerror}\n")
    return WRITE


def finish(
    args: argparse.Namespace,
    command: Command,
    output: BodyOutput,
    observer: CommandObserver,
    result: FetchResult | ClientError,
) -> int:
    """Say how the fetch ended; the exit code."""
    if isinstance(result, ClientError):
        where = (
            f" ({output.written} bytes left in {output.path})"
            if output.written and output.path is not None and result.code != WRITE
            else ""
        )
        if isinstance(result, ServerNotReachedError) and command.options.proxy is None:
            where += proxy_hint(command.request.url, os.environ)
        sys.stderr.write(
            f"{PROG}: {command.request.url.authority()}: {result}{where}\n"
        )
        return result.code
    if args.timing:
        print_timing(result.timing, sys.stderr)
    if output.withheld:
        sys.stderr.write(
            f"{PROG}: the body is binary and stdout is a terminal: not shown "
            "(use -o FILE, -O, or -o - to print it anyway)\n"
        )
    if observer.failed_status is not None:
        head = observer.failed_status
        sys.stderr.write(f"{PROG}: the server answered {head.status} {head.reason}\n")
        return HTTP_ERROR
    if args.lint and observer.warnings:
        sys.stderr.write(
            f"{PROG}: {len(observer.warnings)} protocol violation(s) (--lint)\n"
        )
        return MALFORMED
    return OK


def proxy_hint(url: URL, environ: Mapping[str, str]) -> str:
    """Say so when curl would have gone through a proxy that echod fetch ignores.

    curl (and wget, pip, ...) read C{http_proxy} (lower case only, as curl),
    C{https_proxy}, C{all_proxy} and C{no_proxy}; echod fetch always connects
    to the server itself, so that what it shows is what that server got. On a
    network that lets only a proxy out, that direct connection is what fails.
    """
    names = ["http_proxy"] if url.scheme == "http" else ["https_proxy", "HTTPS_PROXY"]
    names += ["all_proxy", "ALL_PROXY"]
    spelled = next((name for name in names if environ.get(name)), None)
    if spelled is None:
        return ""
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if bypasses_proxy(url.host, no_proxy):
        return ""
    return (
        f" ({spelled} is set: echod fetch does not read it, it connects to the "
        "server itself; -x URL goes through a proxy)"
    )


def bypasses_proxy(host: str, no_proxy: str) -> bool:
    """Whether curl would leave C{host} out of the proxy, by C{no_proxy}.

    curl's rules: a comma-separated list; C{*} is every host; a name matches
    itself and its subdomains (a leading dot is optional); an IP address or
    CIDR range matches the addresses in it.
    """
    host = host.lower().rstrip(".")
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        address = None
    for entry in no_proxy.lower().split(","):
        entry = entry.strip().lstrip(".").rstrip(".")
        if entry.startswith("[") and entry.endswith("]"):
            entry = entry[1:-1]
        if entry == "*":
            return True
        if not entry:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host == entry or host.endswith("." + entry):
            return True
    return False


def _error(failure: Failure) -> ClientError:
    if isinstance(failure.value, ClientError):
        return failure.value
    return FetchError(INTERNAL, f"unexpected failure: {failure.getErrorMessage()}")
