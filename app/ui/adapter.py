"""The one bridge between the call engine and Qt.

:class:`CallAdapter` subscribes to a :class:`app.call.session.CallSession` and re-emits each engine
event as a Qt signal; its slots run engine coroutines on the qasync loop with
``asyncio.ensure_future`` and route every failure to :attr:`CallAdapter.errorRaised` as one
line (never swallowed, never a traceback in the UI). Widgets connect to these signals and call
these slots; they never touch aiortc or a session directly.

The call itself (dial, ring, accept or decline, hang up, outcome, history) is
:class:`app.call.controller.CallController`'s, the same one ``peercall call`` uses: the adapter
only forwards the user's actions to it and reports what it decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal

from app import events as ev
from app.call.controller import CallController, CallerGaveUp
from app.errors import CallError
from app.history import CallRecord, Direction, History, Outcome
from app.ui.presenters import user_message

logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Any]  # () -> CallSession (built from settings by the window)


class CallAdapter(QObject):
    """Engine events in, Qt signals out; user actions in, engine coroutines out."""

    # Every event, in order (the debug panel and export use this one).
    engineEvent = Signal(object)
    # Typed conveniences for the widgets that only care about one kind.
    stateChanged = Signal(object)  # ev.StateChanged
    selectedPairChanged = Signal(object)  # ev.SelectedPairChanged
    statsSampled = Signal(object)  # ev.StatsSample
    chatReceived = Signal(str)
    sasReady = Signal(str)
    # The adapter's own signals.
    sessionStarted = Signal(object)  # a new CallSession was attached (views reset)
    incomingCall = Signal(str)  # an offer arrived: ring, then accept() or decline()
    callEnded = Signal(object)  # CallRecord, once the call is over
    chatSent = Signal(str)
    errorRaised = Signal(str)  # one line for the status bar / a dialog
    busyChanged = Signal(bool)  # a call (or a wait for one) is in progress

    def __init__(
        self,
        make_session: SessionFactory,
        history: History | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._make_session = make_session
        self.history = history
        self.session: Any = None
        self.controller: CallController | None = None  # the current (or last) call
        self._channel: Any = None
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._decision: asyncio.Future[bool | None] | None = None  # None: caller gave up
        self._finished = True
        self.last_recorded = False  # whether the last callEnded went into the history

    # --- engine -> Qt ---------------------------------------------------------------------

    def _attach(self, session: Any) -> None:
        self._detach()
        self.session = session
        self.sessionStarted.emit(session)
        for event in list(session.events):  # replay what happened before we subscribed
            self._on_event(event)
        self._unsubscribe = session.subscribe(self._on_event)

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: ev.Event) -> None:
        self.engineEvent.emit(event)
        if isinstance(event, ev.StateChanged):
            # The controller (subscribed after us) then records the end: callEnded follows.
            self.stateChanged.emit(event)
        elif isinstance(event, ev.SelectedPairChanged):
            self.selectedPairChanged.emit(event)
        elif isinstance(event, ev.StatsSample):
            self.statsSampled.emit(event)
        elif isinstance(event, ev.ChatReceived):
            self.chatReceived.emit(event.text)
        elif isinstance(event, ev.SasReady):
            self.sasReady.emit(event.sas)
        elif isinstance(event, ev.ErrorOccurred):
            self.errorRaised.emit(event.message)

    # --- Qt -> engine ---------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run an engine coroutine on the loop; a failure becomes ``"<what>: <one line>"``."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                logger.info("%s failed: %r", what, exc)
                self.errorRaised.emit(f"{what}: {user_message(exc)}")

        task.add_done_callback(done)
        return task

    @property
    def in_call(self) -> bool:
        return not self._finished

    @property
    def waiting(self) -> bool:
        """A call is set up but has not connected yet (dialling, or waiting for an offer)."""
        controller, session = self.controller, self.session
        if not self.in_call or controller is None:
            return False
        # The session is CONNECTED before its subscribers (the controller last) hear it.
        now = session is not None and session.state in (
            ev.CallState.CONNECTED,
            ev.CallState.RECONNECTING,
        )
        return not controller.connected and not now

    def call(self, channel: Any, peer: str) -> asyncio.Task[Any]:
        """Dial ``peer`` over ``channel`` (a signaling.base.SignalingChannel)."""
        return self.run(self._call(channel, peer), "Call")

    def listen(self, channel: Any, peer: str) -> asyncio.Task[Any]:
        """Wait on ``channel`` for an offer; ring with :attr:`incomingCall`; then accept/decline."""
        return self.run(self._listen(channel, peer), "Waiting for a call")

    def accept(self) -> None:
        if self._decision is not None and not self._decision.done():
            self._decision.set_result(True)

    def decline(self) -> None:
        if self._decision is not None and not self._decision.done():
            self._decision.set_result(False)

    def hangup(self) -> asyncio.Task[Any]:
        return self.run(self._hangup("hangup"), "Hang up")

    def send_chat(self, text: str) -> None:
        if self.session is None or not text.strip():
            return
        session = self.session

        async def send() -> None:
            await session.send_chat(text)
            self.chatSent.emit(text)

        self.run(send(), "Chat")

    def rename_peer(self, name: str) -> None:
        """The peer's display name became known (issue 12.8): the history records it."""
        if name and self.in_call and self.controller is not None:
            self.controller.peer = name

    def set_muted(self, muted: bool) -> None:
        if self.session is not None:
            self.session.set_muted(muted)

    def set_video_enabled(self, on: bool) -> None:
        if self.session is not None:
            self.session.set_video_enabled(on)

    def export(self) -> dict[str, Any]:
        return dict(self.session.export()) if self.session is not None else {}

    async def shutdown(self) -> None:
        """Hang up, close the channel and wait for every task we started (clean exit)."""
        if self._decision is not None and not self._decision.done():
            self._decision.set_result(False)
        with contextlib.suppress(Exception):
            await self._hangup("closing")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        self._detach()

    # --- flows ----------------------------------------------------------------------------

    def _begin(self, channel: Any, peer: str, direction: Direction) -> Any:
        if self.in_call:
            raise CallError("a call is already in progress; hang up first")
        self._channel = channel
        self._finished = False
        self.busyChanged.emit(True)
        session = self._make_session()
        self._attach(session)
        # Subscribed after the adapter, so stateChanged(ENDED) goes out before callEnded.
        self.controller = CallController(
            session,
            channel,
            direction=direction,
            peer=peer,
            history=self.history,
            on_finish=self._ended,
            on_history_error=lambda exc: self.errorRaised.emit(f"History: {user_message(exc)}"),
        )
        return session

    async def _guard(self, flow: Awaitable[None], session: Any, channel: Any) -> None:
        """Run a call flow; on failure end the call (recorded as failed) and re-raise."""
        try:
            await flow
        except Exception:
            controller = self.controller
            if controller is not None and controller.cancelled:
                return  # our own hang-up closed the channel under the flow
            if session.state is ev.CallState.ENDED:
                return  # ended on purpose (declined, hung up before connecting): no error
            self._finish("failed")
            with contextlib.suppress(Exception):
                await self._close_everything("error", session, channel)
            raise
        except BaseException:
            self._finish("failed")
            with contextlib.suppress(Exception):
                await self._close_everything("error", session, channel)
            raise

    async def _call(self, channel: Any, peer: str) -> None:
        session = self._begin(channel, peer, "outgoing")
        controller = self.controller
        assert controller is not None

        async def flow() -> None:
            await channel.connect()
            await controller.dial()

        await self._guard(flow(), session, channel)

    async def _listen(self, channel: Any, peer: str) -> None:
        session = self._begin(channel, peer, "incoming")
        controller = self.controller
        assert controller is not None

        async def decide(who: str) -> bool:
            decision: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
            self._decision = decision
            self.incomingCall.emit(who)
            try:
                return bool(await decision)
            finally:
                self._decision = None

        async def flow() -> None:
            await channel.connect()
            try:
                accepted = await controller.listen(decide)
            except CallerGaveUp:  # the controller filed it as missed
                await self._close_everything("the caller gave up", session, channel)
                return
            if not accepted:  # the controller filed it as declined
                await self._close_everything("declined", session, channel)

        await self._guard(flow(), session, channel)

    async def _hangup(self, reason: str) -> None:
        controller = self.controller
        if self.session is None or controller is None:
            return
        if self._decision is not None and not self._decision.done():
            self._decision.set_result(False)
            return
        session, channel = self.session, self._channel
        await controller.hangup(reason)
        await self._close_everything(reason, session, channel)

    async def _close_everything(self, reason: str, session: Any, channel: Any) -> None:
        """End this call's session and channel (captured when it began: by the time this runs
        the window may have started the next call)."""
        await session.hangup(reason)
        if channel is not None and self._channel is channel:  # else already being closed
            self._channel = None
            await channel.close()

    def _finish(self, outcome: Outcome) -> None:
        """The flow broke: the controller files the call with ``outcome`` (once)."""
        if self.controller is not None and not self._finished:
            self.controller.finish(outcome, outcome=outcome)

    def _ended(self, record: CallRecord) -> None:
        """The controller filed the call: tell the window, let the channel go."""
        if self._finished:
            return
        self._finished = True
        self.last_recorded = self.controller is not None and self.controller.recorded
        self.busyChanged.emit(False)
        self.callEnded.emit(record)
        channel = self._channel
        if channel is not None:
            self._channel = None
            self.run(channel.close(), "Closing signaling")
