"""CallController: ring, accept, decline, caller gave up, outcome and history (memory
signaling, real sessions on loopback)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.call.controller import CallController, CallerGaveUp, outcome_of
from app.call.session import CallOptions, CallSession
from app.events import CallState
from app.history import History
from signaling.memory import memory_pair

LOOPBACK = CallOptions(loopback_candidates=True)


@pytest.mark.parametrize(
    ("connected", "declined", "direction", "reason", "outcome"),
    [
        (True, False, "incoming", "the other person hung up", "completed"),
        (False, True, "incoming", None, "declined"),
        (False, False, "outgoing", "the other person declined", "declined"),
        (False, False, "incoming", "the caller gave up", "missed"),
        (False, False, "outgoing", "no network path", "failed"),
    ],
)
def test_outcomes(
    connected: bool, declined: bool, direction: str, reason: str | None, outcome: str
) -> None:
    got = outcome_of(
        connected=connected,
        declined=declined,
        direction=direction,  # type: ignore[arg-type]
        reason=reason,
    )
    assert got == outcome


@pytest.mark.parametrize(
    ("direction", "cancelled", "accepted", "outcome"),
    [
        ("outgoing", True, False, "cancelled"),  # I hung up before an answer (issue 12.9)
        ("outgoing", False, False, "failed"),
        ("incoming", False, True, "failed"),  # accepted, then no path: not "missed"
        ("incoming", False, False, "missed"),
    ],
)
def test_cancelled_and_accepted_outcomes(
    direction: str, cancelled: bool, accepted: bool, outcome: str
) -> None:
    got = outcome_of(
        connected=False,
        declined=False,
        direction=direction,  # type: ignore[arg-type]
        reason="hangup",
        cancelled=cancelled,
        accepted=accepted,
    )
    assert got == outcome


async def test_accepted_call_is_recorded_on_both_sides(tmp_path: Path) -> None:
    a_ch, b_ch = memory_pair()
    history_a, history_b = History(tmp_path / "a.json"), History(tmp_path / "b.json")
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    dialing = CallController(caller, a_ch, direction="outgoing", peer="bob", history=history_a)
    ringing = CallController(callee, b_ch, direction="incoming", peer="alice", history=history_b)
    asked: list[str] = []

    async def accept(peer: str) -> bool:
        asked.append(peer)
        assert callee.state is CallState.RINGING
        return True

    results = await asyncio.wait_for(asyncio.gather(dialing.dial(), ringing.listen(accept)), 30)
    assert list(results) == [None, True]
    assert asked == ["alice"]
    await caller.hangup()
    for _ in range(100):
        if callee.state is CallState.ENDED:
            break
        await asyncio.sleep(0.02)
    for history in (History.load(tmp_path / "a.json"), History.load(tmp_path / "b.json")):
        [record] = history.records
        assert record.outcome == "completed"
        assert record.route == "direct"


async def test_declined_call(tmp_path: Path) -> None:
    a_ch, b_ch = memory_pair()
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    dialing = CallController(caller, a_ch, direction="outgoing", history=History(tmp_path / "a"))
    ringing = CallController(callee, b_ch, direction="incoming", history=History(tmp_path / "b"))

    async def decline(peer: str) -> bool:
        return False

    results = await asyncio.gather(dialing.dial(), ringing.listen(decline), return_exceptions=True)
    assert results[1] is False
    assert "the other person declined" in str(results[0])
    assert dialing.record is not None
    assert dialing.record.outcome == "declined"
    assert ringing.record is not None
    assert ringing.record.outcome == "declined"
    assert not caller.connected_once


async def test_caller_giving_up_while_it_rings_is_a_missed_call(tmp_path: Path) -> None:
    a_ch, b_ch = memory_pair()
    caller, callee = CallSession(LOOPBACK), CallSession(LOOPBACK)
    ringing = CallController(callee, b_ch, direction="incoming", history=History(tmp_path / "b"))
    never = asyncio.Event()

    async def wait_forever(peer: str) -> bool:
        await never.wait()
        return True

    dialing = asyncio.ensure_future(caller.dial(a_ch))
    listening = asyncio.ensure_future(ringing.listen(wait_forever))
    for _ in range(500):
        if callee.state is CallState.RINGING:
            break
        await asyncio.sleep(0.02)
    await caller.hangup("gave up")  # sends a Bye while the callee rings
    with pytest.raises(CallerGaveUp):
        await asyncio.wait_for(listening, 10)
    await asyncio.gather(dialing, return_exceptions=True)
    assert ringing.record is not None
    assert ringing.record.outcome == "missed"
    assert History.load(tmp_path / "b").records[0].outcome == "missed"


async def test_hanging_up_before_an_answer_is_a_cancel_told_once(tmp_path: Path) -> None:
    a_ch, _b_ch = memory_pair()
    caller = CallSession(LOOPBACK)
    told: list[object] = []
    dialing = CallController(
        caller, a_ch, direction="outgoing", history=History(tmp_path / "a"), on_finish=told.append
    )
    dial = asyncio.ensure_future(dialing.dial())
    for _ in range(500):
        if caller.state is CallState.OFFERING:
            break
        await asyncio.sleep(0.02)
    record = await dialing.hangup()
    await asyncio.gather(dial, return_exceptions=True)
    assert record is not None
    assert record.outcome == "cancelled"
    assert told == [record]  # once, though both the hang-up and the ENDED state finish it
    assert dialing.recorded
    assert History.load(tmp_path / "a").records == [record]


def test_a_forced_outcome_and_a_history_that_cannot_be_saved(tmp_path: Path) -> None:
    class Broken(History):
        def add(self, record: object) -> None:
            raise OSError("disk full")

    class Idle:
        def subscribe(self, callback: object) -> object:
            return lambda: None

    problems: list[OSError] = []
    waiting = CallController(
        Idle(),
        None,
        direction="incoming",
        history=Broken(tmp_path / "h"),
        on_history_error=problems.append,
    )
    record = waiting.finish("error", outcome="failed")
    assert record.outcome == "failed"
    assert not waiting.recorded  # nothing rang: not a call, so not saved
    assert problems == []
    calling = CallController(
        Idle(),
        None,
        direction="outgoing",
        history=Broken(tmp_path / "h"),
        on_history_error=problems.append,
    )
    calling.finish("no path")
    assert calling.recorded
    assert [str(p) for p in problems] == ["disk full"]
