"""The "Host a call…" dialog: host on loopback, the friend's window opens the link, they talk.

Port mapping is unticked here (the window runs on the machine's own network, where the test
must not talk to a real router); tests/portmap/ covers mapping against miniupnpd.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from PySide6.QtCore import Qt

from app.host import HostOptions
from app.ui.hostcall import open_link
from tests.nat.conftest import free_udp_tcp_port


def free_port() -> int:
    return free_udp_tcp_port()  # TURN listens on UDP and TCP with one number


def open_dialog(window: Any) -> Any:
    window.host_call_action.trigger()  # the menu entry PeerCall → Host a call…
    dialog = window.host_call_dialog
    assert dialog.isVisible()
    dialog.options = HostOptions(
        listen="127.0.0.1",
        signaling_port=0,
        turn_port=free_port(),
        min_port=50000,
        max_port=50003,
    )
    return dialog


def test_host_a_call_then_the_friend_opens_the_link_and_they_talk(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any
) -> None:
    host, friend = make_window("host"), make_window("friend")
    dialog = open_dialog(host)
    qtbot.mouseClick(dialog.map_ports, Qt.MouseButton.LeftButton)
    assert not dialog.map_ports.isChecked()
    with qtbot.waitSignal(dialog.linkReady, timeout=20_000) as ready:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    link = ready.args[0]
    assert link.startswith("peercall://127.0.0.1:")
    assert dialog.link.text() == link
    assert dialog.browser_link.text().startswith("http://127.0.0.1:")
    assert dialog.status.text() == "port mapping: off"
    assert "Your friend will see your public IP address" in dialog.warning.text()
    assert not dialog.qr.pixmap().isNull()
    qtbot.mouseClick(dialog.copy_button, Qt.MouseButton.LeftButton)
    # The host waits in the hosted room; the friend's window gets the link (URL handler).
    qtbot.mouseClick(dialog.wait_button, Qt.MouseButton.LeftButton)
    assert open_link(friend, link)
    assert friend.room.text() == host.room.text()
    assert friend.secret.text() == host.secret.text()
    with qtbot.waitSignal(host.adapter.incomingCall, timeout=15_000):
        qtbot.mouseClick(friend.call_button, Qt.MouseButton.LeftButton)
    host.accept_button.click()
    qtbot.waitUntil(lambda: friend.badge.badge.key in ("direct", "relay"), timeout=20_000)
    friend.hangup_button.click()
    qtbot.waitUntil(lambda: host.news.text().startswith("Call ended"), timeout=10_000)
    # Both windows let go of the relay before it stops: the engine's TURN client otherwise
    # spends its retransmission timeout deleting allocations at a dead server.
    arun(host.adapter.shutdown())
    arun(friend.adapter.shutdown())
    with qtbot.waitSignal(dialog.hostingChanged, timeout=20_000):
        qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    assert dialog.status.text() == "Not hosting: the router's forwardings were removed."
    assert dialog.link.text() == ""
    assert host.errors == []
    assert friend.errors == []


def test_a_bad_link_is_one_line_in_the_window(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    window = make_window("friend")
    assert not open_link(window, "peercall://host:8765/room")
    assert window.errors == [
        "Cannot open the link: the link has no secret (cut off when it was copied?)"
    ]


def test_a_port_in_use_is_one_line_in_the_dialog(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    window = make_window("host")
    dialog = open_dialog(window)
    dialog.map_ports.setChecked(False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        dialog.options = HostOptions(
            listen="127.0.0.1", signaling_port=busy.getsockname()[1], turn_port=free_port()
        )
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.status.text().startswith("Cannot host:"), timeout=10_000)
    assert "\n" not in dialog.status.text()
    assert dialog.start_button.isEnabled()
    assert not dialog.hosting
