"""Hosting a relay from behind a NAT, in the NAT lab: the panel adds the public address the
configured STUN server reports and says that no port mapping exists (issue 12, finding 2).
The window runs inside a lab host's namespace (its main thread enters it, as tests/ui/netns
does), behind a cone NAT, with the lab's relay on the "internet" as its STUN server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QCheckBox, QLabel

from tests.netlab.conftest import require_netns
from tests.ui.conftest import child, click, hosting_behind_cone_nat


def test_relay_behind_nat_offers_the_stun_address_and_says_nothing_is_forwarded(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, tmp_path: Path
) -> None:
    require_netns()
    with hosting_behind_cone_nat(qtbot, make_window, tmp_path, "relay") as (window, d, home, alice):
        # The LAN row at once, the public one when the STUN answer is in.
        qtbot.waitUntil(lambda: len(d.relay.share_list.rows) == 2, timeout=15_000)
        rows = d.relay.share_list.rows
        assert rows[0][0].startswith("LAN (")
        assert f"@turn:{alice.address}:3478" in rows[0][1]
        assert rows[1][0] == "public (STUN)"
        assert f"@turn:{home.wan_address}:3478" in rows[1][1]
        note = child(d, "relayNote", QLabel)
        assert note.isVisible()
        assert f"behind NAT (public address {home.wan_address})" in note.text()
        assert "no port mapping is known" in note.text()
        with qtbot.waitSignal(window.relay_host.runningChanged, timeout=10_000):
            click(qtbot, child(d, "relaySwitch", QCheckBox))
        d.close()
        assert window.errors == []
