"""Details of the window a person notices (issue 12, findings 10, 11 and 13): chat times and
a fresh chat per call, a chat box that keeps its width, the window's size coming back, the
same backend names everywhere, a Browse button for the CA file, and names for screen readers."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QFileDialog,
    QLineEdit,
    QPushButton,
    QWidget,
)

from signaling.memory import memory_pair
from tests.ui.conftest import child, click, restarted, type_into


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


def test_chat_has_times_keeps_its_width_and_the_next_call_starts_empty(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice")
    bob = make_window("bob")
    call(qtbot, alice, bob)
    # At 800 px wide the message box is still there to type in (12.10).
    # The "Start a call" panel hides in a call, and the window may then be made narrower
    # (its layout lowers the minimum width once it has run after the panel hid).
    qtbot.waitUntil(lambda: alice.minimumSize().width() <= 800)
    alice.resize(800, 600)
    qtbot.waitUntil(lambda: alice.width() == 800)
    box = child(alice, "chatInput", QLineEdit)
    assert box.isVisible()
    assert box.width() >= 120
    type_into(qtbot, child(bob, "chatInput", QLineEdit), "hello")
    click(qtbot, child(bob, "chatSend", QPushButton))
    qtbot.waitUntil(lambda: "bob: hello" in alice.chat.messages(), timeout=5_000)
    # Each line carries the time it was said (HH:MM, the format only: no clock is asserted).
    assert re.search(r"^\d\d:\d\d bob: hello$", alice.chat.messages(), re.MULTILINE)
    assert re.search(r"^\d\d:\d\d bob: hello$", bob.chat.messages(), re.MULTILINE)
    hang_up(qtbot, alice, bob)
    assert "bob: hello" in alice.chat.messages()  # still readable after the call ends
    call(qtbot, alice, bob)
    assert "hello" not in alice.chat.messages()  # the next call starts with an empty chat
    assert "hello" not in bob.chat.messages()
    hang_up(qtbot, alice, bob)
    assert alice.errors == []
    assert bob.errors == []


def test_the_window_comes_back_at_its_size_after_a_restart(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, tmp_path: Path
) -> None:

    window = make_window("Main")
    # The user drags the bottom edge. (The width is left alone: the offscreen test screen is
    # 800 px wide, already less than the window's minimum, and a restore fits the screen.)
    window.resize(window.width(), 530)
    qtbot.waitUntil(lambda: window.height() == 530)
    window.close()  # the title bar's close button (no call: no question)
    qtbot.waitUntil(lambda: window._shutdown_done, timeout=15_000)
    again = restarted(qtbot, window, tmp_path / "h.json")
    again.show()
    assert again.height() == 530


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


def test_the_ca_file_is_chosen_with_browse(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    pem = tmp_path / "my-ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    window = make_window("Main")
    d = window.open_settings()
    d.tabs.setCurrentWidget(d.signaling)
    click(qtbot, child(d, "caBrowse", QPushButton))
    picker = child(d, "caFileDialog", QFileDialog)
    qtbot.waitUntil(picker.isVisible, timeout=5_000)
    # The path is pasted into Qt's own dialog's name box (typed key by key, each "/" makes
    # its completer open that folder and the box keeps only the last part).
    QGuiApplication.clipboard().setText(str(pem))
    name = child(picker, "fileNameEdit", QLineEdit)
    name.setFocus()
    qtbot.keyClick(name, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(name, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: d.signaling.ca_file.text() == str(pem), timeout=5_000)
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


def test_the_window_fits_half_of_a_full_hd_screen(qtbot: Any, make_window: Any) -> None:
    """Snapped to half of a 1920-px screen, every panel is still there and usable (12.10)."""
    window = make_window("Main")
    window.resize(960, 700)
    qtbot.waitUntil(lambda: window.width() == 960)
    for name in ("serverUrl", "room", "secret"):
        field = child(window, name, QLineEdit)
        assert field.isVisible()
        assert field.width() >= 100, name
    assert child(window, "callButton", QPushButton).isVisible()
    assert window.remote_video.width() >= 320
    assert child(window, "chatInput", QLineEdit).width() >= 120
