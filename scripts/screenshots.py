"""Render the README's screenshots offscreen from a real loopback call.

Two in-process windows ("Alice" and "Bob") call each other through the embedded signaling
server and the embedded STUN/TURN relay (both on 127.0.0.1, hosted from Alice's window), chat,
and keep the call up for a few seconds so the debug panel's graphs have data. Then
``QWidget.grab()`` saves PNGs into docs/screenshots/:

- ``main-window-start.png``: Alice's window before the call (how to reach the peer);
- ``main-window.png``: Alice's window in the call (badge, quality, SAS, timer, chat);
- ``debug-panel.png``: her debug panel (candidates, pairs, graphs), ``debug-timeline.png``:
  the same panel on its timeline tab;
- ``settings-relay.png``: the settings dialog on "Host a relay" with the relay running;
- ``video-call.png``: Bob's window in a video call: Alice's video (the test pattern, as sent
  when there is no camera) large, his own small;
- ``settings-video.png``: the "Audio & video" page with its live camera preview.

Usage: ``.venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--seconds 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync  # noqa: TID251  (a GUI script: Qt is the point)
from PySide6.QtWidgets import QApplication, QWidget  # noqa: TID251

from app.history import History
from app.settings import Settings
from app.ui import callsetup
from app.ui.hosting import RelaySettings
from app.ui.mainwindow import MainWindow

ROOT = Path(__file__).resolve().parent.parent
RELAY_USER, RELAY_PASSWORD = "guest", "correct-horse-battery"


async def until(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def save(widget: QWidget, path: Path) -> None:
    # Let Qt lay out and paint through the running loop (processEvents() here would re-enter it).
    await asyncio.sleep(0.2)
    if not widget.grab().save(str(path)):
        raise RuntimeError(f"could not write {path}")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def make_window(config: Path, name: str, display: str) -> MainWindow:
    settings = Settings(config / name / "settings.json")
    settings.update({"display_name": display, "video.enabled": True})
    window = MainWindow(
        settings,
        History(config / name / "history.json"),
        media=callsetup.synthetic_media,
        loopback=True,
        name=f"PeerCall — {display}",
    )
    window.resize(1180, 700)
    window.show()
    return window


async def scene(out: Path, seconds: float, config: Path) -> None:
    alice = make_window(config, "alice", "Alice")
    bob = make_window(config, "bob", "Bob")
    try:
        # Alice hosts both servers from her window, on loopback only (her settings say so too,
        # so the settings dialog shows what is running).
        alice.settings.update(
            {
                "relay.enabled": True,
                "relay.listen": "127.0.0.1",
                "relay.port": 0,
                "relay.users": [[RELAY_USER, RELAY_PASSWORD]],
            }
        )
        relay_values = RelaySettings(
            listen="127.0.0.1",
            port=0,
            users=((RELAY_USER, RELAY_PASSWORD),),
            allow_loopback_peers=True,
        )
        if not await alice.relay_host.start(relay_values):
            raise RuntimeError(f"relay did not start: {alice.errors}")
        if not await alice.signaling_host.start("127.0.0.1", 0):
            raise RuntimeError(f"signaling server did not start: {alice.errors}")
        uris = [u for u in alice.relay_host.server.turn_uris() if u.endswith("udp")]
        stun = uris[0].replace("turn:", "stun:").split("?")[0]
        servers = [
            {"urls": [stun]},
            {"urls": uris, "username": RELAY_USER, "credential": RELAY_PASSWORD},
        ]
        url = alice.signaling_host.url
        assert url is not None
        for window in (alice, bob):
            window.settings.update({"ice_servers": servers})
            window.server_url.setText(url)
            window.room.setText("family-call")
            window.secret.setText("blue-giraffe")

        await save(alice, out / "main-window-start.png")
        panel = alice.open_debug_panel()
        panel.resize(1280, 800)
        bob.wait_button.click()
        await until(lambda: bob.adapter.in_call, "Bob waiting in the room")
        await asyncio.sleep(0.3)
        alice.call_button.click()
        await until(lambda: bob.incoming.isVisible(), "the ring")
        bob.accept_button.click()
        await until(lambda: alice.badge.badge.key in ("direct", "relay"), "connected")
        await until(lambda: "Verify: <b" in alice.sas.text(), "the SAS")
        for who, text in (
            (alice, "Hi Bob! Can you hear me?"),
            (bob, "Loud and clear. The words match here too."),
            (alice, "Great, same words on my side."),
        ):
            who.chat.input.setText(text)
            who.chat.send_button.click()
            await asyncio.sleep(0.4)
        await asyncio.sleep(seconds)  # graphs and the timer fill with real samples
        await until(lambda: len(panel.stats) >= 3, "stats samples")

        await until(lambda: bob.remote_video.frames_painted > 3, "Alice's video at Bob")
        await until(lambda: alice.local_video.frames_painted > 3, "Alice's self-view")
        await save(alice, out / "main-window.png")
        await save(bob, out / "video-call.png")
        await save(panel, out / "debug-panel.png")
        tabs = panel.timeline.parentWidget().parentWidget()
        tabs.setCurrentWidget(panel.timeline)
        await save(panel, out / "debug-timeline.png")
        tabs.setCurrentWidget(panel.pairs)

        dialog: Any = alice.open_settings()
        dialog.resize(900, 720)
        dialog.tabs.setCurrentWidget(dialog.relay)
        await asyncio.sleep(1.2)  # one status refresh (allocations, relayed bytes)
        await save(dialog, out / "settings-relay.png")
        dialog.tabs.setCurrentWidget(dialog.media)
        await until(lambda: dialog.media.preview.frames_painted > 3, "the camera preview")
        await save(dialog, out / "settings-video.png")
        dialog.tabs.setCurrentWidget(dialog.relay)

        alice.hangup_button.click()
        await until(lambda: not alice.adapter.in_call and not bob.adapter.in_call, "hang-up")
    finally:
        await bob.shutdown()
        await alice.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--seconds", type=float, default=8.0, help="call time before the shots")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("PeerCall")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="peercall-shots-") as config, loop:
        loop.run_until_complete(scene(out, args.seconds, Path(config)))
        loop.run_until_complete(asyncio.sleep(0.2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
