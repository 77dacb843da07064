"""What ``echod fetch`` sends: a URL taken apart, and the request bytes built by hand.

No HTTP library writes the request: the bytes built here are the bytes that
go on the wire, so that C{-v} can show them exactly. The path and query are
sent as the URL gives them (a space or a character outside ASCII is refused,
with the percent-encoding to use instead); an internationalized host name is
sent as its A-labels (L{echod.hostnames}).
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from echod import __version__
from echod.hostnames import HostNameError, ascii_host
from echod.zones import missing_zone, needs_zone

DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = f"echod/{__version__}"


class RequestError(ValueError):
    """A URL or request option that cannot be used; the message says why."""


@dataclass(frozen=True)
class URL:
    """An http or https URL, taken apart."""

    scheme: str
    host: str  # without brackets, for IPv6 literals
    port: int
    target: str  # path and query, as given ("/" when empty)
    userinfo: str | None = field(default=None, repr=False)
    """C{user:password} from the URL, percent-decoded (never shown)."""

    @property
    def tls(self) -> bool:
        """Whether the connection is made with TLS."""
        return self.scheme == "https"

    def authority(self) -> str:
        """The Host header: the host, and the port when it is not the default.

        An IPv6 zone (C{%eth0}) names an interface of this machine, which
        means nothing to the server: it is left out, as curl does.
        """
        address = self.host.partition("%")[0]
        host = f"[{address}]" if ":" in address else address
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    def file_name(self) -> str:
        """The name C{-O} saves to: the path's last segment, or index.html."""
        path = self.target.split("?", 1)[0]
        name = path.rsplit("/", 1)[-1]
        if name in ("", ".", ".."):
            return "index.html"
        return name

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority()}{self.target}"


def parse_url(text: str, path_as_is: bool = False) -> URL:
    """Take an http or https URL apart; L{RequestError} says what is wrong with it.

    The path's C{.} and C{..} segments are resolved (L{without_dot_segments}),
    as curl does before sending, unless C{path_as_is} (curl's C{--path-as-is}).
    """
    if "://" not in text:
        raise RequestError(f"{text!r} is not a URL (it needs http:// or https://)")
    text = with_ascii_host(text)
    for ch in text:
        if ch == " ":
            raise RequestError("the URL has a space in it (write it as %20)")
        if ord(ch) < 0x21 or ord(ch) > 0x7E:
            raise RequestError(
                f"the URL has the character {ch!r} in it "
                f"(write it as {percent_encoded(ch, 'utf-8')})"
            )
    try:
        parts = urlsplit(text)
        bracketed = parts.netloc.rpartition("@")[2].startswith("[")
        if bracketed and parts.hostname is not None:
            ipaddress.IPv6Address(parts.hostname)  # Python before 3.11.4 let any by
    except ValueError:  # an unclosed [ or not an IPv6 address between [ and ]
        raise RequestError(f"bad IPv6 address in {text!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise RequestError(f"unsupported scheme {parts.scheme!r} (http and https only)")
    userinfo = None
    if parts.username is not None:
        userinfo = unquote(parts.username) + ":" + unquote(parts.password or "")
    host = parts.hostname
    if not host:
        raise RequestError(f"no host in {text!r}")
    if bracketed and "%" in host:
        host = with_zone(text, parts.netloc)
    if needs_zone(host):
        example = f"{scheme}://[{host}%25eth0]/ (RFC 6874's %25 for the %)"
        raise RequestError(missing_zone(host, example))
    try:
        port = parts.port
    except ValueError:
        raise RequestError(f"bad port in {text!r}") from None
    if port == 0:
        raise RequestError(f"bad port in {text!r}")
    # The path and query as written: urlsplit keeps them; the fragment stays here.
    target = parts.path or "/"
    if not target.startswith("/"):
        target = "/" + target
    if not path_as_is:
        target = without_dot_segments(target)
    if parts.query or text.split("#", 1)[0].endswith("?"):
        target += "?" + parts.query
    return URL(scheme, host, port or DEFAULT_PORTS[scheme], target, userinfo)


def without_dot_segments(path: str) -> str:
    """C{path} with its C{.} and C{..} segments resolved: RFC 3986's
    remove_dot_segments (section 5.2.4), which curl applies to a URL's path
    before sending it (C{/a/./b/../c}: C{/a/c}; never above the root).
    Percent-encoded dots (C{%2e}) are not dots here, as in curl."""
    rest, out = path, list[str]()
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith("./"):
            rest = rest[2:]
        elif rest.startswith("/./") or rest == "/.":
            rest = "/" + rest[3:]
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            if out:
                out.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            end = rest.find("/", 1)
            end = len(rest) if end < 0 else end
            out.append(rest[:end])
            rest = rest[end:]
    return "".join(out)


def percent_encoded(ch: str, charset: str) -> str:
    """C{ch}'s bytes in C{charset}, percent-encoded (C{é}: C{%C3%A9})."""
    return "".join(f"%{b:02X}" for b in ch.encode(charset, "replace"))


def split_authority(text: str) -> tuple[str, str, str]:
    """C{scheme://}, the authority (C{user@host:port}) and the rest of a URL."""
    scheme, sep, rest = text.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    return scheme + sep, rest[:end], rest[end:]


def with_ascii_host(text: str) -> str:
    """C{text} with an internationalized host name as its A-labels (as curl).

    Only the host is converted: a character outside ASCII anywhere else in
    the URL is left for L{parse_url} to refuse.
    """
    start, authority, rest = split_authority(text)
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        return text
    host, colon, port = hostport.partition(":")
    try:
        host = ascii_host(host)
    except HostNameError as e:
        raise RequestError(str(e)) from None
    return start + userinfo + at + host + colon + port + rest


def with_zone(text: str, netloc: str) -> str:
    """The IPv6 address and zone of a URL's C{[fe80::1%25eth0]} (RFC 6874;
    also C{%eth0}, as curl takes it) as C{fe80::1%eth0}; the zone keeps its
    case (urlsplit's hostname lowers it), and must name an interface."""
    inside = netloc.rpartition("@")[2][1:].partition("]")[0]
    address, _, zone = inside.partition("%")
    zone = unquote(zone[2:]) if zone.startswith("25") else zone
    if not zone or any(c in zone for c in "%/[]@ "):
        raise RequestError(f"bad IPv6 zone in {text!r}")
    return f"{address}%{zone}"


def basic_authorization(userinfo: str) -> tuple[str, str]:
    """The header for C{user:password} from a URL: HTTP Basic (RFC 7617), UTF-8."""
    return "Authorization", "Basic " + base64.b64encode(userinfo.encode()).decode()


def redirect_url(base: URL, location: str) -> URL:
    """The URL a Location header points to, relative to C{base}.

    C{location} is the header's bytes as Latin-1 text. A server that writes
    raw UTF-8 there (RFC 9110 asks for ASCII) is read as browsers and curl
    read it: the bytes as UTF-8 when they are, an international host as its
    A-labels, and a space or a byte outside ASCII after the host
    percent-encoded (C{/café} is requested as C{/caf%C3%A9}).
    """
    raw = location.strip().encode("latin-1")
    try:
        text, charset = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, charset = raw.decode("latin-1"), "latin-1"
    try:
        joined = urljoin(str(base), text)
    except ValueError:  # urljoin splits the location as parse_url does
        raise RequestError(f"bad IPv6 address in {location.strip()!r}") from None
    start, authority, rest = split_authority(joined)
    beyond = "".join(
        ch if 0x20 < ord(ch) < 0x7F else percent_encoded(ch, charset) for ch in rest
    )
    return parse_url(start + authority + beyond)


@dataclass(frozen=True)
class Request:
    """A request to send: built from options, or hand-written (C{raw})."""

    url: URL
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    body_file: Path | None = None
    http10: bool = False
    raw: bytes | None = field(default=None, repr=False)

    def body_length(self) -> int | None:
        """How many body bytes follow the head, or None for no body."""
        if self.body is not None:
            return len(self.body)
        if self.body_file is not None:
            return self.body_file.stat().st_size
        return None

    def head_bytes(self) -> bytes:
        """The request line and header section, exactly as sent."""
        if self.raw is not None:
            return self.raw
        version = "HTTP/1.0" if self.http10 else "HTTP/1.1"
        defaults: list[tuple[str, str]] = [
            ("Host", self.url.authority()),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
        ]
        if not self.http10:
            defaults.append(("Connection", "close"))
        length = self.body_length()
        if length is not None:
            defaults.append(("Content-Length", str(length)))
            if self.body is not None:
                defaults.append(("Content-Type", "application/x-www-form-urlencoded"))
        given = {name.lower() for name, _ in self.headers}
        lines = [f"{self.method} {self.url.target} {version}"]
        lines += [f"{n}: {v}" for n, v in defaults if n.lower() not in given]
        # "Name:" with no value drops a default header, as curl does.
        lines += [f"{n}: {v}" for n, v in self.headers if v != ""]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def method_sent(self) -> str:
        """The method on the wire (the first word of a hand-written request)."""
        if self.raw is None:
            return self.method
        first = self.raw.split(b" ", 1)[0]
        return first.decode("latin-1") if first.isalpha() else "GET"


def parse_header(text: str) -> tuple[str, str]:
    """A C{-H 'Name: value'} option; C{'Name:'} removes a default header."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c in name for c in " \t\r\n"):
        raise RequestError(f"bad header {text!r} (write it as 'Name: value')")
    if "\r" in value or "\n" in value:
        raise RequestError(f"bad header {text!r} (no line breaks in a value)")
    return name, value.strip()
