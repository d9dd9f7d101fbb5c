"""Settings used the way a person uses them: clicks and typing on the visible controls of the
real main window and its settings dialog (issue 12, findings 1, 5 and 11)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from PySide6.QtWidgets import QComboBox, QLineEdit, QPushButton

from tests.ui.conftest import child, click, restarted, type_into


def test_adding_an_ice_server_by_typing(qtbot: Any, make_window: Any) -> None:
    window = make_window("Main")
    window.settings_action.trigger()  # PeerCall → Settings…
    d = window.settings_dialog
    click(qtbot, child(d, "iceAdd", QPushButton))
    uri = child(d, "iceUri", QLineEdit)
    assert uri.isEnabled()  # the new row is editable at once
    type_into(qtbot, uri, "turn:192.0.2.9:3478?transport=udp")
    assert not child(d, "settingsSave", QPushButton).isEnabled()  # TURN needs credentials
    assert "TURN needs a username and a credential" in d.ice.error.text()
    type_into(qtbot, child(d, "iceUsername", QLineEdit), "eve")
    type_into(qtbot, child(d, "iceCredential", QLineEdit), "pw")
    assert d.ice.table.item(0, 0).text() == "turn:192.0.2.9:3478?transport=udp"
    click(qtbot, child(d, "iceAdd", QPushButton))
    type_into(qtbot, child(d, "iceUri", QLineEdit), "stun:192.0.2.10")
    click(qtbot, child(d, "settingsSave", QPushButton))
    assert not d.isVisible()
    expected = [
        {"urls": ["turn:192.0.2.9:3478?transport=udp"], "username": "eve", "credential": "pw"},
        {"urls": ["stun:192.0.2.10"]},
    ]
    assert window.settings["ice_servers"] == expected
    saved = json.loads(window.settings.path.read_text())["values"]
    assert saved["ice_servers"] == expected
    assert window.errors == []


def test_saving_settings_keeps_what_was_typed_in_the_window(qtbot: Any, make_window: Any) -> None:
    window = make_window("Main", **{"signaling.secret": "saved-secret"})
    type_into(qtbot, child(window, "serverUrl", QLineEdit), "ws://192.0.2.20:8765")
    type_into(qtbot, child(window, "room", QLineEdit), "typed-room")
    type_into(qtbot, child(window, "secret", QLineEdit), "typed-secret")
    window.settings_action.trigger()
    d = window.settings_dialog
    type_into(qtbot, child(d, "displayName", QLineEdit), "Alice")
    click(qtbot, child(d, "settingsSave", QPushButton))
    assert window.settings["display_name"] == "Alice"
    assert window.server_url.text() == "ws://192.0.2.20:8765"
    assert window.room.text() == "typed-room"
    assert window.secret.text() == "typed-secret"


def test_the_room_is_remembered_across_restarts(
    qtbot: Any, make_window: Any, qloop: Any, tmp_path: Any
) -> None:

    window = make_window("Main")
    for room in ("first-room", "second-room"):
        type_into(qtbot, child(window, "serverUrl", QLineEdit), "ws://127.0.0.1:9")
        type_into(qtbot, child(window, "room", QLineEdit), room)
        type_into(qtbot, child(window, "secret", QLineEdit), "s3cret")
        click(qtbot, child(window, "waitButton", QPushButton))
        # Nobody listens on port 9: the wait fails, which is fine here.
        qtbot.waitUntil(lambda: not window.adapter.in_call, timeout=10_000)
    # A second start reads the same settings file.
    again = restarted(qtbot, window, tmp_path / "h.json")
    assert again.room.text() == "second-room"
    assert again.secret.text() == "s3cret"
    recent = child(again, "recentRooms", QComboBox)
    assert [recent.itemText(i) for i in range(recent.count())] == [
        "—",
        "second-room — ws://127.0.0.1:9",
        "first-room — ws://127.0.0.1:9",
    ]
    recent.setCurrentIndex(2)
    recent.activated.emit(2)  # what choosing an entry in the drop-down emits
    assert again.room.text() == "first-room"
    for box in list(window.error_boxes):
        box.close()


def test_cancel_stops_a_relay_and_signaling_server_switched_on_in_the_dialog(
    qtbot: Any, make_window: Any
) -> None:
    """The switches act at once (their labels say so); Cancel puts them back (brief item 3)."""
    from PySide6.QtWidgets import QCheckBox, QSpinBox

    window = make_window("host")
    d = window.open_settings()
    d.tabs.setCurrentWidget(d.relay)
    relay_switch = child(d, "relaySwitch", QCheckBox)
    assert "Cancel stops it again" in relay_switch.text()
    type_into(qtbot, child(d, "relayListen", QLineEdit), "127.0.0.1")
    type_into(qtbot, child(d, "relayPort", QSpinBox), "0")  # any free port
    with qtbot.waitSignal(window.relay_host.runningChanged, timeout=10_000):
        click(qtbot, relay_switch)
    assert window.relay_host.running
    d.tabs.setCurrentWidget(d.signaling)
    type_into(qtbot, child(d, "signalingListen", QLineEdit), "127.0.0.1")
    type_into(qtbot, child(d, "signalingPort", QSpinBox), "0")
    with qtbot.waitSignal(window.signaling_host.runningChanged, timeout=10_000):
        click(qtbot, child(d, "signalingSwitch", QCheckBox))
    assert window.signaling_host.server is not None
    assert window.hosting.isVisible()
    click(qtbot, child(d, "settingsCancel", QPushButton))
    qtbot.waitUntil(lambda: not window.relay_host.running, timeout=10_000)
    qtbot.waitUntil(lambda: window.signaling_host.server is None, timeout=10_000)
    assert not window.hosting.isVisible()
    assert not d.isVisible()


def host_relay_and_save(qtbot: Any, window: Any) -> None:
    """Settings → Host a relay on 127.0.0.1, any free port, switched on, then Save."""
    from PySide6.QtWidgets import QCheckBox, QSpinBox

    d = window.open_settings()
    d.tabs.setCurrentWidget(d.relay)
    type_into(qtbot, child(d, "relayListen", QLineEdit), "127.0.0.1")
    type_into(qtbot, child(d, "relayPort", QSpinBox), "0")
    with qtbot.waitSignal(window.relay_host.runningChanged, timeout=10_000):
        click(qtbot, child(d, "relaySwitch", QCheckBox))
    click(qtbot, child(d, "settingsSave", QPushButton))


def test_cancel_restarts_a_relay_switched_off_in_the_dialog_and_save_keeps_it(
    qtbot: Any, make_window: Any
) -> None:
    from PySide6.QtWidgets import QCheckBox

    window = make_window("host")
    host_relay_and_save(qtbot, window)
    assert window.relay_host.running
    users = window.relay_host.started_with.users
    # Next visit: switched off, then Cancel: it runs again, with the same users.
    d = window.open_settings()
    d.tabs.setCurrentWidget(d.relay)
    with qtbot.waitSignal(window.relay_host.runningChanged, timeout=10_000):
        click(qtbot, child(d, "relaySwitch", QCheckBox))
    assert not window.relay_host.running
    click(qtbot, child(d, "settingsCancel", QPushButton))
    qtbot.waitUntil(lambda: window.relay_host.running, timeout=10_000)
    assert window.relay_host.started_with.users == users
    assert window.errors == []


def test_quitting_with_the_dialog_open_leaves_the_relay_stopped(
    qtbot: Any, make_window: Any, arun: Any
) -> None:
    """Shutdown stops the relay, then closes the dialog: that close is not a Cancel to undo."""
    window = make_window("host")
    host_relay_and_save(qtbot, window)
    window.open_settings()  # still open when the user picks PeerCall → Quit
    with qtbot.waitSignal(window.closed, timeout=20_000):
        window.quit_action.trigger()
    arun(asyncio.sleep(0.5))  # what a restore would have scheduled has run by now
    assert not window.relay_host.running
    assert window.errors == []


def test_an_error_appearing_does_not_move_the_controls(qtbot: Any, make_window: Any) -> None:
    """The error line under the URI keeps its height when a one-line error appears (12.10)."""
    window = make_window("Main")
    window.settings_action.trigger()
    d = window.settings_dialog
    click(qtbot, child(d, "iceAdd", QPushButton))
    uri = child(d, "iceUri", QLineEdit)
    type_into(qtbot, uri, "stun:192.0.2.1")
    qtbot.wait(50)  # let the layout run

    def places() -> list[tuple[int, int]]:
        names = ("iceTable", "iceUri", "iceUsername", "iceCredential")
        widgets: list[Any] = [child(d, n) for n in names]
        return [(w.y(), w.height()) for w in widgets] + [(d.width(), d.height())]

    before = places()
    type_into(qtbot, uri, "turn:192.0.2.1")  # TURN without credentials: an error
    assert "TURN needs a username and a credential" in d.ice.error.text()
    qtbot.wait(50)
    assert places() == before
    type_into(qtbot, uri, "stun:192.0.2.1")
    qtbot.wait(50)
    assert d.ice.error.text() == ""
    assert places() == before
    d.close()
