"""One call from the user's side: ring, accept or decline, caller gave up, outcome, history.

Both faces of PeerCall use it: ``peercall call`` asks "accept? [Y/n]" on the terminal, the
window rings and shows buttons; the rules (what counts as missed or declined, what goes into
the history) live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.events import CallState, Event, SelectedPairChanged, StateChanged

if TYPE_CHECKING:  # the history module itself loads when a call ends (start-up, issue 15)
    from app.history import CallRecord, Direction, History, Outcome, Route

logger = logging.getLogger(__name__)

#: Asked when an offer arrives; True accepts, False declines.
Decide = Callable[[str], Awaitable[bool]]


def outcome_of(
    *,
    connected: bool,
    declined: bool,
    direction: Direction,
    reason: str | None,
    cancelled: bool = False,
    accepted: bool = False,
) -> Outcome:
    """How the history files a call that ended (pure).

    ``cancelled``: our own user hung up; before an answer that is a cancel, not a failure.
    ``accepted``: an incoming call the user accepted that then never connected failed; it was
    not missed (issue 12.9).
    """
    if connected:
        return "completed"
    if declined or (reason is not None and "declined" in reason):
        return "declined"
    if direction == "outgoing":
        return "cancelled" if cancelled else "failed"
    return "failed" if accepted else "missed"


class CallerGaveUp(Exception):
    """The caller hung up (or vanished) while the call was ringing."""


class CallController:
    """Drives one :class:`~app.call.session.CallSession` over one signaling channel."""

    def __init__(
        self,
        session: Any,
        channel: Any,
        *,
        direction: Direction,
        peer: str = "",
        history: History | None = None,
        clock: Callable[[], float] = time.time,
        on_finish: Callable[[CallRecord], None] | None = None,
        on_history_error: Callable[[OSError], None] | None = None,
    ) -> None:
        """``on_finish`` hears the record once the call is over (the window's "call ended");
        ``on_history_error`` hears a history that could not be saved (default: a log line)."""
        self.session = session
        self.channel = channel
        self.direction = direction
        self.peer = peer
        self.history = history
        self._clock = clock
        self.started = clock()
        self.connected_at: float | None = None
        self.route: Route = "none"
        self.declined = False
        self.accepted = False  # the user took the incoming call
        self.cancelled = False  # our user hung up (before an answer: a cancel, not a failure)
        self.rang = False  # an offer arrived (waiting that never rang is not a call)
        self.record: CallRecord | None = None
        self.recorded = False  # whether the record went into the history
        self._on_finish = on_finish
        self._on_history_error = on_history_error
        self._unsubscribe = session.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            if event.new is CallState.CONNECTED and self.connected_at is None:
                self.connected_at = self._clock()
            if event.new in (CallState.ENDED, CallState.FAILED):
                self.finish(event.reason)
        elif isinstance(event, SelectedPairChanged):
            self.route = "relay" if event.relayed else "direct"

    async def dial(self) -> None:
        """Call; returns once connected (raises CallError/SignalingError otherwise)."""
        await self.session.dial(self.channel)

    async def listen(self, decide: Decide) -> bool:
        """Wait for an offer, ring, and accept or decline it; returns True once connected.

        Raises :class:`CallerGaveUp` when the caller hangs up while it rings.
        """
        offer = await self.session.wait_for_offer(self.channel)
        self.rang = True
        decision = asyncio.ensure_future(decide(self.peer or "someone"))
        watcher = (
            asyncio.ensure_future(self._caller_gone())
            if self.channel.supports_trickle  # a copy-paste caller has no way to give up
            else None
        )
        try:
            waiting = {decision} if watcher is None else {decision, watcher}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (decision, watcher):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if not decision.done() or decision.cancelled():
            self.finish("the caller gave up")
            await self.session.hangup("the caller gave up")
            raise CallerGaveUp("the caller gave up before the call was answered")
        if not decision.result():
            self.declined = True
            await self.session.decline(self.channel)
            return False
        self.accepted = True
        await self.session.answer(self.channel, offer)
        return True

    async def hangup(self, reason: str = "hangup") -> CallRecord | None:
        """Our user ends the call (before an answer: a cancel, not a failure)."""
        self.cancelled = True
        await self.session.hangup(reason)
        return self.finish(reason)

    @property
    def connected(self) -> bool:
        return self.connected_at is not None

    async def _caller_gone(self) -> None:
        """While ringing, keep reading: a Bye (or a lost link) ends the ring; a repeated
        offer keeps it ringing."""
        with contextlib.suppress(Exception):
            while True:
                await self.session.wait_for_offer(self.channel)

    def outcome(self, reason: str | None = None) -> Outcome:
        return outcome_of(
            connected=self.connected_at is not None,
            declined=self.declined,
            direction=self.direction,
            reason=reason,
            cancelled=self.cancelled,
            accepted=self.accepted,
        )

    def finish(self, reason: str | None = None, *, outcome: Outcome | None = None) -> CallRecord:
        """Record the call once (whichever of end / hang-up / error comes first).

        ``outcome`` overrides the rules of :func:`outcome_of` (a flow that broke: "failed").
        Waiting for a call that never rang is not a call: it is not put in the history.
        """
        if self.record is not None:
            return self.record
        from app.history import CallRecord

        self._unsubscribe()
        end = self._clock()
        self.record = CallRecord(
            peer=self.peer or "unknown",
            started=self.started,
            duration=end - self.connected_at if self.connected_at is not None else 0.0,
            direction=self.direction,
            outcome=outcome if outcome is not None else self.outcome(reason),
            route=self.route,
        )
        self.recorded = self.direction == "outgoing" or self.rang
        if self.history is not None and self.recorded:
            try:
                self.history.add(self.record)
            except OSError as exc:
                if self._on_history_error is None:
                    logger.warning("could not save the call history: %s", exc)
                else:
                    self._on_history_error(exc)
        if self._on_finish is not None:
            self._on_finish(self.record)
        return self.record
