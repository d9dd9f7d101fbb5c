"""The call state machine as data: no sockets, a bare event loop for the timers."""

from __future__ import annotations

import asyncio

import pytest

from app.call.state import FINAL_STATES, TRANSITIONS, CallEvent, CallStateMachine
from app.errors import IllegalTransition
from app.events import CallState

S, E = CallState, CallEvent


def state_of(machine: CallStateMachine) -> CallState:
    """Read through a call so mypy's narrowing does not outlive a transition."""
    return machine.state


def test_every_state_is_in_the_table_and_every_live_state_can_end() -> None:
    assert set(TRANSITIONS) == set(CallState)
    for state, moves in TRANSITIONS.items():
        if state in FINAL_STATES:
            assert not moves
        else:
            assert moves[E.HANG_UP] is S.ENDED
            assert moves[E.FAIL] is S.FAILED


def test_ringing_and_reconnecting_are_states() -> None:
    machine = CallStateMachine()
    machine.handle(E.RING)
    assert machine.state is S.RINGING
    for event in (E.GATHER, E.ANSWER_MADE, E.DESCRIPTIONS_SET, E.MEDIA_FLOWING, E.PATH_LOST):
        machine.handle(event)
    assert state_of(machine) is S.RECONNECTING
    machine.handle(E.MEDIA_FLOWING)
    assert state_of(machine) is S.CONNECTED


def test_illegal_event_raises_and_keeps_state() -> None:
    machine = CallStateMachine()
    machine.handle(E.GATHER)
    with pytest.raises(IllegalTransition, match="'media flowing' while gathering"):
        machine.handle(E.MEDIA_FLOWING)
    assert machine.state is S.GATHERING
    machine.handle(E.HANG_UP)
    with pytest.raises(IllegalTransition):
        machine.handle(E.FAIL)
    assert state_of(machine) is S.ENDED


async def test_timers_die_with_their_state() -> None:
    machine = CallStateMachine()
    fired: list[str] = []
    for event in (E.GATHER, E.OFFER_MADE, E.DESCRIPTIONS_SET):
        machine.handle(event)
    machine.call_later("connect", 0.05, lambda: fired.append("connect"))
    assert machine.timers == {"connect"}
    machine.handle(E.MEDIA_FLOWING)  # connected: the connect deadline is gone
    assert machine.timers == frozenset()
    machine.handle(E.PATH_LOST)
    machine.call_later("give up", 0.01, lambda: fired.append("give up"))
    await asyncio.sleep(0.2)
    assert fired == ["give up"]  # only the timer of the state still current fired
    assert machine.timers == frozenset()


async def test_a_timer_rearmed_by_name_fires_once() -> None:
    machine = CallStateMachine()
    fired: list[int] = []
    machine.call_later("t", 0.01, lambda: fired.append(1))
    machine.call_later("t", 0.01, lambda: fired.append(2))
    await asyncio.sleep(0.1)
    assert fired == [2]


def test_no_timer_in_a_final_state() -> None:
    machine = CallStateMachine()
    machine.handle(E.FAIL)
    machine.call_later("t", 0.01, lambda: None)  # needs no loop: nothing is armed
    assert machine.timers == frozenset()
