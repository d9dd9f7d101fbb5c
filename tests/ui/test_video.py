"""Video in the window between two real windows: remote large, self-view small, the test
pattern when there is no camera, camera on/off mid-call and the "camera off" badge on the
other side (issue 12, finding 4)."""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtWidgets import QPushButton

from app.media.video import list_cameras
from tests.ui.conftest import child, click, ring


def distinct_colours(view: Any) -> int:
    """How many clearly different colours one row through the middle of the view shows."""
    image = view.grab().toImage()
    y = image.height() // 3  # above the clock box in the middle of the pattern
    seen: set[tuple[int, int, int]] = set()
    for x in range(0, image.width(), 4):
        c = image.pixelColor(x, y)
        seen.add((c.red() // 48, c.green() // 48, c.blue() // 48))
    return len(seen)


def test_video_call_shows_the_test_pattern_and_the_camera_switch(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    assert list_cameras() == []  # the CI machine has no camera: the test pattern is sent
    alice = make_window("alice", video=True, **{"video.enabled": True})
    bob = make_window("bob", video=True)
    ring(qtbot, alice, bob)
    click(qtbot, child(bob, "acceptButton", QPushButton))
    for window in (alice, bob):
        qtbot.waitUntil(lambda w=window: w.badge.badge.key == "direct", timeout=20_000)
    # Alice starts with the camera on (her settings), Bob with it off.
    assert child(alice, "cameraButton", QPushButton).isChecked()
    assert not child(bob, "cameraButton", QPushButton).isChecked()
    # Bob's large view shows Alice's test pattern (colour bars), at the size sent.
    qtbot.waitUntil(lambda: bob.remote_video.frames_painted > 5, timeout=20_000)
    qtbot.waitUntil(lambda: distinct_colours(bob.remote_video) >= 6, timeout=10_000)
    assert bob._remote_sink.size == (640, 480)
    assert not bob.remote_video.camera_off
    # Alice sees herself small; Bob's self-view is off.
    qtbot.waitUntil(lambda: alice.local_video.frames_painted > 0, timeout=10_000)
    assert alice.local_video.width() < alice.remote_video.width() / 2
    assert bob.local_video.frames_painted == 0
    # Bob's camera is off: Alice sees the "camera off" badge, not a black picture.
    qtbot.waitUntil(lambda: alice.remote_video.camera_off, timeout=20_000)
    # Bob switches his camera on mid-call: Alice's view gets his pattern.
    click(qtbot, child(bob, "cameraButton", QPushButton))
    qtbot.waitUntil(lambda: not alice.remote_video.camera_off, timeout=20_000)
    qtbot.waitUntil(lambda: distinct_colours(alice.remote_video) >= 6, timeout=10_000)
    # Alice switches hers off: Bob's view says so.
    click(qtbot, child(alice, "cameraButton", QPushButton))
    qtbot.waitUntil(lambda: bob.remote_video.camera_off, timeout=20_000)
    assert bob.remote_video.off_text == "alice: camera off"
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=10_000)
    # Nothing carries over: views back to their placeholders, the camera button off.
    for window in (alice, bob):
        assert not window.camera_button.isChecked()
        assert not window.camera_button.isEnabled()
    assert alice.errors == []
    assert bob.errors == []


def test_settings_show_a_live_camera_preview(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    from PySide6.QtWidgets import QComboBox, QTabWidget

    from app.ui.widgets import VideoView

    window = make_window("Main")
    d = window.open_settings()
    tabs = child(d, "settingsTabs", QTabWidget)
    tabs.setCurrentWidget(d.media)  # the "Audio & video" tab
    camera = child(d, "cameraChoice", QComboBox)
    assert camera.currentText() == "First found, else the test pattern"
    preview = child(d, "cameraPreview", VideoView)
    qtbot.waitUntil(lambda: preview.frames_painted > 2, timeout=10_000)
    assert distinct_colours(preview) >= 6  # no camera here: the pattern calls would send
    tabs.setCurrentWidget(d.ice)  # leaving the page stops the camera
    assert d.media._preview is None
    d.close()


def test_debug_panel_streams_show_codec_frames_and_resolution(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice", video=True, **{"video.enabled": True})
    bob = make_window("bob", video=True)
    panel = bob.open_debug_panel()
    ring(qtbot, alice, bob)
    click(qtbot, child(bob, "acceptButton", QPushButton))

    def row(name: str) -> list[str]:
        for r in range(panel.streams.rowCount()):
            if panel.streams.item(r, 0).text() == name:
                return [panel.streams.item(r, c).text() for c in range(panel.streams.columnCount())]
        return []

    qtbot.waitUntil(lambda: row("video ↓ received")[3:4] == ["640×480"], timeout=20_000)
    video = row("video ↓ received")
    assert video[1].upper().startswith(("VP8", "H264"))
    assert int(video[2]) > 0
    assert row("audio ↓ received")[1].lower().startswith("opus")
    click(qtbot, child(alice, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=10_000)
