"""Tests for echod.probe's round-trip summary."""

from __future__ import annotations

import random
import statistics

from echod.probe import RoundTripStats


def test_the_summary_is_what_every_sample_kept_would_give() -> None:
    rng = random.Random(3)
    samples = [rng.lognormvariate(-1, 0.8) for _ in range(10_000)]
    stats = RoundTripStats()
    for sample in samples:
        stats.add(sample)
    assert stats.count == len(samples)
    assert stats.summary() == (
        f"rtt min/avg/max/mdev = {min(samples):.3f}/{statistics.mean(samples):.3f}/"
        f"{max(samples):.3f}/{statistics.pstdev(samples):.3f} ms"
    )


def test_one_round_trip_has_no_deviation() -> None:
    stats = RoundTripStats()
    stats.add(0.25)
    assert stats.summary() == "rtt min/avg/max/mdev = 0.250/0.250/0.250/0.000 ms"


def test_it_keeps_no_sample() -> None:
    stats = RoundTripStats()
    for _ in range(100_000):
        stats.add(1.0)
    assert not any(isinstance(v, list) for v in vars(stats).values())
