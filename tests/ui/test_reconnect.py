"""A network outage mid-call as a person sees it in the window: "Reconnecting…" in the news
line while the path is dead, then the call connected again with the same peer (issue 12,
finding 6). Both windows share this process (memory signaling), so the outage is made at the
caller's ICE sockets, as tests/app/call/test_session.py does below the window."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from app.events import CallState
from tests.app.call.test_session import Outage
from tests.ui.conftest import child, click
from tests.ui.test_call_flow import connect_pair


def state(window: Any) -> CallState:
    """The call core's state behind a window (a function, so each read is a fresh one)."""
    result: CallState = window.adapter.session.state
    return result


def test_an_outage_shows_reconnecting_and_the_call_comes_back(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = connect_pair(qtbot, make_window)
    qtbot.waitUntil(lambda: alice.news.text() == "In a call with bob", timeout=10_000)
    sas = alice.sas.text()
    assert "Verify: <b" in sas
    # Every news line Alice is shown, in order (the label itself only keeps the latest).
    seen: list[str] = []
    show = alice.set_news

    def record(text: str, *tone: str) -> None:
        seen.append(text)
        show(text, *tone)

    alice.set_news = record
    outage = Outage(alice.adapter.session)
    # Nothing arrives from Bob any more: Alice's window says so inline, not in a dialog.
    qtbot.waitUntil(lambda: alice.news.text() == "Reconnecting…", timeout=20_000)
    assert state(alice) is CallState.RECONNECTING
    assert alice.hangup_button.isEnabled()  # still a call she can end
    outage.end()
    # The path is back: the window says connected again, with the same verification code.
    qtbot.waitUntil(lambda: alice.news.text() == "In a call with bob", timeout=30_000)
    assert state(alice) is CallState.CONNECTED
    qtbot.waitUntil(lambda: state(bob) is CallState.CONNECTED, timeout=30_000)
    assert alice.badge.badge.key == "direct"
    assert alice.sas.text() == sas
    qtbot.waitUntil(lambda: bob.news.text() == "In a call with alice", timeout=30_000)
    assert alice.adapter.in_call
    assert bob.adapter.in_call
    # And it carries the chat again.
    alice.chat.input.setFocus()
    qtbot.keyClicks(alice.chat.input, "back again")
    qtbot.keyClick(alice.chat.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "back again" in bob.chat.messages(), timeout=10_000)
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    # The outage read as: why (one inline line), "Reconnecting…", connected again; no dialog.
    assert seen[-3:] == [
        "no packets from the peer for 2 s",
        "Reconnecting…",
        "In a call with bob",
    ]
    assert alice.errors == ["no packets from the peer for 2 s"]
    assert not [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)]
    # The outage cut both ways, so Bob was told the same and is back in the call too.
    assert bob.errors == ["no packets from the peer for 2 s"]
