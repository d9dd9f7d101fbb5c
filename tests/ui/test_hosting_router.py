"""Hosting from Settings behind a home router that maps ports (miniupnpd: PCP, NAT-PMP, IGD).

Issue 12, finding 2: with "Others can use it" ticked, the relay and signaling panels ask the
router (nat.portmap, as ``peercall host`` does) to forward their ports, offer the router's
external address as a row with Copy/QR, say in one line what the router did, and remove the
forwardings when hosting stops or the window quits. The window runs in the lab host's
namespace (tests/portmap/home.py), clicked as a person would.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QSpinBox

from tests.netlab.lab import Lab
from tests.portmap.home import HOST_IP, WAN_IP, build_home, lab_unavailable_reason
from tests.ui.conftest import child, click, type_into
from tests.ui.netns import entered

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def forwarded(home: Any) -> set[tuple[str, int]]:
    return {(e.protocol, e.internal_port) for e in home.upnpc_list() if e.internal_ip == HOST_IP}


def test_relay_and_signaling_ask_the_router_and_offer_its_address(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, make_window: Any, tmp_path: Path
) -> None:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab(workdir=tmp_path) as lab:
        home = build_home(lab)
        with entered(home.host.ns):
            window = make_window("host")
            d = window.open_settings()

            # --- the relay, for others, with a small relay range
            d.tabs.setCurrentWidget(d.relay)
            click(qtbot, child(d, "relayForOthers", QCheckBox))
            type_into(qtbot, child(d, "relayMaxPort", QSpinBox), "49155")
            with qtbot.waitSignal(window.relay_host.runningChanged, timeout=10_000):
                click(qtbot, child(d, "relaySwitch", QCheckBox))
            qtbot.waitUntil(
                lambda: any(r[0] == "public (router)" for r in d.relay.share_list.rows),
                timeout=30_000,
            )
            rows = d.relay.share_list.rows
            assert rows[0][0].startswith("LAN (")
            assert f"@turn:{HOST_IP}:3478" in rows[0][1]
            index = [r[0] for r in rows].index("public (router)")
            assert f"@turn:{WAN_IP}:3478" in rows[index][1]
            note = child(d, "relayNote", QLabel)
            assert note.isVisible()
            assert "port mapping:" in note.text()
            assert f"external address {WAN_IP}" in note.text()
            click(qtbot, child(d, f"relayCopy{index}", QPushButton))
            assert QGuiApplication.clipboard().text() == rows[index][2]
            click(qtbot, child(d, f"relayQrButton{index}", QPushButton))
            assert d.relay.qr_text == rows[index][3]
            relay_ports = {("UDP", 3478), ("TCP", 3478)} | {("UDP", p) for p in range(49152, 49156)}
            assert relay_ports <= forwarded(home)
            # Allocations are now told the router's address, not the LAN one the relay sees.
            assert window.relay_host.server.core.advertised_ip == WAN_IP

            # Stopping the relay removes its forwardings from the router.
            with qtbot.waitSignal(window.relay_host.runningChanged, timeout=30_000):
                click(qtbot, child(d, "relaySwitch", QCheckBox))
            assert not relay_ports & forwarded(home)
            assert not child(d, "relayNote", QLabel).text().startswith("port mapping:")

            # --- signaling, for others: its port forwarded, the router's address offered
            d.tabs.setCurrentWidget(d.signaling)
            click(qtbot, child(d, "signalingForOthers", QCheckBox))
            with qtbot.waitSignal(window.signaling_host.runningChanged, timeout=10_000):
                click(qtbot, child(d, "signalingSwitch", QCheckBox))
            qtbot.waitUntil(
                lambda: any(r[0] == "public (router)" for r in d.signaling.share_list.rows),
                timeout=30_000,
            )
            rows = d.signaling.share_list.rows
            port = int(window.signaling_host.url.rpartition(":")[2])
            assert rows[0] == (rows[0][0], *[f"ws://{HOST_IP}:{port}"] * 3)
            public = next(r for r in rows if r[0] == "public (router)")
            assert public[1] == f"ws://{WAN_IP}:{port}"
            assert "port mapping:" in child(d, "signalingNote", QLabel).text()
            assert ("TCP", port) in forwarded(home)

            # Quitting the window (signaling still hosted) removes that forwarding too.
            with qtbot.waitSignal(window.closed, timeout=30_000):
                window.quit_action.trigger()
            assert ("TCP", port) not in forwarded(home)
            assert window.errors == []
