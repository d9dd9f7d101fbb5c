"""Pressing V in a video call switches the camera as clicking Camera does, and the other side
sees it; in the chat field V types a "v" instead (issue 12, finding 13: shortcuts M and V)."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from tests.ui.conftest import child, click, ring


def test_v_switches_the_camera_and_the_peer_sees_it(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice", video=True)
    bob = make_window("bob", video=True)
    ring(qtbot, alice, bob)
    click(qtbot, child(bob, "acceptButton", QPushButton))
    for window in (alice, bob):
        qtbot.waitUntil(lambda w=window: w.badge.badge.key == "direct", timeout=20_000)
    camera = child(alice, "cameraButton", QPushButton)
    assert not camera.isChecked()  # video.enabled is off: the call starts without the camera
    qtbot.waitUntil(lambda: bob.remote_video.camera_off, timeout=20_000)
    # V goes to the active window when no text field has the focus.
    alice.activateWindow()
    qtbot.waitUntil(alice.isActiveWindow, timeout=5_000)
    alice.hangup_button.setFocus()
    qtbot.keyClick(alice.hangup_button, Qt.Key.Key_V)
    assert camera.isChecked()
    qtbot.waitUntil(lambda: alice.local_video.frames_painted > 0, timeout=10_000)
    qtbot.waitUntil(lambda: not bob.remote_video.camera_off, timeout=20_000)
    qtbot.waitUntil(lambda: bob.remote_video.frames_painted > 2, timeout=20_000)
    # V again: off, and Bob's view says so rather than freezing on the last picture.
    qtbot.keyClick(alice.hangup_button, Qt.Key.Key_V)
    assert not camera.isChecked()
    qtbot.waitUntil(lambda: bob.remote_video.camera_off, timeout=20_000)
    assert bob.remote_video.off_text == "alice: camera off"
    # Typing "v" in the chat types it and leaves the camera alone.
    alice.chat.input.setFocus()
    qtbot.keyClicks(alice.chat.input, "vv")
    assert alice.chat.input.text() == "vv"
    assert not camera.isChecked()
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    assert alice.errors == []
    assert bob.errors == []
