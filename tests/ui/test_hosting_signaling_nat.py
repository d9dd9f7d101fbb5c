"""Hosting signaling from behind a NAT with no port mapping daemon: like the relay panel, the
signaling panel adds the public address the configured STUN server reports and says that the
router forwards nothing (issue 12, finding 2). Same lab set-up as tests/ui/test_hosting_nat.py
(tests.ui.conftest.hosting_behind_cone_nat).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QCheckBox, QLabel

from tests.netlab.conftest import require_netns
from tests.ui.conftest import child, click, hosting_behind_cone_nat


def test_signaling_behind_nat_offers_the_stun_address_and_says_nothing_is_forwarded(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, tmp_path: Path
) -> None:
    require_netns()
    hosting = hosting_behind_cone_nat(qtbot, make_window, tmp_path, "signaling")
    with hosting as (window, d, home, alice):
        port = int(str(window.signaling_host.url).rpartition(":")[2])
        qtbot.waitUntil(lambda: len(d.signaling.share_list.rows) == 2, timeout=15_000)
        rows = d.signaling.share_list.rows
        assert rows[0][0].startswith("LAN (")
        assert rows[0][1] == f"ws://{alice.address}:{port}"
        assert rows[1][0] == "public (STUN)"
        assert rows[1][1] == f"ws://{home.wan_address}:{port}"
        note = child(d, "signalingNote", QLabel)
        assert note.isVisible()
        assert f"behind NAT (public address {home.wan_address})" in note.text()
        assert f"forward TCP {port} on your router to {alice.address}" in note.text()
        # The router never answers PCP/NAT-PMP/UPnP: the note ends up naming the refusal.
        qtbot.waitUntil(lambda: "port mapping failed" in note.text(), timeout=30_000)
        with qtbot.waitSignal(window.signaling_host.runningChanged, timeout=30_000):
            click(qtbot, child(d, "signalingSwitch", QCheckBox))
        assert d.signaling.share_list.rows == []
        d.close()
        assert window.errors == []
