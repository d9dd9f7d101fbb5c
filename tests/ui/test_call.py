"""Two real main windows call each other in one process."""

from __future__ import annotations

import asyncio
from typing import Any

from app.events import CallState
from signaling.memory import memory_pair
from tests.ui.conftest import ring


def connect_pair(qtbot: Any, qloop: asyncio.AbstractEventLoop, caller: Any, callee: Any) -> None:
    a, b = memory_pair()
    with qtbot.waitSignal(callee.adapter.incomingCall, timeout=10_000):
        callee.wait_for_call(b, "alice")
        caller.start_call(a, "bob")
    assert callee.incoming.isVisible()
    callee.accept_button.click()
    qtbot.waitUntil(lambda: caller.badge.badge.key == "direct", timeout=15_000)
    qtbot.waitUntil(lambda: callee.badge.badge.key == "direct", timeout=15_000)


def test_call_between_two_windows_over_memory_channel(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice", display_name="Alice")
    bob = make_window("bob", display_name="Bob")
    connect_pair(qtbot, qloop, alice, bob)
    assert alice.adapter.session.state is CallState.CONNECTED
    assert alice.badge.text() == "Connected direct (host)"
    # Both show the same short authentication string.
    qtbot.waitUntil(lambda: "Verify: <b" in alice.sas.text() and "Verify: <b" in bob.sas.text())
    assert alice.sas.text() == bob.sas.text()
    assert alice.adapter.session.sas in alice.sas.text()
    # Chat both ways over the data channel.
    alice.chat.input.setText("hi bob")
    alice.chat.send_button.click()
    qtbot.waitUntil(lambda: "Alice: hi bob" in bob.chat.messages(), timeout=5000)
    assert "Alice: hi bob" in alice.chat.messages()
    # Hang up: both end, history records the call as direct and completed.
    alice.hangup_button.click()
    # The badge goes back to idle; the result is inline news (issue 12.6/12.9).
    qtbot.waitUntil(lambda: bob.news.text().startswith("Call ended — "), timeout=10_000)
    qtbot.waitUntil(lambda: alice.news.text().startswith("Call ended — "), timeout=10_000)
    assert bob.badge.badge.key == alice.badge.badge.key == "idle"
    qtbot.waitUntil(lambda: len(alice.history.records) == 1 and len(bob.history.records) == 1)
    record = alice.history.records[0]
    assert (record.peer, record.direction, record.outcome, record.route) == (
        "Bob",  # the display name from Bob's answer (issue 12.8)
        "outgoing",
        "completed",
        "direct",
    )
    assert bob.history.records[0].direction == "incoming"
    assert alice.history_view.rowCount() == 1
    assert not alice.hangup_button.isEnabled()
    assert alice.call_button.isEnabled()
    assert alice.errors == []
    assert bob.errors == []


def test_decline_rings_then_records_declined(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = make_window("alice"), make_window("bob")
    ring(qtbot, alice, bob)
    bob.decline_button.click()
    qtbot.waitUntil(lambda: len(bob.history.records) == 1, timeout=10_000)
    assert bob.history.records[0].outcome == "declined"
    qtbot.waitUntil(lambda: alice.news.text() == "Call ended — declined", timeout=10_000)
    qtbot.waitUntil(lambda: len(alice.history.records) == 1, timeout=10_000)
    assert alice.history.records[0].outcome == "declined"
