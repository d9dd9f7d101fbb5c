"""Settings used the way a person uses them: clicks and typing on the visible controls of the
real main window and its settings dialog (issue 12, findings 1, 5 and 11)."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtWidgets import QLineEdit, QPushButton

from tests.ui.conftest import child, click, type_into


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
