"""The LAN page: two in-process windows find each other over real mDNS on loopback and call."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from app.events import CallState
from app.ui.mainwindow import BACKEND_PAGES

pytestmark = pytest.mark.slow  # mDNS probing and announcing take a second or two


def unique(prefix: str) -> str:
    """Other engineers' tests browse the same loopback: never reuse a name."""
    return f"{prefix}-{secrets.token_hex(3)}"


def browsing(window: Any) -> bool:
    return window.lan.browser is not None


def test_reachable_window_is_listed_called_and_both_connect(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    bob_name, alice_name = unique("Bob"), unique("Alice")
    bob = make_window("bob", display_name=bob_name, **{"signaling.backend": "lan"})
    alice = make_window("alice", display_name=alice_name)
    assert browsing(bob)  # the LAN page was the start page: browsing began
    assert not browsing(alice)  # nobody browses until the page is opened
    alice.backend.setCurrentIndex(BACKEND_PAGES.index("lan"))
    assert browsing(alice)
    assert alice.lan_call_button.toolTip() == ""  # no "not available" tooltip any more
    assert not alice.lan_call_button.isEnabled()  # nothing selected yet

    # Bob becomes reachable: he advertises and waits in his own room.
    bob.lan_wait_button.click()
    qtbot.waitUntil(lambda: bob.adapter.waiting, timeout=20_000)
    assert bob.lan.host is not None
    # Alice's list shows him live, with his address; Bob does not list himself.
    qtbot.waitUntil(lambda: alice.lan.select(bob_name), timeout=20_000)
    service = alice.lan.services()[alice.lan.peers.currentRow()]
    assert service.url == f"ws://127.0.0.1:{bob.lan.host.server.port}"
    label = alice.lan_peers.currentItem().text()
    assert label.startswith(f"{bob_name} — 127.0.0.1:")
    assert bob_name not in [s.name for s in bob.lan.services()]

    with qtbot.waitSignal(bob.adapter.incomingCall, timeout=15_000):
        alice.lan_call_button.click()
    assert bob.incoming.isVisible()
    bob.accept_button.click()
    qtbot.waitUntil(lambda: alice.badge.badge.key == "direct", timeout=15_000)
    qtbot.waitUntil(lambda: bob.badge.badge.key == "direct", timeout=15_000)
    assert alice.adapter.session.state is CallState.CONNECTED
    assert bob.adapter.session.state is CallState.CONNECTED
    assert not alice.lan_call_button.isEnabled()  # no second dial during a call
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: len(bob.history.records) == 1, timeout=10_000)
    qtbot.waitUntil(lambda: len(alice.history.records) == 1, timeout=10_000)
    assert alice.history.records[-1].peer == bob_name
    assert alice.history.records[-1].outcome == "completed"
    # Still reachable after the call: Bob waits again in his room.
    qtbot.waitUntil(lambda: bob.adapter.waiting, timeout=10_000)

    # Switching "reachable" off stops waiting and sends the DNS-SD goodbye: Alice's list empties.
    bob.lan_wait_button.click()
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
    qtbot.waitUntil(lambda: not alice.lan.select(bob_name), timeout=20_000)
    assert bob.lan.host is None
    assert alice.errors == []
    assert bob.errors == []


def test_reachable_toggled_on_off_on_while_starting_leaves_one_host(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, monkeypatch: Any
) -> None:
    """Two starts in flight: the one that loses stops its host instead of leaking it (its
    mDNS advertisement and signaling server would outlive the page)."""
    from signaling.lan import LanHost

    running: set[Any] = set()
    start, stop = LanHost.start, LanHost.stop

    async def counted_start(self: Any) -> None:
        await start(self)
        running.add(self)

    async def counted_stop(self: Any) -> None:
        running.discard(self)
        await stop(self)

    monkeypatch.setattr(LanHost, "start", counted_start)
    monkeypatch.setattr(LanHost, "stop", counted_stop)
    window = make_window("carol", display_name=unique("Carol"))
    button = window.lan_wait_button
    button.click()  # on
    button.click()  # off before the first host has started
    button.click()  # on again: a second start while the first is still in flight
    qtbot.waitUntil(lambda: window.lan.host is not None, timeout=20_000)
    qtbot.waitUntil(lambda: running == {window.lan.host}, timeout=20_000)
    assert button.isChecked()
    qtbot.wait(200)  # the slower start has finished too: still one
    assert running == {window.lan.host}
    assert window.errors == []
