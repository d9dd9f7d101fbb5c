"""The token bucket shared by the relay's max-bps and the signaling frame rate."""

from __future__ import annotations

import pytest

from nat.ratelimit import TokenBucket


def test_starts_full_and_refuses_past_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_refills_at_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    for _ in range(3):
        assert bucket.take(0.0)
    assert bucket.take(0.1)  # 0.1 s at 10/s: one token back
    assert not bucket.take(0.1)
    # a long idle time refills to the burst, not beyond it
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("cost", "expected"), [(1200.0, True), (1500.0, True), (1500.5, False)])
def test_cost_in_bytes_within_one_second_of_burst(cost: float, expected: bool) -> None:
    bucket = TokenBucket(rate=1500, burst=1500)  # max-bps 1500: a second of burst
    assert bucket.take(5.0, cost) is expected


def test_a_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(rate=1000, burst=1000)
    assert bucket.take(0.0, 800)
    assert not bucket.take(0.0, 300)  # 200 left: refused
    assert bucket.take(0.0, 200)  # and the 200 are still there
