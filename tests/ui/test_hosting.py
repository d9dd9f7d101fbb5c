"""app.ui.hosting: relay settings from the saved settings, what to share, and autostart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.ui.hosting import (
    RelayHost,
    RelayStatus,
    SignalingHost,
    autostart,
    relay_settings,
    share_text,
    share_uris,
)


def test_relay_settings_generate_a_user_when_none(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "s.json")
    values = relay_settings(settings)
    assert values.users[0][0] == "peercall"
    assert len(values.users[0][1]) >= 16
    assert settings["relay.users"] == [list(values.users[0])]
    assert relay_settings(settings).users == values.users  # stable once generated


def test_share_uris_replace_the_wildcard_with_the_external_ip() -> None:
    uris = ("turn:0.0.0.0:3478?transport=udp", "turn:[::]:3478?transport=tcp")
    assert share_uris(uris, "") == uris
    assert share_uris(uris, "203.0.113.5") == (
        "turn:203.0.113.5:3478?transport=udp",
        "turn:203.0.113.5:3478?transport=tcp",
    )
    assert share_uris(uris[:1], "2001:db8::5") == ("turn:[2001:db8::5]:3478?transport=udp",)


def test_share_text_names_uris_credentials_and_the_wildcard() -> None:
    status = RelayStatus(True, uris=("turn:0.0.0.0:3478?transport=udp",), users=(("ann", "pw:x"),))
    text = share_text(status)
    assert text.splitlines()[:3] == [
        "turn:0.0.0.0:3478?transport=udp",
        "username: ann",
        "credential: pw:x",
    ]
    assert "in PeerCall: ann:pw:x@turn:0.0.0.0:3478?transport=udp" in text
    assert "replace 0.0.0.0" in text
    assert "replace" not in share_text(status, "198.51.100.2")
    assert share_text(RelayStatus(False)) == ""


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
