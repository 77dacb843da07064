"""Unit tests of echod.client: the options checked before anything connects."""

from __future__ import annotations

import argparse

import pytest

from echod.client import check_numbers, is_udp, parser, udp_target
from echod.clienterrors import USAGE, ClientError
from echod.target import Target


def options(*argv: str) -> argparse.Namespace:
    """``echod client ARGV`` parsed, nothing checked yet."""
    return parser().parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--count", "0"], "--count and --size must be at least 1"),
        (["--count", "1", "--size", "0"], "--count and --size must be at least 1"),
        (["--size", str((64 << 20) + 1)], "at most 67108864 bytes"),
        (["-u", "--size", "65508"], "a UDP datagram holds at most 65507 bytes"),
        (["-w", "0"], "--timeout must be a number of seconds more than 0"),
        (["-w", "inf"], "--timeout must be a number of seconds more than 0"),
        (["--interval=-1"], "--interval must be a number of seconds, 0 or more"),
        (["-z", "udp:h.test:7"], "-z proves a connection, and UDP has none"),
        (["-z", "--count", "1"], "-z sends nothing, and --count sends messages"),
    ],
)
def test_numbers_that_cannot_be_used(argv: list[str], says: str) -> None:
    complaint = check_numbers(options(*argv))
    assert complaint is not None and says in complaint


@pytest.mark.parametrize(
    "argv", [[], ["--count", "3", "--size", "65507", "-u"], ["-w", "0.5", "-z"]]
)
def test_numbers_that_can(argv: list[str]) -> None:
    assert check_numbers(options(*argv)) is None


def test_udp_is_asked_by_option_or_prefix() -> None:
    assert is_udp(options("-u", "h.test:7"))
    assert is_udp(options("udp:h.test:7"))
    assert not is_udp(options("h.test:7"))


def test_a_udp_target() -> None:
    assert udp_target(options("udp:[::1]:7")) == Target("::1", 7, None, False)
    assert udp_target(options("-u", "-4", "h.test:7")).family == 4


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["-u", "--tls", "h.test:7"], "--tls: no TLS over UDP \\(echod has no DTLS\\)"),
        (["udp:tls:h.test:7"], "--tls: no TLS over UDP"),
        (["-u", "--insecure", "h.test:7"], "--insecure: no TLS over UDP"),
        (["-u", "unix:path=/s"], "bad UDP target 'unix:path=/s'"),
    ],
)
def test_udp_targets_refused(argv: list[str], says: str) -> None:
    with pytest.raises(ClientError, match=says) as e:
        udp_target(options(*argv))
    assert e.value.code == USAGE
