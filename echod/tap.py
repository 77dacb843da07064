"""twistd's view of echod: the command-line options and C{makeService}.

Configuration flows one way: L{Options} (parsed by twistd) becomes one frozen
L{EchoSettings}, which L{makeService} hands to the service and its factories.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from echod import __version__
from echod.access import (
    EVERYONE,
    AccessFileError,
    AccessList,
    AccessSources,
    Network,
    parse_networks,
)
from echod.cli import options_apply
from echod.fdlimit import raise_file_limit
from echod.reactor import enable_busy_poll, install_if_unset
from echod.service import EchoService, ListenError
from echod.settings import (
    DEFAULT_BACKLOG,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PORT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    DEFAULT_UDP_MAX_SIZE,
    DEFAULT_UDP_RATE,
    LOG_CONNECTIONS,
    MAX_UDP_PAYLOAD,
    EchoSettings,
    UDPSettings,
)
from echod.tos import parse_tos
from echod.twistdoptions import check_twistd_options, log_destination
from echod.zones import missing_zone, needs_zone

LOG_FORMATS = ("text", "json")
TLS_LISTENERS = ("ssl:", "tls:", "haproxy:ssl:", "haproxy:tls:")
"""The --port endpoint types that the --tls-* options apply to."""
MAX_BACKLOG = 2**31 - 1
"""listen(2) takes a C int; the kernel caps it at net.core.somaxconn."""


def _tos(value: str) -> int:
    """C{--tos}: nc's C{-T} names and numbers (L{parse_tos})."""
    try:
        return parse_tos(value)
    except ValueError as e:
        raise ValueError(str(e).replace("-T ", "--tos ", 1)) from None


def _number(
    kind: type[int] | type[float],
    minimum: float,
    name: str,
    maximum: float | None = None,
) -> Any:
    """A coercer for usage.Options that names the option in its error.

    Infinity is refused (a timeout of C{inf} would never fire; 0 is how an
    option says "never"), as is anything above C{maximum}.
    """

    def coerce(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(
                f"{name} must be {'a whole number' if kind is int else 'a number'}"
                f", not {value!r}"
            ) from None
        if number != number or number < minimum:  # NaN, or below the floor
            raise ValueError(f"{name} must be at least {minimum:g}, not {value!r}")
        if not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number, not {value!r}")
        if maximum is not None and number > maximum:
            raise ValueError(f"{name} must be at most {maximum}, not {value!r}")
        return number

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


def networks_option(option: str, value: str) -> tuple[Network, ...]:
    """The networks of C{--allow} or C{--deny}, or a usage error naming it."""
    try:
        return parse_networks(value)
    except ValueError as e:
        raise usage.UsageError(f"{option}: {e}") from None


def parse_udp(value: str) -> tuple[str, int]:
    """C{PORT}, C{ADDRESS:PORT} or C{[IPV6]:PORT} as (interface, port).

    The interface is an IP address (what a UDP socket binds), checked here so
    that a typo is a usage error rather than a failure to listen.
    """
    interface, _, port_text = value.rpartition(":")
    if interface.startswith("[") or interface.endswith("]"):
        inner = interface[1:-1]
        if not (interface.startswith("[") and interface.endswith("]") and ":" in inner):
            raise usage.UsageError(f"--udp: bad IPv6 address in {value!r}")
        interface = inner
    try:
        port = int(port_text)
    except ValueError:
        raise usage.UsageError(
            f"--udp takes PORT or INTERFACE:PORT, not {value!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"--udp port must be 0-65535, not {port}")
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise usage.UsageError(
                f"--udp: {interface!r} is not an IP address (in {value!r})"
            ) from None
        if needs_zone(interface):
            example = f"--udp [{interface}%eth0]:{port}"
            raise usage.UsageError(f"--udp: {missing_zone(interface, example)}")
    return interface, port


class Options(usage.Options):
    """Options of C{twistd echod}."""

    synopsis = "[options]"
    longdesc = (
        "An echo daemon that returns every byte, in order, with bounded memory "
        "per connection. Listens on tcp:10000 unless --port is given."
    )

    optParameters = [
        [
            "idle-timeout",
            None,
            DEFAULT_IDLE_TIMEOUT,
            "Seconds without progress before a connection is closed (0: never).",
            _number(float, 0, "--idle-timeout"),
        ],
        [
            "max-connections",
            None,
            0,
            "Most open connections across all listeners (0: no limit).",
            _number(int, 0, "--max-connections"),
        ],
        [
            "max-per-ip",
            None,
            0,
            "Most open connections from one client address (0: no limit).",
            _number(int, 0, "--max-per-ip"),
        ],
        [
            "drain-timeout",
            None,
            DEFAULT_DRAIN_TIMEOUT,
            "Seconds open connections may go on after SIGTERM.",
            _number(float, 0, "--drain-timeout"),
        ],
        [
            "backlog",
            None,
            DEFAULT_BACKLOG,
            "Listen queue for tcp, tcp6, ssl, tls and unix endpoints that do not "
            "set backlog= themselves (capped by net.core.somaxconn).",
            _number(int, 1, "--backlog", MAX_BACKLOG),
        ],
        [
            "udp-rate",
            None,
            DEFAULT_UDP_RATE,
            "UDP datagrams per second answered per source address.",
            _number(int, 1, "--udp-rate"),
        ],
        [
            "udp-max-size",
            None,
            DEFAULT_UDP_MAX_SIZE,
            "Largest UDP datagram echoed; larger ones are dropped.",
            _number(int, 1, "--udp-max-size", MAX_UDP_PAYLOAD),
        ],
        ["tls-cert", None, None, "Certificate (chain) PEM for ssl: listeners."],
        ["tls-key", None, None, "Private key PEM for ssl: listeners."],
        [
            "tls-min-version",
            None,
            "1.2",
            "Oldest TLS version accepted: 1.2 or 1.3.",
        ],
        [
            "tls-client-ca",
            None,
            None,
            "Mutual TLS: clients must present a certificate that chains to this "
            "CA file.",
        ],
        [
            "tls-handshake-timeout",
            None,
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            "Seconds a TLS handshake may take.",
            _number(float, 0.1, "--tls-handshake-timeout"),
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus /metrics and /healthz on this endpoint "
            "(e.g. tcp:9100:interface=127.0.0.1; off by default).",
        ],
        ["log-format", None, "text", "Log format: text or json (one object a line)."],
        [
            "log-connections",
            None,
            "all",
            "Which ended connections get a log line: all, abnormal (reset, timed "
            "out, TLS error, cut at stop; as HAProxy's dontlog-normal) or none. "
            "Refusals are always logged; /metrics counts every connection.",
        ],
        [
            "tos",
            None,
            None,
            "Mark what TCP, TLS and UDP listeners send (SYN-ACK and echoes) with "
            "this IP TOS (IPv6 traffic class): ef, af11 ... af43, cs0 ... cs7, "
            "or a number (0x for hex), as nc -T names it.",
            _tos,
        ],
        [
            "busy-poll",
            None,
            0,
            "Microseconds to keep polling instead of sleeping after each I/O "
            "event (lower latency, a busy core while traffic flows; 0: off).",
            _number(int, 0, "--busy-poll"),
        ],
    ]

    optFlags = [
        [
            "reuse-port",
            None,
            "Open tcp, tcp6, ssl and tls listeners with SO_REUSEPORT, so that "
            "several echod processes share a port (see: echod serve --workers).",
        ],
        [
            "no-write-through",
            None,
            "Always queue echoes through Twisted's public write path "
            "(for comparison; slower).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["udp"] = []
        self["allow"] = []
        self["deny"] = []
        self["allowfile"] = []
        self["denyfile"] = []
        self["metrics-allow"] = []
        self["access"] = EVERYONE
        self["log-file"] = None
        self["writes-log"] = False

    def opt_port(self, description: str) -> None:
        """Listen on this Twisted server endpoint (repeatable; default tcp:10000)."""
        self["ports"].append(description)

    opt_p = opt_port

    def opt_udp(self, value: str) -> None:
        """Also serve UDP echo on [INTERFACE:]PORT (repeatable; off by default)."""
        self["udp"].append(parse_udp(value))

    def opt_allow(self, value: str) -> None:
        """Serve only these addresses and networks: 10.0.0.0/8,192.0.2.7,
        2001:db8::/32 (repeatable; echo listeners, TCP and UDP; as ncat)."""
        self["allow"].extend(networks_option("--allow", value))

    def opt_deny(self, value: str) -> None:
        """Never serve these addresses and networks; wins over --allow
        (repeatable; as ncat)."""
        self["deny"].extend(networks_option("--deny", value))

    def opt_metrics_allow(self, value: str) -> None:
        """Serve /metrics and /healthz only to these addresses and networks
        (repeatable; the metrics listener's own list; everyone by default)."""
        self["metrics-allow"].extend(networks_option("--metrics-allow", value))

    def opt_allowfile(self, path: str) -> None:
        """As --allow, for each address and network listed in FILE (one or
        more a line; # comments; read at start and on SIGHUP)."""
        self["allowfile"].append(path)

    def opt_denyfile(self, path: str) -> None:
        """As --deny, for each address and network listed in FILE."""
        self["denyfile"].append(path)

    def opt_version(self) -> None:
        """Print echod's version and exit."""
        print(f"echod {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        """Check what single options cannot check alone."""
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format must be one of {', '.join(LOG_FORMATS)}, "
                f"not {self['log-format']!r}"
            )
        if self["log-connections"] not in LOG_CONNECTIONS:
            raise usage.UsageError(
                f"--log-connections must be one of {', '.join(LOG_CONNECTIONS)}, "
                f"not {self['log-connections']!r}"
            )
        if self["tls-min-version"] not in ("1.2", "1.3"):
            raise usage.UsageError(
                f"--tls-min-version must be 1.2 or 1.3, not {self['tls-min-version']!r}"
            )
        if bool(self["tls-key"]) and not self["tls-cert"]:
            raise usage.UsageError("--tls-key needs --tls-cert")
        self._check_tls_options_apply()
        self._check_udp_options_apply()
        if self["metrics-allow"] and not self["metrics"]:
            raise usage.UsageError(
                "--metrics-allow applies to --metrics: no metrics listener is asked for"
            )
        sources = AccessSources(
            tuple(self["allow"]),
            tuple(self["deny"]),
            tuple(self["allowfile"]),
            tuple(self["denyfile"]),
        )
        try:
            self["access"] = sources.load()
        except AccessFileError as e:
            raise usage.UsageError(str(e)) from None
        twistd = getattr(self, "parent", None)  # twistd's own options, under twistd
        if twistd is not None:
            check_twistd_options(twistd, self["log-format"])
            if not (twistd.get("syslog") or twistd.get("logger")):
                self["log-file"] = log_destination(twistd)
                self["writes-log"] = True

    def _check_udp_options_apply(self) -> None:
        """Refuse --udp-rate and --udp-max-size without --udp (ignored else)."""
        given = [
            f"--{name}"
            for name, default in (
                ("udp-rate", DEFAULT_UDP_RATE),
                ("udp-max-size", DEFAULT_UDP_MAX_SIZE),
            )
            if self[name] != default
        ]
        if given and not self["udp"]:
            raise usage.UsageError(
                f"{options_apply(given)} to UDP echo, which is off: add --udp "
                "[INTERFACE:]PORT"
            )

    def _check_tls_options_apply(self) -> None:
        """Refuse --tls-* options when no --port is a TLS listener.

        They apply to TLS listeners only; without one they would be ignored
        and the echo would be in the clear, where the user asked for TLS.
        """
        given = [
            f"--{name}"
            for name in ("tls-cert", "tls-key", "tls-client-ca")
            if self[name]
        ]
        if self["tls-min-version"] != "1.2":
            given.append("--tls-min-version")
        if self["tls-handshake-timeout"] != DEFAULT_TLS_HANDSHAKE_TIMEOUT:
            given.append("--tls-handshake-timeout")
        ports = self["ports"] or [DEFAULT_PORT]
        if given and not any(p.startswith(TLS_LISTENERS) for p in ports):
            raise usage.UsageError(
                f"{options_apply(given)} to TLS listeners ("
                f"{', '.join(TLS_LISTENERS)}) and no --port is one: the echo "
                f"would be in the clear"
            )

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Parse, turning a usage error into one line on stderr and exit 2.

        twistd would print the whole help text before the error; a user who
        typed one wrong value wants the one line that says which.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            sys.stderr.write(f"twistd echod: error: {e} (see: twistd echod --help)\n")
            raise SystemExit(2) from None

    def settings(self) -> EchoSettings:
        """The immutable settings these options describe."""
        udp = tuple(
            UDPSettings(
                port=port,
                interface=interface,
                rate=self["udp-rate"],
                max_size=self["udp-max-size"],
            )
            for interface, port in self["udp"]
        )
        return EchoSettings(
            ports=tuple(self["ports"]) or (DEFAULT_PORT,),
            idle_timeout=self["idle-timeout"],
            max_connections=self["max-connections"],
            max_per_ip=self["max-per-ip"],
            drain_timeout=self["drain-timeout"],
            backlog=self["backlog"],
            write_through=not self["no-write-through"],
            reuse_port=bool(self["reuse-port"]),
            udp=udp,
            access=self["access"],
            tls_cert=Path(self["tls-cert"]) if self["tls-cert"] else None,
            tls_key=Path(self["tls-key"]) if self["tls-key"] else None,
            tls_min_version=self["tls-min-version"],
            tls_client_ca=Path(self["tls-client-ca"])
            if self["tls-client-ca"]
            else None,
            tls_handshake_timeout=self["tls-handshake-timeout"],
            metrics=self["metrics"],
            metrics_access=AccessList(allow=tuple(self["metrics-allow"])),
            log_format=self["log-format"],
            log_connections=self["log-connections"],
            log_file=self["log-file"],
            writes_log=self["writes-log"],
            busy_poll=self["busy-poll"] / 1e6,
            tos=self["tos"],
        )


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the echo service and bind its listeners, or exit with one line."""
    settings = replace(options.settings(), file_limit=raise_file_limit())
    if reactor is None:
        install_if_unset()
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    if settings.busy_poll:
        try:
            enable_busy_poll(reactor, settings.busy_poll)
        except ValueError as e:
            sys.stderr.write(f"twistd echod: error: {e}\n")
            raise SystemExit(2) from None
    try:
        service = EchoService(settings, reactor)
        service.listen()
        service.owns_signals = True
    except ListenError as e:
        # Binding here, before twistd writes its pid file or daemonizes, lets
        # the user see why and get a non-zero exit in every mode.
        sys.stderr.write(f"twistd echod: error: {e}\n")
        raise SystemExit(1) from None
    return service
