"""Details of the window a person notices (issue 12, findings 10, 11 and 13): chat times and
a fresh chat per call, a chat box that keeps its width, the window's size coming back, the
same backend names everywhere, a Browse button for the CA file, and names for screen readers."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPushButton,
    QWidget,
)

from signaling.memory import memory_pair
from tests.ui.conftest import child, click


def call(qtbot: Any, alice: Any, bob: Any, peer: str = "bob") -> None:
    a, b = memory_pair()
    bob.wait_for_call(b, "alice")
    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        alice.start_call(a, peer)
    click(qtbot, child(bob, "acceptButton", QPushButton))
    for window in (alice, bob):
        qtbot.waitUntil(lambda w=window: w.badge.badge.key == "direct", timeout=20_000)


def hang_up(qtbot: Any, alice: Any, bob: Any) -> None:
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=10_000)


def test_settings_and_the_window_name_the_backends_alike(qtbot: Any, make_window: Any) -> None:
    window = make_window("Main")
    main = child(window, "backendChoice", QComboBox)
    d = window.open_settings()
    d.tabs.setCurrentWidget(d.signaling)
    dialog = child(d, "signalingBackend", QComboBox)
    names = [main.itemText(i) for i in range(main.count())]
    assert [dialog.itemText(i) for i in range(dialog.count())] == names  # and in one order
    assert names == ["Server room", "LAN peer", "Copy / paste"]
    d.close()


def unnamed_controls(root: QWidget) -> list[str]:
    """Visible controls a screen reader has no name for: what Qt's accessibility layer reports
    as the name (an accessible name, a button's text, a form label's buddy) is empty."""
    from PySide6.QtGui import QAccessible

    missing = []
    for widget in root.findChildren(QWidget):
        if not widget.isVisible() or not isinstance(
            widget, QAbstractButton | QLineEdit | QComboBox | QAbstractSpinBox
        ):
            continue
        if isinstance(widget.parent(), QComboBox | QAbstractSpinBox):
            continue  # the edit inside an editable combo or spin box: named by its owner
        face = QAccessible.queryAccessibleInterface(widget)
        if face is None or not face.text(QAccessible.Text.Name).strip():
            missing.append(f"{type(widget).__name__} {widget.objectName()!r}")
    return missing


def test_every_control_has_a_name_for_screen_readers(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice")
    bob = make_window("bob")
    assert unnamed_controls(alice) == []  # before a call: the "Start a call" panel
    call(qtbot, alice, bob)
    assert unnamed_controls(alice) == []  # in a call: the call controls and the chat
    d = alice.open_settings()
    for page in (d.ice, d.signaling, d.relay, d.media):
        d.tabs.setCurrentWidget(page)
        assert unnamed_controls(d) == [], d.tabs.tabText(d.tabs.currentIndex())
    d.close()
    hang_up(qtbot, alice, bob)
