"""app.ui.hosting: relay settings from the saved settings, what to share, and autostart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.ui.hosting import (
    HostAddress,
    RelayHost,
    RelayStatus,
    SignalingHost,
    autostart,
    lan_addresses,
    reachable_addresses,
    relay_settings,
    uris_at,
)


def test_relay_settings_generate_a_user_when_none(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "s.json")
    values = relay_settings(settings)
    assert values.users[0][0] == "peercall"
    assert len(values.users[0][1]) >= 16
    assert settings["relay.users"] == [list(values.users[0])]
    assert relay_settings(settings).users == values.users  # stable once generated


def test_uris_at_put_the_address_a_peer_dials() -> None:
    uris = ("turn:0.0.0.0:3478?transport=udp", "turn:[::]:3478?transport=tcp")
    assert uris_at(uris, "203.0.113.5") == (
        "turn:203.0.113.5:3478?transport=udp",
        "turn:203.0.113.5:3478?transport=tcp",
    )
    assert uris_at(uris[:1], "2001:db8::5") == ("turn:[2001:db8::5]:3478?transport=udp",)
    assert uris_at(("turns:127.0.0.1:5349?transport=tcp",), "192.0.2.1") == (
        "turns:192.0.2.1:5349?transport=tcp",
    )


def test_reachable_addresses_never_offer_a_wildcard() -> None:
    assert reachable_addresses("127.0.0.1") == [HostAddress("this machine only", "127.0.0.1")]
    everywhere = reachable_addresses("0.0.0.0", "203.0.113.9")
    assert everywhere[0] == HostAddress("public (External IP)", "203.0.113.9")
    assert {a.ip for a in everywhere[1:]} == {a.ip for a in lan_addresses()}
    for address in everywhere:
        assert address.ip not in ("0.0.0.0", "::")
    assert reachable_addresses("192.0.2.4") == [HostAddress("LAN", "192.0.2.4")]


def test_autostart_starts_what_the_settings_enable(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, arun: Any, tmp_path: Path
) -> None:
    settings = Settings(tmp_path / "s.json")
    settings.update(
        {
            "relay.enabled": True,
            "relay.listen": "127.0.0.1",
            "relay.port": 0,
            "signaling_server.enabled": True,
            "signaling_server.listen": "127.0.0.1",
            "signaling_server.port": 0,
        }
    )
    relay, signaling = RelayHost(), SignalingHost()
    statuses: list[RelayStatus] = []
    relay.statusChanged.connect(statuses.append)
    try:
        arun(autostart(settings, relay, signaling))
        assert relay.running
        assert signaling.url is not None
        assert signaling.url.startswith("ws://127.0.0.1:")
        # The generated relay user was saved so its password survives a restart.
        assert Settings.load(tmp_path / "s.json")["relay.users"] == settings["relay.users"]
        assert statuses
        assert statuses[-1].running
        assert statuses[-1].uris
    finally:
        arun(relay.stop())
        arun(signaling.stop())
    stopped: tuple[bool, str | None] = (relay.running, signaling.url)
    assert stopped == (False, None)


def test_autostart_does_nothing_by_default(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, arun: Any, tmp_path: Path
) -> None:
    relay, signaling = RelayHost(), SignalingHost()
    arun(autostart(Settings(tmp_path / "s.json"), relay, signaling))
    assert not relay.running
    assert signaling.url is None
    assert not (tmp_path / "s.json").exists()
