"""A call with no network path as a person sees it in the window: one inline line that says
what failed and what would help (add a TURN server), no dialog, and the window ready for the
next call (issue 12, finding 6: "Failed: no path (add a TURN server)")."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from signaling.memory import MemoryChannel, memory_pair
from signaling.messages import Answer, Candidate, Message, Offer
from tests.ui.conftest import child, click


class NoCandidates(MemoryChannel):
    """Signaling that never carries a candidate, in the descriptions or trickled, as between
    two peers behind NATs that no STUN/TURN server helps: ICE has nothing to check."""

    def __init__(self, inner: MemoryChannel) -> None:
        self.inner = inner
        self.supports_trickle = inner.supports_trickle

    async def connect(self) -> None:
        await self.inner.connect()

    async def send(self, message: Message) -> None:
        if isinstance(message, Candidate):
            return
        if isinstance(message, Offer | Answer):
            lines = message.sdp.splitlines(True)
            sdp = "".join(line for line in lines if not line.startswith("a=cand"))
            message = dataclasses.replace(message, sdp=sdp)
        await self.inner.send(message)

    async def receive(self) -> Message:
        return await self.inner.receive()

    async def close(self) -> None:
        await self.inner.close()


def test_no_path_is_one_line_naming_the_fix(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="app.ui.mainwindow")
    alice = make_window("alice")
    bob = make_window("bob")
    assert alice.settings["ice_servers"] == []  # nothing that could find a way round the NATs
    a, b = memory_pair()
    bob.wait_for_call(NoCandidates(b), "alice")
    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        alice.start_call(NoCandidates(a), "bob")
    click(qtbot, child(bob, "acceptButton", QPushButton))
    qtbot.waitUntil(lambda: alice.news.text().startswith("Failed: "), timeout=30_000)
    news = alice.news.text()
    # What failed and what would help, in one line, on both sides.
    expected = "Failed: no network path to the other person: add a STUN/TURN server or host a relay"
    assert news == expected
    qtbot.waitUntil(lambda: bob.news.text() == expected, timeout=10_000)
    # Each side's call flow then echoes the end ("Call: call ended: ..."): the line shown
    # stays the one above (the echo used to replace it, depending on which came first).

    def echoes() -> int:
        return sum("call ended:" in record.getMessage() for record in caplog.records)

    qtbot.waitUntil(lambda: echoes() == 2, timeout=10_000)
    assert alice.news.text() == expected
    assert bob.news.text() == expected
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]
    qtbot.waitUntil(lambda: len(alice.history.records) == 1, timeout=10_000)
    assert alice.history.records[0].outcome == "failed"
    # Ready for the next call: nothing left of this one.
    assert not alice.adapter.in_call
    assert not alice.hangup_button.isEnabled()
    assert alice.start_panel.isVisible()
