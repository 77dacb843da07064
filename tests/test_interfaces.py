"""Unit tests of echod.interfaces: interfaces by name, their addresses, and
sockets bound to one."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock

from echod import sockopts
from echod.interfaces import (
    InterfaceBinding,
    interface_addresses,
    is_interface,
    may_bind_to_device,
)
from echod.sockopts import PreparedConnector, PreparingReactor
from tests.daemon import ON_CI

KERNEL = tuple(int(n) for n in re.findall(r"\d+", os.uname().release)[:2])
DEVICE_OK = os.geteuid() == 0 or KERNEL >= (5, 7)
"""Whether this process may bind a socket to a device: root may, and since
Linux 5.7 anyone may (before it, CAP_NET_RAW was needed)."""


def need_device_binding() -> None:
    """Skip (fail on CI, which runs as root) where SO_BINDTODEVICE is refused."""
    if not DEVICE_OK:
        if ON_CI:
            pytest.fail("binding a socket to a device needs root here")
        pytest.skip("binding a socket to a device needs root here")


def test_is_interface() -> None:
    assert is_interface("lo")
    assert not is_interface("nosuch0")
    assert not is_interface("")
    assert not is_interface("a\0b")


def test_loopback_addresses() -> None:
    found = interface_addresses("lo")
    assert found[4] == "127.0.0.1"
    if Path("/proc/net/if_inet6").exists() and socket.has_ipv6:
        assert found.get(6) in (None, "::1")  # None: IPv6 off for lo
    assert interface_addresses("nosuch0") == {}


def test_ipv6_global_before_link_local_and_never_tentative(tmp_path: Path) -> None:
    """/proc/net/if_inet6's rows: the zone on a link-local address; an address
    still tentative (duplicate detection running) or failed is not usable."""
    table = tmp_path / "if_inet6"
    table.write_text(
        "fe800000000000000000000000000001 05 40 20 80     lo\n"  # another name
        "fe800000000000000000000000000002 07 40 20 80     nosuch0\n"
        "20010db8000000000000000000000009 07 40 00 40     nosuch0\n"  # tentative
        "20010db8000000000000000000000003 07 40 00 80     nosuch0\n"
    )
    assert interface_addresses("nosuch0", table) == {6: "2001:db8::3"}
    table.write_text("fe800000000000000000000000000002 07 40 20 80     nosuch0\n")
    assert interface_addresses("nosuch0", table) == {6: "fe80::2%nosuch0"}
    assert interface_addresses("nosuch0", tmp_path / "none") == {}  # no IPv6


def test_may_bind_to_device_is_cap_net_raw() -> None:
    assert may_bind_to_device("lo") == DEVICE_OK


def test_without_the_device_the_address_of_each_version() -> None:
    """Where binding to the device is not permitted: the interface's address
    of the IP version of the address connected to, or why there is none."""
    binding = InterfaceBinding("v1", False, {4: "10.0.0.1"})
    assert binding.source_for("192.0.2.7") == "10.0.0.1"
    with pytest.raises(ValueError, match="--interface v1 has no IPv6 address to "
                       "reach 2001:db8::1 from"):  # fmt: skip
        binding.source_for("2001:db8::1")
    reactor = MemoryReactorClock()
    assert binding.reactor(reactor) is reactor
    assert binding.describe() == (
        "from the interface v1's address (10.0.0.1): binding to the interface "
        "itself was not permitted (before Linux 5.7 it needs CAP_NET_RAW)"
    )
    device = InterfaceBinding("lo", True)
    assert device.source_for("2001:db8::1") is None
    assert isinstance(device.reactor(reactor), PreparingReactor)
    assert device.describe() == "through the interface lo (bound to the device)"


def test_the_binding_this_process_can_make() -> None:
    binding = InterfaceBinding.of("lo")
    assert binding.device == DEVICE_OK
    assert binding.addresses == ({} if DEVICE_OK else interface_addresses("lo"))


def test_the_connector_binds_its_socket_to_the_device() -> None:
    need_device_binding()
    clock = MemoryReactorClock()
    bind = InterfaceBinding("lo", True).reactor(clock).prepare
    connector = PreparedConnector(
        bind, "127.0.0.1", 9, ClientFactory(), 30, None, clock
    )
    client = connector._makeTransport()
    try:
        bound = client.socket.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
        assert bound.rstrip(b"\0") == b"lo"
    finally:
        client.socket.close()


def test_a_device_that_is_gone_fails_the_connect_not_the_caller() -> None:
    """The OSError becomes Twisted's ConnectBindError, delivered as a failed
    connection (the socket closed), as a bad bind address is."""
    need_device_binding()
    clock = MemoryReactorClock()
    factory = ClientFactory()
    failed: list[str] = []
    factory.clientConnectionFailed = (  # type: ignore[method-assign]
        lambda connector, reason: failed.append(reason.getErrorMessage())
    )
    reactor = InterfaceBinding("nosuch0", True).reactor(clock)
    reactor.connectTCP("127.0.0.1", 9, factory, 30)
    clock.advance(0)
    assert len(failed) == 1 and "No such device" in failed[0], failed


def test_on_a_twisted_not_tested_the_address_and_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The device binding leans on Twisted's tcp module (echod.sockopts): on
    a release not tested, the interface's address instead, and -v says why."""
    monkeypatch.setattr(sockopts, "running_twisted_tested", lambda: False)
    binding = InterfaceBinding.of("lo")
    assert not binding.device and binding.addresses[4] == "127.0.0.1"
    assert binding.describe().endswith(
        "itself is not done on a Twisted release echod was not tested with"
    )
