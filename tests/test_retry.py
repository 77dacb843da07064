"""Unit tests of echod.retry: which failures curl's --retry tries again, and when."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from echod.clienterrors import DNS, REFUSED, RESET, TIMEOUT, TLS
from echod.retry import RetryPolicy, retry_after_seconds


def test_no_retries_by_default() -> None:
    policy = RetryPolicy()
    assert not policy.retries_status(503)
    assert not policy.retries_error(TIMEOUT)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_the_statuses_curl_retries(status: int) -> None:
    assert RetryPolicy(1).retries_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 404, 501, 505])
def test_statuses_not_retried(status: int) -> None:
    assert not RetryPolicy(1).retries_status(status)


def test_errors_retried() -> None:
    policy = RetryPolicy(2)
    assert policy.retries_error(TIMEOUT) and policy.retries_error(DNS)
    assert not policy.retries_error(REFUSED)  # only with --retry-connrefused
    assert not policy.retries_error(TLS) and not policy.retries_error(RESET)
    assert RetryPolicy(2, connection_refused=True).retries_error(REFUSED)


def test_curl_s_doubling_waits() -> None:
    policy = RetryPolicy(20)
    assert [policy.wait(n) for n in range(5)] == [1, 2, 4, 8, 16]
    assert policy.wait(9) == 512 and policy.wait(10) == 600 and policy.wait(15) == 600


def test_a_fixed_delay_and_retry_after_first() -> None:
    policy = RetryPolicy(5, delay=0.25)
    assert policy.wait(3) == 0.25
    assert policy.wait(3, "7") == 7.0
    assert policy.wait(3, "soon") == 0.25  # unreadable: ignored


def test_retry_after_as_a_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == 30.0
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37", now) is None  # no zone


def test_retry_max_time_counts_the_wait() -> None:
    policy = RetryPolicy(3, max_time=10)
    assert policy.may_start(elapsed=8, wait=2)
    assert not policy.may_start(elapsed=8.5, wait=2)
    assert RetryPolicy(3).may_start(elapsed=1e9, wait=600)
