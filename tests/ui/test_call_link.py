"""The window's "Copy call link": the browser link for the room typed in the Server room form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit, QPushButton

from app.ui.mainwindow import MainWindow


def fill(qtbot: Any, field: QLineEdit, text: str) -> None:
    field.clear()
    qtbot.keyClicks(field, text)


def test_copy_call_link_puts_the_rooms_browser_link_on_the_clipboard(
    qtbot: Any, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    fill(qtbot, window.server_url, "wss://call.example.org:8765")
    fill(qtbot, window.room, "kitchen")
    fill(qtbot, window.secret, "s3 cret&")
    button = window.findChild(QPushButton, "copyCallLink")
    assert button is not None
    assert button.isVisible()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == (
        "https://call.example.org:8765/#room=kitchen&secret=s3%20cret%26"
    )
    assert window.statusBar().currentMessage().startswith("Call link copied")
    assert window.errors == []


def test_copy_call_link_without_a_secret_says_so(
    qtbot: Any, make_window: Callable[..., MainWindow]
) -> None:
    window = make_window()
    fill(qtbot, window.server_url, "ws://127.0.0.1:8765")
    fill(qtbot, window.room, "kitchen")
    window.secret.clear()
    QGuiApplication.clipboard().setText("unchanged")
    qtbot.mouseClick(window.copy_link_button, Qt.MouseButton.LeftButton)
    assert window.errors == ["Copy call link: a call link needs a room secret of 1-256 characters"]
    assert QGuiApplication.clipboard().text() == "unchanged"
