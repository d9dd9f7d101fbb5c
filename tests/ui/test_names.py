"""Names: the display name travels in the room join and in the offer/answer, and shows in the
ring, the chat and the history; history rows call back (issue 12, finding 8)."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QLineEdit, QPushButton

from signaling.memory import memory_pair
from signaling.messages import Answer, Offer, decode, encode
from signaling.server import SignalingServer
from tests.ui.conftest import child, click, type_into


def test_the_name_is_optional_on_the_wire() -> None:
    sdp = "v=0\r\n"
    assert decode(encode(Offer(sdp, "Alice"))) == Offer(sdp, "Alice")
    assert decode(encode(Answer(sdp))) == Answer(sdp)  # old peers: no name, still valid
    assert '"name"' not in encode(Offer(sdp))


def test_names_in_the_ring_the_chat_and_the_history(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("a", display_name="Alice Liddell")
    bob = make_window("b", display_name="Bob")
    a, b = memory_pair()
    bob.wait_for_call(b, "someone")
    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        alice.start_call(a, "someone")
    assert bob.incoming_label.text() == "Incoming call from Alice Liddell"
    click(qtbot, child(bob, "acceptButton", QPushButton))
    qtbot.waitUntil(lambda: alice.news.text() == "In a call with Bob", timeout=20_000)
    qtbot.waitUntil(lambda: bob.news.text() == "In a call with Alice Liddell", timeout=20_000)
    type_into(qtbot, child(bob, "chatInput", QLineEdit), "hello")
    click(qtbot, child(bob, "chatSend", QPushButton))
    qtbot.waitUntil(lambda: "Bob: hello" in alice.chat.messages(), timeout=5_000)
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: len(bob.history.records) == 1, timeout=10_000)
    qtbot.waitUntil(lambda: len(alice.history.records) == 1, timeout=10_000)
    assert alice.history.records[0].peer == "Bob"
    assert bob.history.records[0].peer == "Alice Liddell"
    assert bob.history_view.item(0, 1).text() == "Alice Liddell"
    assert bob.history_view.horizontalScrollBar().maximum() == 0  # fits, no scrolling


def test_history_calls_back_in_the_room_and_has_a_menu(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any
) -> None:
    server = SignalingServer("127.0.0.1", 0, ping_interval=None)
    arun(server.start())
    try:
        room = {"signaling.url": server.url, "signaling.secret": "pw", "signaling.room": "r1"}
        alice = make_window("a", display_name="Alice", **room)
        bob = make_window("b", display_name="Bob", **room)
        click(qtbot, child(bob, "waitButton", QPushButton))
        qtbot.waitUntil(lambda: bob.adapter.waiting, timeout=10_000)
        click(qtbot, child(alice, "callButton", QPushButton))
        qtbot.waitUntil(lambda: bob.incoming.isVisible(), timeout=15_000)
        click(qtbot, child(bob, "acceptButton", QPushButton))
        qtbot.waitUntil(lambda: alice.news.text() == "In a call with Bob", timeout=20_000)
        assert alice.settings["signaling.contacts"] == {"Bob": [server.url, "r1"]}
        click(qtbot, child(alice, "hangupButton", QPushButton))
        qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=10_000)
        qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
        # Alice moves on to another room; a double-click on Bob's row calls him back in his.
        type_into(qtbot, child(alice, "room", QLineEdit), "elsewhere")
        click(qtbot, child(bob, "waitButton", QPushButton))
        qtbot.waitUntil(lambda: bob.adapter.waiting, timeout=10_000)
        tabs = alice.side_tabs.tabBar()  # the "History" tab
        qtbot.mouseClick(tabs, Qt.MouseButton.LeftButton, pos=tabs.tabRect(1).center())
        history = alice.history_view
        assert history.isVisible()
        rect = history.visualItemRect(history.item(0, 1))
        qtbot.mouseClick(history.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(history.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert alice.room.text() == "r1"
        qtbot.waitUntil(lambda: bob.incoming.isVisible(), timeout=15_000)
        click(qtbot, child(bob, "declineButton", QPushButton))
        qtbot.waitUntil(lambda: len(alice.history.records) == 2, timeout=15_000)
        # The context menu deletes one row, then clears the rest.
        history.customContextMenuRequested.emit(QPoint(rect.center()))  # a right click
        assert [a.text() for a in history.menu.actions() if a.text()] == [
            "Call back",
            "Delete",
            "Clear history",
        ]
        history.menu.actions()[1].trigger()
        assert len(alice.history.records) == 1
        assert history.rowCount() == 1
        history.customContextMenuRequested.emit(QPoint(rect.center()))
        history.menu.actions()[3].trigger()
        assert alice.history.records == []
        assert history.rowCount() == 0
        assert '"calls": []' in alice.history.path.read_text()
    finally:
        arun(server.stop())


def test_a_peer_name_is_plain_text_and_ours_is_made_sendable(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("a", display_name="<b>Eve</b>\tthe\x07 tester " + "x" * 80)
    bob = make_window("b", display_name="Bob")
    a, b = memory_pair()
    bob.wait_for_call(b, "someone")
    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        alice.start_call(a, "someone")
    label = bob.incoming_label
    assert label.textFormat() == Qt.TextFormat.PlainText
    assert label.text().startswith("Incoming call from <b>Eve</b>the tester xxx")
    assert len(label.text()) == len("Incoming call from ") + 64
    click(qtbot, child(bob, "declineButton", QPushButton))
    qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=15_000)
    assert alice.errors == []
