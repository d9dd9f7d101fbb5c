"""nat.quota: quotas counted in the process or in shared memory across forked workers."""

from __future__ import annotations

import multiprocessing

import pytest

from nat.errors import ConfigError
from nat.quota import LocalLedger, SharedLedger

FORK = multiprocessing.get_context("fork")


def shared(user_quota: int, total_quota: int, slots: int = 16384) -> SharedLedger:
    return SharedLedger(user_quota, total_quota, FORK.Lock(), slots=slots)


@pytest.mark.parametrize("make", [LocalLedger, shared])
def test_user_and_total_quotas(make: type[LocalLedger]) -> None:
    ledger = make(2, 3)
    assert ledger.try_hold("alice")
    assert ledger.try_hold("alice")
    assert not ledger.try_hold("alice")
    assert not ledger.left("alice")
    assert ledger.left("bob")
    assert ledger.try_hold("bob")
    assert not ledger.try_hold("carol")  # total reached
    ledger.release("alice")
    assert ledger.try_hold("carol")
    assert not ledger.try_hold("alice")


@pytest.mark.parametrize("make", [LocalLedger, shared])
def test_zero_means_unlimited(make: type[LocalLedger]) -> None:
    ledger = make(0, 0)
    assert all(ledger.try_hold("alice") for _ in range(3000))


def test_shared_table_reuses_the_room_of_users_who_left() -> None:
    ledger = shared(1, 0, slots=8)
    for round_ in range(5):
        names = [f"user{round_}-{i}" for i in range(8)]
        assert all(ledger.try_hold(name) for name in names)
        assert not ledger.try_hold(f"user{round_}-extra")  # table full of live users: refused
        for name in names:
            ledger.release(name)
    assert ledger.total() == 0


def test_shared_table_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ConfigError, match="quota table: 12 slots is not a power of two"):
        shared(1, 1, slots=12)


def _grab(ledger: SharedLedger, start: multiprocessing.synchronize.Event, out: object) -> None:
    start.wait()
    got = sum(ledger.try_hold("alice") for _ in range(200)) + sum(
        ledger.try_hold(f"u{i}") for i in range(50)
    )
    out.put(got)  # type: ignore[attr-defined]


def test_shared_quota_is_exact_across_processes_racing() -> None:
    ledger = shared(user_quota=37, total_quota=120)
    start = FORK.Event()
    out = FORK.Queue()
    procs = [FORK.Process(target=_grab, args=(ledger, start, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    start.set()
    got = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sum(got) == 120  # the total, never one more
    assert ledger.total() == 120
    assert ledger.held("alice") == 37
    assert not ledger.left("alice")
