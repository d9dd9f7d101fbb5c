"""The call's state machine as data, in the manner of h11's ``_state.py``.

:data:`TRANSITIONS` names, for every state and every event that may happen in it, the next
state. Anything not in the table is illegal: :meth:`CallStateMachine.handle` raises
:class:`~app.errors.IllegalTransition` and changes nothing. Timers belong to the state that
started them (:meth:`CallStateMachine.call_later`) and are cancelled the moment the machine
leaves that state, so a deadline armed for one connection attempt can never fire into a later
one. No sockets and no aiortc here: the session feeds events in.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from app.errors import IllegalTransition
from app.events import CallState

S = CallState


class CallEvent(enum.Enum):
    """What can happen to a call; the session reports these to the machine."""

    RING = "ring"  # an offer arrived and waits for the user's decision
    GATHER = "gather"  # we start building our description (dial, accept, copy-paste)
    OFFER_MADE = "offer made"
    ANSWER_MADE = "answer made"
    DESCRIPTIONS_SET = "descriptions set"  # offer and answer both applied: ICE checks run
    MEDIA_FLOWING = "media flowing"  # ICE + DTLS up and RTP arriving
    PATH_LOST = "path lost"  # no packets from the peer: recovery starts
    HANG_UP = "hang up"  # either side ended the call on purpose
    FAIL = "fail"  # no path, bad description, gave up recovering


E = CallEvent
_ENDINGS = {E.HANG_UP: S.ENDED, E.FAIL: S.FAILED}

#: (state, event) -> next state. ENDED and FAILED are final: no event leaves them.
TRANSITIONS: dict[CallState, dict[CallEvent, CallState]] = {
    S.IDLE: {E.RING: S.RINGING, E.GATHER: S.GATHERING, **_ENDINGS},
    S.RINGING: {E.GATHER: S.GATHERING, **_ENDINGS},
    S.GATHERING: {E.OFFER_MADE: S.OFFERING, E.ANSWER_MADE: S.ANSWERING, **_ENDINGS},
    S.OFFERING: {E.DESCRIPTIONS_SET: S.CONNECTING, **_ENDINGS},
    S.ANSWERING: {E.DESCRIPTIONS_SET: S.CONNECTING, **_ENDINGS},
    S.CONNECTING: {E.MEDIA_FLOWING: S.CONNECTED, **_ENDINGS},
    S.CONNECTED: {E.PATH_LOST: S.RECONNECTING, **_ENDINGS},
    S.RECONNECTING: {E.MEDIA_FLOWING: S.CONNECTED, **_ENDINGS},
    S.ENDED: {},
    S.FAILED: {},
}
FINAL_STATES = frozenset({S.ENDED, S.FAILED})


class CallStateMachine:
    """The call's state, moved only along :data:`TRANSITIONS`, with the timers of each state."""

    def __init__(self) -> None:
        self.state = CallState.IDLE
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def next_state(self, event: CallEvent) -> CallState:
        """The state ``event`` leads to from here; raises IllegalTransition if none."""
        try:
            return TRANSITIONS[self.state][event]
        except KeyError:
            raise IllegalTransition(
                f"call cannot take '{event.value}' while {self.state.value}"
            ) from None

    def handle(self, event: CallEvent) -> CallState:
        """Apply ``event`` and return the old state; a state change cancels the old timers."""
        new = self.next_state(event)
        old, self.state = self.state, new
        if new is not old:
            self.cancel_timers()
        return old

    def call_later(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` s unless the state changes first.

        A timer of the same name in this state is replaced (re-armed), never doubled.
        """
        if self.state in FINAL_STATES:
            return
        self.cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._fire, name, callback)

    def _fire(self, name: str, callback: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        callback()

    def cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def cancel_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    @property
    def timers(self) -> frozenset[str]:
        """Names of the timers armed in the current state (for tests and the debug export)."""
        return frozenset(self._timers)
