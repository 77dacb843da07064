"""The one immutable settings object that twistd's options become."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from echod.access import EVERYONE, AccessList

DEFAULT_PORT = "tcp:10000"
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_BACKLOG = 4096
DEFAULT_UDP_RATE = 100
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0
DEFAULT_UDP_MAX_SIZE = 1472
MAX_UDP_PAYLOAD = 65507
"""The largest UDP payload over IPv4 (65,535 less the IP and UDP headers)."""


LOG_CONNECTIONS = ("all", "abnormal", "none")
"""The values of C{--log-connections}."""
NORMAL_ENDS = frozenset({"eof", "closed"})
"""How a connection ends when nothing went wrong: the peer's EOF, or a close."""


@dataclass(frozen=True)
class UDPSettings:
    """Where and how the optional UDP echo listens, with its reflection guards."""

    port: int
    interface: str = ""
    rate: int = DEFAULT_UDP_RATE
    """Datagrams per second answered per source address (also the burst)."""
    max_size: int = DEFAULT_UDP_MAX_SIZE
    """Larger datagrams are dropped and counted, never echoed."""


@dataclass(frozen=True)
class EchoSettings:
    """Everything the daemon is configured with; built once from the options."""

    ports: tuple[str, ...] = (DEFAULT_PORT,)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds without progress before a connection is closed; 0 disables."""
    max_connections: int = 0
    """Open connections across every listener; 0 means no limit."""
    max_per_ip: int = 0
    """Open connections per client address; 0 means no limit."""
    file_limit: int = 0
    """The process's file limit, read at start (echod.fdlimit); 0: not checked."""
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    """Seconds open connections may go on after a stop is asked for."""
    backlog: int = DEFAULT_BACKLOG
    """Listen queue of the stream listeners that take one (the kernel caps it)."""
    reuse_port: bool = False
    """Open tcp, tcp6, ssl and tls listeners with SO_REUSEPORT (several processes,
    one port)."""
    write_through: bool = True
    """Send echoes at once when nothing is queued (see echod.writethrough)."""
    udp: tuple[UDPSettings, ...] = ()
    access: AccessList = EVERYONE
    """Who is served (C{--allow}, C{--deny}): every echo listener, TCP and UDP."""
    tls_cert: Path | None = None
    """Certificate (chain) for ssl: listeners that name none themselves."""
    tls_key: Path | None = None
    tls_min_version: str = "1.2"
    tls_client_ca: Path | None = None
    """Mutual TLS: clients need a certificate that chains to this CA file."""
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT
    metrics: str | None = None
    """Endpoint serving /metrics and /healthz, or None (off)."""
    metrics_access: AccessList = EVERYONE
    """Who the metrics listener serves (C{--metrics-allow})."""
    log_format: str = "text"
    log_connections: str = "all"
    """Which ended connections get a log line: C{all}, C{abnormal} (those that
    did not end in a clean close, see L{NORMAL_ENDS}) or C{none}."""
    log_file: Path | None = None
    """The file twistd would log to (C{--logfile}, or C{twistd.log} when
    daemonized); None: stdout."""
    writes_log: bool = False
    """Under twistd without C{--syslog} or C{--logger}: echod writes the log to
    C{log_file} itself, as twistd would, in C{log_format}."""
    busy_poll: float = 0.0
    """Seconds the reactor polls without sleeping after an I/O event; 0: off."""
    tos: int | None = None
    """The IP TOS byte (IPv6: traffic class) of what the tcp, ssl and UDP
    listeners send, their connections' too (C{--tos}); None: the system's."""
