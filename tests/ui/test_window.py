"""Window-level flows: a relay-only call, the copy-paste panel, the ring, and error dialogs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from app.events import CallState
from app.ui.mainwindow import BACKEND_PAGES, MainWindow
from nat.auth import long_term_key
from nat.config import RelayConfig
from nat.service import RelayServer
from signaling.server import SignalingServer
from tests.conftest import free_port
from tests.ui.conftest import ring

USER, PASSWORD, REALM = "alice", "relay-pw", "peercall"


@pytest.fixture
def relay(qtbot: Any, arun: Any) -> Iterator[RelayServer]:
    """The embedded STUN/TURN relay on 127.0.0.1 (ephemeral port) with one long-term user."""
    server = RelayServer(
        RelayConfig(
            listening_ips=("127.0.0.1",),
            listening_port=0,
            realm=REALM,
            users=((USER, long_term_key(USER, REALM, PASSWORD)),),
            allow_loopback_peers=True,
            user_quota=0,
        )
    )
    arun(server.start())
    yield server
    arun(server.stop())


def error_texts(window: MainWindow) -> list[str]:
    return [box.text() for box in window.error_boxes]


def assert_one_line_errors(window: MainWindow) -> None:
    for text in error_texts(window):
        assert "\n" not in text
        assert "Traceback" not in text


def test_relay_only_call_between_two_windows(
    relay: RelayServer, qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    """(The relay comes first so it outlives the windows: their hang-up frees allocations.)"""
    udp = next(uri for uri in relay.turn_uris() if uri.endswith("transport=udp"))
    servers = [{"urls": [udp], "username": USER, "credential": PASSWORD}]
    alice = make_window("alice", ice_servers=servers)
    bob = make_window("bob", ice_servers=servers)
    for window in (alice, bob):
        window.always_relay.setChecked(True)  # the user ticks "Always relay"
        assert window.settings["relay_only"] is True
    ring(qtbot, alice, bob)
    bob.accept_button.click()
    qtbot.waitUntil(lambda: alice.badge.badge.key == "relay", timeout=20_000)
    qtbot.waitUntil(lambda: bob.badge.badge.key == "relay", timeout=20_000)
    assert alice.badge.text().startswith("Connected via relay")
    for window in (alice, bob):
        session = window.adapter.session
        assert session.state is CallState.CONNECTED
        selected = session.selected
        assert selected is not None
        assert selected.relayed
        assert selected.pair.local.type == "relay"
        # Relay-only: we never offered a host or server-reflexive candidate.
        local_types = {c.type for c in session.local_candidates}
        assert local_types == {"relay"}
    assert relay.stats().allocations >= 2
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: len(alice.history.records) == 1, timeout=10_000)
    assert alice.history.records[0].route == "relay"
    assert alice.errors == []
    assert bob.errors == []


def test_copy_paste_call_through_the_manual_panel(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice = make_window("alice", **{"signaling.backend": "manual"})
    bob = make_window("bob", **{"signaling.backend": "manual"})
    assert alice.pages.currentIndex() == BACKEND_PAGES.index("manual")
    alice.manual.offer_button.click()
    bob.manual.answer_button.click()
    qtbot.waitUntil(lambda: alice.manual.mine.toPlainText() != "", timeout=15_000)
    # Alice copies her offer; Bob pastes it (through the real clipboard) and uses it.
    alice.manual.copy_button.click()
    bob.manual.paste_button.click()
    assert bob.manual.theirs.toPlainText() == alice.manual.mine.toPlainText()
    qtbot.waitUntil(bob.manual.use_button.isEnabled, timeout=5_000)
    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        bob.manual.use_button.click()
    bob.accept_button.click()
    # Bob's answer comes back the same way.
    qtbot.waitUntil(lambda: bob.manual.mine.toPlainText() != "", timeout=15_000)
    bob.manual.copy_button.click()
    alice.manual.paste_button.click()
    qtbot.waitUntil(alice.manual.use_button.isEnabled, timeout=5_000)
    alice.manual.use_button.click()
    qtbot.waitUntil(lambda: alice.badge.badge.key == "direct", timeout=20_000)
    qtbot.waitUntil(lambda: bob.badge.badge.key == "direct", timeout=20_000)
    assert alice.adapter.session.state is CallState.CONNECTED
    assert bob.adapter.session.state is CallState.CONNECTED
    qtbot.waitUntil(lambda: "Verify: <b" in alice.sas.text() and "Verify: <b" in bob.sas.text())
    assert alice.sas.text() == bob.sas.text()
    assert alice.errors == []
    assert bob.errors == []


def test_incoming_call_rings_until_accepted(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = make_window("alice"), make_window("bob")
    assert not bob.ringer.wanted()
    ring(qtbot, alice, bob)
    qtbot.waitUntil(bob.ringer.wanted, timeout=5_000)
    assert not alice.ringer.wanted()  # the caller does not ring
    assert bob.tray is None  # offscreen has no tray: the ring is the bar (and the tone)
    bob.accept_button.click()
    qtbot.waitUntil(lambda: not bob.ringer.wanted(), timeout=5_000)
    qtbot.waitUntil(lambda: bob.badge.badge.key == "direct", timeout=15_000)


def test_caller_giving_up_stops_the_ring(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    alice, bob = make_window("alice"), make_window("bob")
    ring(qtbot, alice, bob)
    qtbot.waitUntil(bob.ringer.wanted, timeout=5_000)
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: not bob.ringer.wanted(), timeout=15_000)
    qtbot.waitUntil(lambda: not bob.incoming.isVisible(), timeout=5_000)
    qtbot.waitUntil(lambda: len(bob.history.records) == 1, timeout=10_000)
    assert bob.history.records[0].outcome == "missed"


def test_unreachable_signaling_server_is_one_line_dialog(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    window = make_window("alice")
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    window.server_url.setText(f"ws://127.0.0.1:{port}")
    window.secret.setText("pw")
    window.call_button.click()
    qtbot.waitUntil(lambda: window.errors != [], timeout=15_000)
    assert window.errors == [
        f"Call: cannot reach signaling server ws://127.0.0.1:{port}: connection refused"
    ]
    # Inline, not a modal box (issue 12.6).
    assert window.error_boxes == []
    assert window.news.isVisible()
    assert window.news.text() == window.errors[-1]
    assert window.news.property("tone") == "error"
    assert_one_line_errors(window)
    qtbot.waitUntil(lambda: not window.adapter.in_call, timeout=5_000)
    assert window.call_button.isEnabled()  # the window is usable again
    assert window.history.records[-1].outcome == "failed"


def test_wrong_room_secret_is_one_line_dialog(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any
) -> None:
    server = SignalingServer("127.0.0.1", 0, ping_interval=None)
    arun(server.start())
    try:
        server.reserve_room("team", "right-secret")
        window = make_window("alice")
        window.server_url.setText(server.url)
        window.room.setText("team")
        window.secret.setText("wrong-secret")
        window.wait_button.click()
        qtbot.waitUntil(lambda: window.errors != [], timeout=15_000)
        assert window.errors == ["Waiting for a call: wrong room secret"]
        assert_one_line_errors(window)
    finally:
        arun(server.stop())


@pytest.mark.parametrize(
    ("url", "room", "expected"),
    [
        ("http://127.0.0.1:8765", "r", "signaling server URL must start with ws:// or wss://"),
        ("127.0.0.1:8765", "r", "signaling server URL must start with ws:// or wss://"),
        ("ws://127.0.0.1:8765", "", "type a room name both of you will join"),
        ("ws://127.0.0.1:8765", "r", "type a room secret both of you share"),
    ],
)
def test_bad_signaling_input_is_one_line_dialog_before_any_network(
    qtbot: Any,
    qloop: asyncio.AbstractEventLoop,
    make_window: Any,
    url: str,
    room: str,
    expected: str,
) -> None:
    window = make_window("alice")
    window.server_url.setText(url)
    window.room.setText(room)
    window.call_button.click()
    assert len(window.errors) == 1
    assert window.errors[0].startswith(f"Call: {expected}")
    assert not window.adapter.in_call  # nothing started
    assert_one_line_errors(window)


def test_relay_port_in_use_is_one_line_dialog(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any
) -> None:
    from app.ui.hosting import RelaySettings

    window = make_window("alice")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        started = arun(
            window.relay_host.start(
                RelaySettings(listen="127.0.0.1", port=port, users=(("u", "p"),))
            )
        )
    assert started is False
    assert not window.relay_host.running
    assert len(window.errors) == 1
    assert window.errors[0].startswith("Relay: ")
    assert "address already in use" in window.errors[0]
    assert_one_line_errors(window)


def test_start_up_hosts_what_the_settings_say(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    """`peercall gui` start-up runs the settings dialog's autostart hook (relay + signaling)."""
    from app.ui import main

    window = make_window(
        "alice",
        **{
            "relay.enabled": True,
            "relay.listen": "127.0.0.1",
            "relay.port": 0,
            "relay.users": [["guest", "pw"]],
            "signaling_server.enabled": True,
            "signaling_server.listen": "127.0.0.1",
            "signaling_server.port": 0,
        },
    )
    main._autostart_hosting(window, window.settings)
    qtbot.waitUntil(
        lambda: window.relay_host.running and window.signaling_host.url is not None, timeout=10_000
    )
    assert window.signaling_host.url.startswith("ws://127.0.0.1:")
    assert window.errors == []


def test_wss_room_with_a_self_signed_certificate_needs_its_ca_file(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any, tmp_path: Any
) -> None:
    from tests.certs import make_cert

    cert, key = make_cert(tmp_path)
    server = SignalingServer("127.0.0.1", 0, cert=cert, key=key, ping_interval=None)
    arun(server.start())
    try:
        # Without the CA file the system CAs refuse the certificate: one line, no traceback.
        stranger = make_window(
            "stranger", **{"signaling.url": server.url, "signaling.secret": "pw"}
        )
        stranger.wait_button.click()
        qtbot.waitUntil(lambda: stranger.errors != [], timeout=15_000)
        assert stranger.errors[0].startswith(
            f"Waiting for a call: TLS with signaling server {server.url} failed: "
        )
        assert_one_line_errors(stranger)
        # With it, two windows call each other through the wss:// room.
        trusting = {
            "signaling.url": server.url,
            "signaling.secret": "pw",
            "signaling.ca_file": str(cert),
        }
        bob = make_window("bob", **trusting)
        alice = make_window("alice", **trusting)
        bob.wait_button.click()
        qtbot.waitUntil(lambda: bob.adapter.waiting, timeout=10_000)
        alice.call_button.click()
        qtbot.waitUntil(lambda: bob.incoming.isVisible(), timeout=15_000)
        bob.accept_button.click()
        for window in (alice, bob):
            qtbot.waitUntil(
                lambda w=window: (
                    w.adapter.session is not None and w.adapter.session.state is CallState.CONNECTED
                ),
                timeout=20_000,
            )
            assert window.errors == []
        alice.hangup_button.click()
    finally:
        arun(server.stop())


@pytest.mark.audio
def test_shutdown_unloads_the_echo_canceller_it_loaded(
    make_window: Any, arun: Any, virtual_audio: Any
) -> None:
    """module-echo-cancel belongs to this run: leaving the app must not leave it loaded."""
    import os

    from app.audio_processing import (
        disable_system_echo_cancel,
        enable_system_echo_cancel,
        find_system_echo_cancel,
    )

    window = make_window("Main")
    # The silent null source as microphone (a monitor would be refused as its own echo).
    enable_system_echo_cancel(source_master="vmic", sink_master="vspeaker")
    try:
        assert find_system_echo_cancel() is not None
        arun(window.shutdown())
        assert find_system_echo_cancel() is None
        assert "PULSE_SOURCE" not in os.environ
        assert "PULSE_SINK" not in os.environ
    finally:
        disable_system_echo_cancel()
