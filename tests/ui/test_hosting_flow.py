"""Hosting a relay for someone else, as a person does it: tick "Others can use it", start,
copy the address the panel offers, paste it in the second window, call relay-only (issue 12,
findings 2 and 3). The second window reaches the relay at a non-loopback address inside a
network namespace this test creates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QLineEdit, QPushButton

from app.events import CallState
from signaling.memory import memory_pair
from tests.ui import netns
from tests.ui.conftest import child, click, type_into

pytestmark = pytest.mark.skipif(not netns.available(), reason="needs root and iproute2")


@pytest.fixture
def lab() -> Any:
    with netns.inside_namespace() as addresses:
        yield addresses


def test_a_hosted_relay_carries_a_call_at_the_address_the_panel_offers(
    lab: tuple[str, str], qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    first, second = lab
    # Both relay-only: without the relay candidate there is no call. The relay runs in this
    # process, on the same loop as both windows, so on a loaded machine its Allocate answer
    # can miss the default 2 s gathering limit; allow what a slow server would get.
    host = make_window("host", gather_timeout=10.0)
    guest = make_window("guest", gather_timeout=10.0)
    # The host: Settings → Host a relay → Others can use it → on.
    d = host.open_settings()
    d.tabs.setCurrentWidget(d.relay)
    click(qtbot, child(d, "relayForOthers", QCheckBox))
    assert child(d, "relayListen", QLineEdit).text() == "0.0.0.0"
    with qtbot.waitSignal(host.relay_host.runningChanged, timeout=10_000):
        click(qtbot, child(d, "relaySwitch", QCheckBox))
    # Every LAN address is offered, never 0.0.0.0 or 127.0.0.1 (12.2); the default port.
    offered = [row[1] for row in d.relay.share_list.rows]
    assert [row[0] for row in d.relay.share_list.rows] == ["LAN (lan0)", "LAN (lan1)"]
    assert offered[0].endswith(f"@turn:{first}:3478?transport=udp")
    assert offered[1].endswith(f"@turn:{second}:3478?transport=udp")
    assert all("0.0.0.0" not in o and "127.0.0.1" not in o for o in offered)
    assert d.relay.qr_text == offered[0]
    assert child(d, "relayAddress0", QLineEdit).text() == offered[0]
    # "Use it for my calls" adds it at the LAN address, not 127.0.0.1 (12.3).
    click(qtbot, child(d, "relayUse", QPushButton))
    click(qtbot, child(d, "settingsSave", QPushButton))
    assert host.settings["ice_servers"][0]["urls"][0] == f"turn:{first}:3478?transport=udp"
    assert host.hosting.isVisible()
    assert host.hosting.text() == "Hosting relay: 0 allocations"
    # Copy → the guest pastes it into a new ICE server entry.
    host.open_settings()
    d.tabs.setCurrentWidget(d.relay)
    click(qtbot, child(d, "relayCopy0", QPushButton))
    click(qtbot, child(d, "settingsCancel", QPushButton))
    g = guest.open_settings()
    click(qtbot, child(g, "iceAdd", QPushButton))
    uri = child(g, "iceUri", QLineEdit)
    uri.setFocus()
    qtbot.keyClick(uri, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert uri.text() == f"turn:{first}:3478?transport=udp"
    assert child(g, "iceUsername", QLineEdit).text() == "peercall"
    click(qtbot, child(g, "settingsSave", QPushButton))
    assert guest.errors == []
    # Both tick "Always relay" and call.
    for window in (host, guest):
        click(qtbot, child(window, "alwaysRelay", QCheckBox))
        assert window.settings["relay_only"] is True
    a, b = memory_pair()
    with qtbot.waitSignal(host.adapter.incomingCall, timeout=15_000):
        host.wait_for_call(b, "guest")
        guest.start_call(a, "host")
    click(qtbot, child(host, "acceptButton", QPushButton))
    for window in (host, guest):
        qtbot.waitUntil(lambda w=window: w.badge.badge.key == "relay", timeout=30_000)
        selected = window.adapter.session.selected
        assert selected.pair.local.type == "relay"
        assert selected.pair.local.address == first  # where the peer sends: reachable
    assert host.relay_host.status().allocations >= 2
    qtbot.waitUntil(
        lambda: f"{host.relay_host.status().allocations} allocations" in host.hosting.text(),
        timeout=10_000,  # the indicator refreshes on a 1 s timer of the (loaded) Qt loop
    )
    click(qtbot, child(guest, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not host.adapter.in_call, timeout=10_000)
    assert host.adapter.session.state is CallState.ENDED
    assert host.errors == []
    assert guest.errors == []


def test_hosted_signaling_offers_each_lan_address_with_copy_and_a_window_joins_it(
    lab: tuple[str, str], qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    """Settings → Signaling → Others can use it → on: never ws://0.0.0.0, a Copy button per
    address, and what Copy puts on the clipboard is a server another window can join (12.2)."""
    from PySide6.QtGui import QGuiApplication

    first, second = lab
    host = make_window("host")
    guest = make_window("guest")
    d = host.open_settings()
    d.tabs.setCurrentWidget(d.signaling)
    click(qtbot, child(d, "signalingForOthers", QCheckBox))
    assert child(d, "signalingListen", QLineEdit).text() == "0.0.0.0"
    with qtbot.waitSignal(host.signaling_host.runningChanged, timeout=10_000):
        click(qtbot, child(d, "signalingSwitch", QCheckBox))
    rows = d.signaling.share_list.rows
    port = host.signaling_host.url.rsplit(":", 1)[1].rstrip("/")
    assert [(kind, shown) for kind, shown, _, _ in rows] == [
        ("LAN (lan0)", f"ws://{first}:{port}"),
        ("LAN (lan1)", f"ws://{second}:{port}"),
    ]
    click(qtbot, child(d, "signalingCopy1", QPushButton))
    assert QGuiApplication.clipboard().text() == f"ws://{second}:{port}"
    click(qtbot, child(d, "settingsSave", QPushButton))
    # The guest pastes the address into the main window and waits in a room there.
    server = child(guest, "serverUrl", QLineEdit)
    server.setFocus()
    qtbot.keyClick(server, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(server, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert server.text() == f"ws://{second}:{port}"
    type_into(qtbot, child(guest, "room", QLineEdit), "lan-room")
    type_into(qtbot, child(guest, "secret", QLineEdit), "lan-secret")
    click(qtbot, child(guest, "waitButton", QPushButton))
    # The host's indicator counts the room the guest joined through the offered address.
    qtbot.waitUntil(
        lambda: "signaling: 1 room in use, 1 client" in host.hosting.text(), timeout=15_000
    )
    click(qtbot, child(guest, "hangupButton", QPushButton))
    qtbot.waitUntil(lambda: not guest.adapter.in_call, timeout=10_000)
    assert guest.errors == []
    assert host.errors == []
