"""Who may use the echo: C{--allow} and C{--deny}, as ncat's options of those names.

Each takes addresses and networks (CIDR), comma-separated, and may be given
again; C{--allowfile} and C{--denyfile} read them from a file, one or more a
line, C{#} starting a comment (as ncat's options of those names), at start
and again on SIGHUP (L{AccessSources}). With C{--allow}, only the addresses
it lists are served; an address C{--deny} lists is never served, even when
C{--allow} lists it too (as in ncat). A connection over a UNIX socket has
no address and is always served (the socket file's permissions say who may
connect). Behind HAProxy (C{haproxy:} listeners) the address is the client's
from the PROXY header.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from echod.limits import plain_host

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[Network, ...]:
    """C{10.0.0.0/8,192.0.2.7,2001:db8::/32} as networks (an address is a /32
    or /128); ValueError, saying which item, for anything else."""
    networks = []
    for item in value.split(","):
        text = item.strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"{text!r} is not an IP address or network (such as 192.0.2.7, "
                "10.0.0.0/8, 2001:db8::/32; names are not looked up)"
            ) from None
    return tuple(networks)


def read_networks(path: str) -> tuple[Network, ...]:
    """The networks listed in the file at C{path}: as L{parse_networks} takes
    them, a line at a time, without blank lines and C{#} comments; OSError
    or ValueError (saying which line) for a file that will not do."""
    with open(path, "rb") as lines:
        data = lines.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file of addresses") from None
    networks: list[Network] = []
    for number, line in enumerate(text.splitlines(), 1):
        items = line.partition("#")[0].strip()
        if items:
            try:
                networks += parse_networks(items.replace(" ", ","))
            except ValueError as e:
                raise ValueError(f"{path}, line {number}: {e}") from None
    return tuple(networks)


class AccessFileError(Exception):
    """A file of C{--allowfile} or C{--denyfile} that cannot be read or has a
    bad line; the message names the option, the file and the line."""


def networks_in_file(option: str, path: str) -> tuple[Network, ...]:
    """L{read_networks}, or L{AccessFileError} naming C{option} and the file."""
    try:
        return read_networks(path)
    except OSError as e:
        raise AccessFileError(f"{option}: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise AccessFileError(f"{option}: {e}") from None


@dataclass(frozen=True)
class AccessList:
    """The networks allowed (none listed: everyone) and denied."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    sources: AccessSources | None = field(default=None, compare=False)
    """Where the lists came from, to read them again (SIGHUP)."""

    def permits(self, host: str | None) -> bool:
        """Whether the client at C{host} may be served (None: no address)."""
        if host is None or not (self.allow or self.deny):
            return True
        try:
            address = ipaddress.ip_address(plain_host(host).partition("%")[0])
        except ValueError:
            return False  # not an IP address: nothing to match, so not allowed
        if any(address in network for network in self.deny):
            return False
        return not self.allow or any(address in network for network in self.allow)

    def describe(self) -> str:
        """For the start-up log: C{allow=10.0.0.0/8 deny=10.0.0.7/32}."""

        def listed(networks: tuple[Network, ...], empty: str) -> str:
            return ",".join(map(str, networks)) or empty

        return f"allow={listed(self.allow, 'all')} deny={listed(self.deny, 'none')}"


@dataclass(frozen=True)
class AccessSources:
    """What C{--allow}, C{--deny}, C{--allowfile} and C{--denyfile} gave: the
    networks named on the command line and the files, which are read at
    start and again on SIGHUP."""

    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    allow_files: tuple[str, ...] = ()
    deny_files: tuple[str, ...] = ()

    def load(self) -> AccessList:
        """The access list as the files say now; L{AccessFileError} for a
        file that will not do."""

        def listed(
            networks: tuple[Network, ...], option: str, paths: tuple[str, ...]
        ) -> tuple[Network, ...]:
            return networks + tuple(
                network for path in paths for network in networks_in_file(option, path)
            )

        return AccessList(
            listed(self.allow, "--allowfile", self.allow_files),
            listed(self.deny, "--denyfile", self.deny_files),
            self,
        )

    def files(self) -> tuple[str, ...]:
        """Every file listed: what a reload reads (none: nothing to reload)."""
        return self.allow_files + self.deny_files


EVERYONE = AccessList()
"""No --allow and no --deny: every client is served."""
