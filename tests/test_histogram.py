"""Tests for echod.histogram: percentiles in constant memory."""

from __future__ import annotations

import random
import tracemalloc

from echod.histogram import (
    SUB_BUCKET_BITS,
    DurationHistogram,
    bucket_of,
    highest_in,
)


def sorted_list_percentile(samples: list[float], fraction: float) -> float:
    """What echod bench reported when it kept every sample."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_each_bucket_holds_a_contiguous_range_no_wider_than_its_bound() -> None:
    previous_high = -1
    for index in range(0, 40 << SUB_BUCKET_BITS):
        high = highest_in(index)
        low = previous_high + 1
        assert bucket_of(low) == bucket_of(high) == index
        assert high - low + 1 <= max(1, low >> SUB_BUCKET_BITS)
        previous_high = high


def test_small_durations_are_exact() -> None:
    histogram = DurationHistogram()
    for nanoseconds in (0, 1, 255, 511):
        assert highest_in(bucket_of(nanoseconds)) == nanoseconds
    histogram.record(300e-9)
    histogram.record(100e-9)
    assert histogram.percentiles(0.0, 1.0) == [100e-9, 300e-9]


def test_percentiles_match_every_sample_kept_within_a_bucket() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(-9, 1.5) for _ in range(20_000)]  # ~100 µs
    samples += [rng.uniform(0.5, 3.0) for _ in range(20)]  # a few stalls
    histogram = DurationHistogram()
    for sample in samples:
        histogram.record(sample)
    fractions = (0.0, 0.5, 0.9, 0.99, 0.999, 1.0)
    for fraction, found in zip(
        fractions, histogram.percentiles(*fractions), strict=True
    ):
        exact = sorted_list_percentile(samples, fraction)
        assert found is not None
        assert exact <= found <= exact * (1 + 2**-SUB_BUCKET_BITS) + 1e-9
    assert histogram.percentiles(1.0) == [max(samples)]  # the largest is exact
    assert histogram.smallest == min(samples)


def test_nothing_recorded_gives_no_figures() -> None:
    assert DurationHistogram().percentiles(0.5, 1.0) == [None, None]
    assert len(DurationHistogram()) == 0


def test_a_duration_from_a_clock_stepped_back_counts_as_zero() -> None:
    histogram = DurationHistogram()
    histogram.record(-0.5)
    assert histogram.percentiles(0.5) == [0.0]


def test_memory_stays_bounded_whatever_the_count() -> None:
    """A million samples from 1 µs to 10 s cost what a few thousand counters do
    (kept as a list they were about 32 MB)."""
    rng = random.Random(1)
    histogram = DurationHistogram()
    tracemalloc.start()
    try:
        for _ in range(1_000_000):
            histogram.record(10 ** rng.uniform(-6, 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(histogram) == 1_000_000
    assert peak < 1_000_000  # bytes
