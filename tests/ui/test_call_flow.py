"""A call's life as a person sees it: the badge and inline news at each step, nothing stale
afterwards, and closing the window mid-call asks first and hangs up so the peer knows
(issue 12, findings 6, 7 and 9)."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from app.events import CallState
from signaling.memory import memory_pair
from tests.ui.conftest import child, click, ring


def connect_pair(qtbot: Any, make_window: Any) -> tuple[Any, Any]:
    alice = make_window("alice")
    bob = make_window("bob")
    a, b = memory_pair()
    bob.wait_for_call(b, "alice")
    assert bob.badge.text() == "Waiting for a call…"  # not "Not in a call" (12.9)
    assert bob.news.text() == "Waiting for a call (alice)…"
    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        alice.start_call(a, "bob")
        assert alice.badge.text() == "Calling…"
    assert bob.badge.text() == "Incoming call…"
    click(qtbot, child(bob, "acceptButton", QPushButton))
    for window in (alice, bob):
        qtbot.waitUntil(lambda w=window: w.badge.badge.key == "direct", timeout=20_000)
    return alice, bob


def test_call_news_is_inline_and_nothing_stays_stale(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = connect_pair(qtbot, make_window)
    assert alice.news.text() == "In a call with bob"
    qtbot.waitUntil(lambda: "Verify: <b" in alice.sas.text(), timeout=10_000)
    assert not alice.start_panel.isVisible()  # the call gets the room (12.10)
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=10_000)
    for window in (alice, bob):
        assert window.news.text().startswith("Call ended — 0:")
        assert window.badge.text() == "Not in a call"
        assert "Verify: —" in window.sas.text()  # no SAS, timer or quality left over
        assert window.timer.text() == "0:00"
        assert window.quality_label.text() == ""
        assert not window.hangup_button.isEnabled()
        assert window.start_panel.isVisible()
        assert window.error_boxes == []
        assert window.errors == []
    assert [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox)] == []


def test_declined_call_is_news_not_a_warning(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice")
    bob = make_window("bob")
    ring(qtbot, alice, bob)
    click(qtbot, child(bob, "declineButton", QPushButton))
    qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=15_000)
    assert alice.history.records[-1].outcome == "declined"
    assert alice.news.text() == "Call ended — declined"
    assert alice.news.property("tone") == "info"
    assert alice.error_boxes == []
    # The next call starts clean: the old result is gone at once.
    alice.start_call(memory_pair()[0], "carol")
    assert alice.news.text() == "Calling carol…"
    alice.hangup()


def test_closing_mid_call_asks_and_the_hang_up_arrives(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = connect_pair(qtbot, make_window)
    alice.close()  # the title bar's close button
    box = alice.leave_box
    assert isinstance(box, QMessageBox)
    qtbot.waitUntil(box.isVisible, timeout=5_000)
    # "Stay" keeps the call.
    click(qtbot, child(box, "stayInCall", QPushButton))
    qtbot.waitUntil(lambda: alice.leave_box is None, timeout=5_000)
    assert alice.isVisible()
    assert alice.adapter.session.state is CallState.CONNECTED
    # Closing again and leaving hangs up: Bob's side ends because Alice said so.
    alice.close()
    box = alice.leave_box
    assert isinstance(box, QMessageBox)
    with qtbot.waitSignal(bob.adapter.callEnded, timeout=15_000) as ended:
        click(qtbot, child(box, "leaveCall", QPushButton))
    qtbot.waitUntil(lambda: alice._shutdown_done, timeout=15_000)
    assert not alice.isVisible()
    record = ended.args[0]
    assert record.outcome == "completed"
    assert bob.adapter.session.state is CallState.ENDED
    assert bob.news.text().startswith("Call ended — ")
    assert bob.errors == []


def test_shortcuts_are_in_the_menus_and_tooltips_and_work(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    from PySide6.QtCore import Qt

    alice, bob = connect_pair(qtbot, make_window)
    menus = {a.text(): a.menu() for a in alice.menuBar().actions()}
    call_menu = menus["&Call"]
    shortcuts = {a.objectName(): a.shortcut().toString() for a in call_menu.actions()}
    assert shortcuts == {
        "muteAction": "M",
        "cameraAction": "V",
        "hangupAction": "Ctrl+E",
        "acceptAction": "Ctrl+Shift+A",
        "declineAction": "Ctrl+Shift+D",
    }
    assert alice.mute_button.toolTip().endswith("(M)")
    assert alice.hangup_button.toolTip().endswith("(Ctrl+E)")
    # M mutes (the key goes to the window, no text field focused), M again unmutes.
    alice.activateWindow()
    qtbot.waitUntil(alice.isActiveWindow, timeout=5_000)  # shortcuts go to the active window
    alice.hangup_button.setFocus()
    qtbot.keyClick(alice.hangup_button, Qt.Key.Key_M)
    assert alice.mute_button.isChecked()
    assert alice.adapter.session.muted
    qtbot.keyClick(alice.hangup_button, Qt.Key.Key_M)
    assert not alice.mute_button.isChecked()
    # Typing "m" in the chat types it instead.
    alice.chat.input.setFocus()
    qtbot.keyClicks(alice.chat.input, "mm")
    assert alice.chat.input.text() == "mm"
    assert not alice.mute_button.isChecked()
    # Help → About names the version and links the README sections.
    alice.about_action.trigger()
    assert alice.about_box is not None
    assert "PeerCall 0." in alice.about_box.text()
    assert "#hosting-a-relay-for-friends-behind-nat" in alice.about_box.text()
    alice.about_box.close()
    # Ctrl+E hangs up.
    alice.hangup_button.setFocus()
    qtbot.keyClick(alice.hangup_button, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)


def test_cancelling_my_own_call_is_logged_cancelled(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice")
    a, _nobody_answers = memory_pair()
    alice.start_call(a, "bob")
    qtbot.waitUntil(lambda: alice.hangup_button.isEnabled(), timeout=5_000)
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: len(alice.history.records) == 1, timeout=10_000)
    assert alice.history.records[0].outcome == "cancelled"  # not "failed" (12.9)
    assert alice.news.text() == "Call cancelled"
    assert alice.errors == []


def test_closing_while_only_waiting_does_not_ask(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    window = make_window("bob")
    window.wait_for_call(memory_pair()[1], "alice")
    qtbot.waitUntil(lambda: window.adapter.waiting, timeout=5_000)
    window.close()
    assert window.leave_box is None  # nobody to tell: no question
    qtbot.waitUntil(lambda: window._shutdown_done, timeout=15_000)


def test_an_incoming_call_is_accepted_from_the_keyboard(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    """Ctrl+Shift+A, as the Call menu shows, answers the ring (12.13)."""
    from PySide6.QtCore import Qt

    alice = make_window("alice")
    bob = make_window("bob")
    ring(qtbot, alice, bob)
    bob.activateWindow()
    qtbot.waitUntil(bob.isActiveWindow, timeout=5_000)  # shortcuts go to the active window
    accept = child(bob, "acceptButton", QPushButton)
    assert accept.toolTip().endswith("(Ctrl+Shift+A)")
    qtbot.keyClick(
        bob.history_view,
        Qt.Key.Key_A,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    for window in (alice, bob):
        qtbot.waitUntil(lambda w=window: w.badge.badge.key == "direct", timeout=20_000)
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    assert bob.history.records[-1].outcome == "completed"
