"""Wilson intervals: known values, sound at the ends, and what counts as a finding."""

from __future__ import annotations

import pytest

from bench.quality.rates import Rate, separated


def test_wilson_interval_matches_the_textbook_values() -> None:
    lo, hi = Rate(8, 10).interval
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # Wilson (1927), z = 1.96
    assert Rate(0, 20).interval[0] == 0.0 and 0.0 < Rate(0, 20).interval[1] < 0.17
    assert Rate(20, 20).interval[1] == 1.0 and 0.83 < Rate(20, 20).interval[0] < 1.0


def test_pooling_adds_hits_and_samples() -> None:
    assert Rate.pooled([Rate(1, 4), Rate(3, 4)]) == Rate(4, 8)
    assert Rate.of([True, False, True]) == Rate(2, 3)
    assert str(Rate(1, 2)).startswith("0.500 [")


def test_separated_needs_intervals_that_do_not_overlap() -> None:
    assert separated(Rate(2, 100), Rate(40, 100))
    assert not separated(Rate(30, 100), Rate(40, 100))
