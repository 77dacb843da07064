"""Durations counted in constant memory, for percentiles (HdrHistogram's layout).

A load test that keeps every latency sample grows without bound: at 50,000
round trips a second, an hour of C{echod bench} is 180 million floats, about
8 GB. L{DurationHistogram} counts each duration instead, in whole nanoseconds,
in the bucket that holds it. Below 512 ns a bucket is one nanosecond wide;
above, each power of two is split into 256 buckets, so a bucket is never
wider than 1/256 of the values it holds (0.4 %). A percentile is reported as
the highest value of its bucket (as HdrHistogram does, so it is never below
the true sample), kept between the exact smallest and largest durations
recorded; the largest (the 100th percentile) is therefore exact. Memory is at
most one counter per bucket in use: a few thousand for any run.
"""

from __future__ import annotations

import math

SUB_BUCKET_BITS = 8
"""Each power of two is split into 2 ** SUB_BUCKET_BITS buckets."""

_SUB = 1 << SUB_BUCKET_BITS
_EXACT = 2 * _SUB  # below this many nanoseconds, a bucket per nanosecond
_TOP_BITS = SUB_BUCKET_BITS + 1  # the bits of a value that name its bucket


def bucket_of(nanoseconds: int) -> int:
    """The index of the bucket that holds C{nanoseconds} (0 or more)."""
    if nanoseconds < _EXACT:
        return nanoseconds
    shift = nanoseconds.bit_length() - _TOP_BITS
    return shift * _SUB + (nanoseconds >> shift)


def highest_in(index: int) -> int:
    """The highest number of nanoseconds that bucket C{index} holds."""
    if index < _EXACT:
        return index
    shift = index // _SUB - 1
    top = index - shift * _SUB
    return ((top + 1) << shift) - 1


class DurationHistogram:
    """Durations in seconds, counted for percentiles within 0.4 % (see the
    module's docstring), the smallest and the largest kept exactly."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self._smallest = math.inf
        self._largest = -math.inf

    @property
    def smallest(self) -> float | None:
        """The smallest duration recorded, exactly; None before the first."""
        return self._smallest if self.count else None

    def record(self, seconds: float) -> None:
        """Count one duration (a negative one, from a clock stepped back, as 0)."""
        if seconds < 0.0:
            seconds = 0.0
        index = bucket_of(int(seconds * 1e9))
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self.count += 1
        if seconds < self._smallest:
            self._smallest = seconds
        if seconds > self._largest:
            self._largest = seconds

    def percentiles(self, *fractions: float) -> list[float | None]:
        """The durations at C{fractions} of the count (0.5 for the median, 1.0
        the largest), in seconds; None for each when nothing was recorded.

        The sample at rank C{int(fraction * count)} (counted from 0, at most
        the last), as a sorted list of every sample would give it, to within
        its bucket."""
        if not self.count:
            return [None for _ in fractions]
        last = self.count - 1
        wanted = sorted(
            (min(last, int(f * self.count)), i) for i, f in enumerate(fractions)
        )
        found: list[float | None] = [None for _ in fractions]
        seen = 0
        position = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            while position < len(wanted) and wanted[position][0] < seen:
                value = highest_in(index) / 1e9
                found[wanted[position][1]] = min(
                    max(value, self._smallest), self._largest
                )
                position += 1
            if position == len(wanted):
                break
        return found

    def __len__(self) -> int:
        """How many durations were recorded."""
        return self.count
