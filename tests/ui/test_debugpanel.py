"""The debug panel fills from a real loopback call and exports it as JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.ui.test_call import connect_pair


def test_debug_panel_fills_from_real_call_and_exports(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, tmp_path: Path
) -> None:
    alice, bob = make_window("alice"), make_window("bob")
    panel = alice.open_debug_panel()  # opened before the call: filled live
    connect_pair(qtbot, qloop, alice, bob)
    types = {panel.candidates.item(r, 3).text() for r in range(panel.candidates.rowCount())}
    sides = {panel.candidates.item(r, 0).text() for r in range(panel.candidates.rowCount())}
    assert "host" in types
    assert sides == {"local", "remote"}
    qtbot.waitUntil(lambda: panel.pairs.rowCount() > 0, timeout=5000)
    assert "Selected pair (direct)" in panel.selected_label.text()
    layers = {panel.timeline.item(r, 1).text() for r in range(panel.timeline.rowCount())}
    assert {"call", "ice-connection"} <= layers
    qtbot.waitUntil(lambda: len(panel.stats) >= 1, timeout=5000)  # once-a-second StatsSample
    path = tmp_path / "session.json"
    panel.export_to(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["session"]["format"] == "peercall-session/1"
    assert len(data["ui"]["candidates"]["rows"]) == panel.candidates.rowCount()
    # A second panel opened late replays the session's history.
    late = bob.open_debug_panel()
    assert late.candidates.rowCount() > 0
    qtbot.waitUntil(lambda: late.pairs.rowCount() > 0)  # drawn once after the replay
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)


def test_export_has_no_turn_credentials_and_chat_only_if_asked(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QCheckBox

    from tests.ui.conftest import child, click

    servers = [{"urls": ["turn:192.0.2.1:3478"], "username": "u", "credential": "s3cr3t-pw"}]
    alice = make_window("alice", ice_servers=servers, gather_timeout=0.2)
    bob = make_window("bob")
    panel = alice.open_debug_panel()
    assert panel.x() >= 0  # on screen
    assert panel.y() >= 0
    connect_pair(qtbot, qloop, alice, bob)
    bob.chat.input.setText("private words")
    bob.chat.send_button.click()
    qtbot.waitUntil(lambda: "private words" in alice.chat.messages(), timeout=5_000)
    qtbot.waitUntil(lambda: panel.pairs.rowCount() > 0, timeout=5_000)
    text = json.dumps(panel.export_data())
    assert "s3cr3t-pw" not in text
    assert "private words" not in text
    click(qtbot, child(panel, "exportChat", QCheckBox))
    text = json.dumps(panel.export_data())
    assert "private words" in text
    assert "s3cr3t-pw" not in text
    # One "ice-gathering complete", raw candidate lines, a legend.
    rows = [
        (panel.timeline.item(r, 1).text(), panel.timeline.item(r, 2).text())
        for r in range(panel.timeline.rowCount())
    ]
    assert rows.count(("ice-gathering", "complete")) == 1
    assert all(line.startswith("candidate:") for line in panel.candidate_lines)
    assert " typ host" in panel.candidates.item(0, 0).toolTip()
    assert "relay (via TURN)" in panel.legend.text()
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)


def test_gather_candidates_without_a_call(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any
) -> None:
    from PySide6.QtWidgets import QPushButton

    from nat.auth import long_term_key
    from nat.config import RelayConfig
    from nat.service import RelayServer
    from tests.ui.conftest import child, click

    relay = RelayServer(
        RelayConfig(
            listening_ips=("127.0.0.1",),
            listening_port=0,
            realm="peercall",
            users=(("u", long_term_key("u", "peercall", "pw")),),
            allow_loopback_peers=True,
        )
    )
    arun(relay.start())
    try:
        turn = next(u for u in relay.turn_uris() if u.endswith("udp"))
        stun = turn.replace("turn:", "stun:").split("?")[0]
        servers = [{"urls": [stun]}, {"urls": [turn], "username": "u", "credential": "pw"}]
        window = make_window("alice", ice_servers=servers)
        panel = window.open_debug_panel()
        click(qtbot, child(panel, "gatherCandidates", QPushButton))
        qtbot.waitUntil(lambda: "gathered without a call" in panel.summary.text(), timeout=15_000)
        types = {panel.candidates.item(r, 3).text() for r in range(panel.candidates.rowCount())}
        assert {"srflx", "relay"} <= types
        assert window.adapter.session is None  # no call was placed
    finally:
        arun(relay.stop())


def test_ice_servers_tab_says_where_each_server_came_from(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, arun: Any
) -> None:
    """Issue 11: the servers the signaling server hands out on join are used together with the
    user's own, and the debug panel shows each with its origin (never its credentials)."""
    from PySide6.QtWidgets import QPushButton

    from signaling.server import SignalingServer
    from tests.ui.conftest import child, click

    # Nothing listens on port 9 (discard): gathering gives up on both after its time limit and
    # the call connects on host candidates; what matters here is the list the call was built with.
    server = SignalingServer(
        "127.0.0.1",
        0,
        ping_interval=None,
        turn_secret="rest-shared-secret",
        turn_uris=["turn:127.0.0.1:9?transport=udp"],
    )
    arun(server.start())
    try:
        room = {"signaling.url": server.url, "signaling.secret": "pw", "signaling.room": "ice"}
        mine = [{"urls": ["stun:127.0.0.1:9"]}]
        alice = make_window("a", ice_servers=mine, gather_timeout=0.2, **room)
        bob = make_window("b", gather_timeout=0.2, **room)
        panel = alice.open_debug_panel()
        click(qtbot, child(bob, "waitButton", QPushButton))
        qtbot.waitUntil(lambda: bob.adapter.waiting, timeout=10_000)
        click(qtbot, child(alice, "callButton", QPushButton))
        qtbot.waitUntil(lambda: bob.incoming.isVisible(), timeout=15_000)
        click(qtbot, child(bob, "acceptButton", QPushButton))
        qtbot.waitUntil(lambda: panel.servers_table.rowCount() == 2, timeout=15_000)
        rows = {
            (panel.servers_table.item(r, 0).text(), panel.servers_table.item(r, 1).text())
            for r in range(panel.servers_table.rowCount())
        }
        assert rows == {
            ("stun:127.0.0.1:9", "user"),
            ("turn:127.0.0.1:9?transport=udp", "signaling server"),
        }
        issued = [s for s in alice.adapter.session.ice_servers if s.origin == "signaling server"]
        assert issued
        assert issued[0].credential
        assert issued[0].credential not in json.dumps(panel.export_data())
        click(qtbot, child(alice, "hangupButton", QPushButton))
        qtbot.waitUntil(lambda: not alice.adapter.in_call, timeout=15_000)
        qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=15_000)
    finally:
        arun(server.stop())


def _open_debug_panel_from_menu(qtbot: Any, window: Any) -> Any:
    """PeerCall menu → Debug panel, with two mouse clicks as a person does."""
    from PySide6.QtCore import Qt

    bar = window.menuBar()
    menu = next(a.menu() for a in bar.actions() if a.text() == "&PeerCall")
    qtbot.mouseClick(
        bar, Qt.MouseButton.LeftButton, pos=bar.actionGeometry(menu.menuAction()).center()
    )
    qtbot.waitUntil(menu.isVisible, timeout=5_000)
    action = next(a for a in menu.actions() if a.text() == "&Debug panel")
    qtbot.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())
    qtbot.waitUntil(lambda: window.debug_panel is not None and window.debug_panel.isVisible())
    return window.debug_panel


def _table(table: Any) -> list[dict[str, str]]:
    columns = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    return [
        {columns[c]: table.item(r, c).text() for c in range(table.columnCount())}
        for r in range(table.rowCount())
    ]


def test_debug_panel_pairs_and_streams_show_counters_of_a_real_call(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any
) -> None:
    from app.media.synthetic import NullSink, ToneTrack
    from app.ui.callsetup import CallMedia

    def tone() -> CallMedia:  # bob's microphone hears a 440 Hz tone at 0.3 of full scale
        return CallMedia(audio_source=ToneTrack(440.0, 0.3), audio_sink=NullSink())

    alice, bob = make_window("alice"), make_window("bob", media=tone)
    connect_pair(qtbot, qloop, alice, bob)
    panel = _open_debug_panel_from_menu(qtbot, alice)

    def selected() -> dict[str, str]:
        rows = [row for row in _table(panel.pairs) if row["Selected"] == "yes"]
        return rows[0] if rows else {}

    # Media flows both ways over the selected pair, whose check was sent and answered.
    qtbot.waitUntil(
        lambda: selected().get("Bytes received", "0") not in ("0", "n/a"), timeout=10_000
    )
    pair = selected()
    assert int(pair["Requests sent"]) >= 1
    assert int(pair["Responses received"]) >= 1
    assert int(pair["Requests received"]) >= 1  # bob checks the same pair (RFC 8445 §7.2)
    assert int(pair["Responses sent"]) >= 1
    assert int(pair["Bytes sent"]) > 0
    assert int(pair["Responses received"]) <= int(pair["Requests sent"])
    if pair["RTT (ms)"] != "—":  # only when a check was answered at its first try (Karn)
        assert float(pair["RTT (ms)"]) >= 0.0
        assert float(pair["Total RTT (ms)"]) >= float(pair["RTT (ms)"])

    def stream(name: str) -> dict[str, str]:
        return next((row for row in _table(panel.streams) if row["Stream"] == name), {})

    # Opus packets every 20 ms: both directions count within a few stats samples.
    qtbot.waitUntil(
        lambda: (
            stream("audio ↓ received").get("Packets", "n/a") not in ("n/a", "0")
            and stream("audio ↑ sent").get("Packets", "n/a") not in ("n/a", "0")
        ),
        timeout=10_000,
    )
    sent, received = stream("audio ↑ sent"), stream("audio ↓ received")
    assert int(sent["Bytes"]) > 0
    assert received["Bytes"] == "n/a"  # aiortc does not count them: said, not invented

    # Counters reach the panel live; the session's event log (kept for the whole call) gets
    # a PairsUpdated only when a pair's state moves, not every second for the byte counts.
    from itertools import pairwise

    from app.call.stats import without_counters
    from app.events import PairsUpdated

    updates = [e.pairs for e in alice.adapter.session.events if isinstance(e, PairsUpdated)]
    assert updates
    assert all(without_counters(a) != without_counters(b) for a, b in pairwise(updates))

    # The level of what alice hears: bob's 0.3 tone after Opus. aiortc upmixes mono to
    # stereo before encoding, and libswresample does that at -3 dB: 0.3/√2 ≈ 0.21 arrives.
    def level() -> float:
        words = stream("audio ↓ received")["Level / rate"].split()  # "level 0.21; all media …"
        return float(words[1].rstrip(";")) if words[1:] and words[1] != "—;" else -1.0

    qtbot.waitUntil(lambda: 0.18 <= level() <= 0.33, timeout=10_000)
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
