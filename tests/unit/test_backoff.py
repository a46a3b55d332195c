"""``common.backoff``: the retry delays of every retry loop — bounds, growth, cap, reset."""

from __future__ import annotations

import math
import random

import pytest

from common.backoff import OUTAGE, Backoff, BackoffPolicy


def test_full_jitter_stays_within_the_capped_nominal_and_spreads_over_it() -> None:
    policy, rng = BackoffPolicy(0.1, 5.0), random.Random(1)
    for attempt in range(80):  # far past the cap: no overflow, still capped
        ceiling = min(5.0, 0.1 * 2**attempt)
        assert policy.nominal(attempt) == ceiling
        assert all(0.0 <= policy.delay(attempt, rng) <= ceiling for _ in range(50))
    late = [policy.delay(20, rng) for _ in range(200)]
    assert min(late) < 1.0 and max(late) > 4.0  # the whole range [0, cap] is used


def test_partial_jitter_keeps_at_least_the_rest_of_the_nominal() -> None:
    rng = random.Random(2)
    delays = [OUTAGE.delay(3, rng) for _ in range(300)]  # nominal 0.8 s
    assert all(0.4 <= d <= 0.8 for d in delays)
    assert min(delays) < 0.45 and max(delays) > 0.75
    assert BackoffPolicy(1.0, jitter=0.0).delay(4, rng) == 16.0  # no jitter: the nominal


def test_the_draw_is_that_of_uniform_for_the_same_generator() -> None:
    """Same numbers as the formulas the loops had (``uniform(0, d)``, ``d·uniform(.5, 1)``)."""
    a, b = random.Random(7), random.Random(7)
    for attempt in range(12):
        assert BackoffPolicy(0.5, 30.0).delay(attempt, a) == b.uniform(
            0.0, min(30.0, 0.5 * 2**attempt)
        )
        d = min(5.0, 0.1 * 2**attempt)
        assert OUTAGE.delay(attempt, a) == pytest.approx(d * b.uniform(0.5, 1.0), rel=1e-12)


def test_no_cap_grows_without_bound_and_bad_parameters_are_refused() -> None:
    assert BackoffPolicy(0.2).nominal(10) == 0.2 * 1024
    assert BackoffPolicy(0.2).cap_s == math.inf
    for bad in ({"base_s": -1.0}, {"base_s": 1.0, "cap_s": -1.0}, {"base_s": 1.0, "jitter": 2}):
        with pytest.raises(ValueError, match="backoff"):
            BackoffPolicy(**bad)


def test_backoff_doubles_per_failure_and_starts_over_after_a_success() -> None:
    retry = Backoff(BackoffPolicy(0.1, 1.0, jitter=0.0))
    assert [retry.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert retry.failures == 6
    retry.reset()
    assert retry.failures == 0 and retry.next() == 0.1
    seeded = Backoff(OUTAGE, random.Random(3))
    assert 0.05 <= seeded.next() <= 0.1 and 0.1 <= seeded.next() <= 0.2
