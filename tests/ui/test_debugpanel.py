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
    alice.hangup_button.click()
    qtbot.waitUntil(lambda: not bob.adapter.in_call, timeout=10_000)
