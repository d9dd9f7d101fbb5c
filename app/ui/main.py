"""Open the PeerCall desktop window (the default when ``peercall`` gets no command).

The window runs on a qasync loop: Qt's event loop drives asyncio, so the call engine's
coroutines and the widgets share one thread. Closing the window hangs up, stops any hosted
relay or signaling server, and the process exits with code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

READY_MARKER = "peercall: window shown"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "link",
        nargs="?",
        help="a peercall:// link to join: fills the server room (the desktop URL handler)",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        help="keep settings.json and history.json here instead of the per-user directory",
    )
    parser.add_argument(
        "--print-ready",
        action="store_true",
        help=f"print {READY_MARKER!r} once the window is on screen (start-up benchmark)",
    )
    parser.add_argument(
        "--quit-after",
        type=float,
        metavar="SECONDS",
        help="close the window after SECONDS (idle-memory benchmark)",
    )
    parser.add_argument(
        "--self-test-call",
        action="store_true",
        help="place a loopback call to an in-process peer over the embedded signaling server,"
        " chat, hang up and quit (exit code 0 when all of it worked)",
    )
    parser.add_argument(
        "--synthetic-media",
        action="store_true",
        help="send silence and discard received audio (no sound card needed)",
    )


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    # Heavy imports here, not at module level: `peercall relay --help` must stay instant.
    import qasync
    from PySide6.QtWidgets import QApplication

    from app.history import History
    from app.settings import Settings
    from app.ui import callsetup
    from app.ui.mainwindow import MainWindow

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("PeerCall")
    # Wayland docks and taskbars match the window to packaging/linux's .desktop entry by this id.
    app.setDesktopFileName("org.peercall.PeerCall")
    app.setWindowIcon(_window_icon())
    app.setQuitOnLastWindowClosed(False)  # we quit after the asynchronous shutdown instead
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    config_dir: Path | None = args.config_dir
    settings = Settings.load(config_dir / "settings.json" if config_dir else None)
    history = History.load(config_dir / "history.json" if config_dir else None)
    self_test = bool(getattr(args, "self_test_call", False))
    media = callsetup.synthetic_media if (args.synthetic_media or self_test) else None
    window = MainWindow(settings, history, media=media, loopback=self_test)
    window.show()
    if getattr(args, "link", None):
        from app.ui.hostcall import open_link

        open_link(window, args.link)
    if args.print_ready:
        # Printed from the first loop iteration: the window is shown *and* the loop runs.
        loop.call_soon(lambda: print(f"{READY_MARKER} {time.monotonic() - start:.3f}", flush=True))
    if not self_test:
        _autostart_hosting(window, settings)

    result: dict[str, int] = {"code": 0}
    finished: asyncio.Future[None] = loop.create_future()

    def on_closed() -> None:
        if not finished.done():
            finished.set_result(None)

    window.closed.connect(on_closed)
    if args.quit_after is not None:
        loop.call_later(args.quit_after, window.close)
    self_test_task = asyncio.ensure_future(_self_test(window, result)) if self_test else None

    with loop:
        loop.run_until_complete(finished)
        # Let callbacks scheduled by the shutdown (transport closes) run before the loop ends.
        loop.run_until_complete(asyncio.sleep(0.05))
    if self_test_task is not None and not self_test_task.done():
        result["code"] = 1
    return result["code"]


def _window_icon() -> Any:
    """The theme's icon when installed (make install-desktop), else the SVG shipped in app/ui."""
    from PySide6.QtGui import QIcon

    fallback = QIcon(str(Path(__file__).with_name("peercall.svg")))
    return QIcon.fromTheme("org.peercall.PeerCall", fallback)


def _autostart_hosting(window: Any, settings: Any) -> None:
    """Start the relay / signaling server the settings say to host at start-up."""
    from app.ui.hosting import autostart

    window.adapter.run(
        autostart(settings, window.relay_host, window.signaling_host), "Hosting at start-up"
    )


async def _self_test(window: Any, result: dict[str, int]) -> None:
    """The exit-code check: a loopback call through the embedded signaling server."""
    from app.session import CallOptions, CallSession
    from app.ui import callsetup

    code = 1
    callee: CallSession | None = None
    try:
        url = await _start_signaling(window)
        from signaling.client import WebSocketChannel

        callee = CallSession(
            CallOptions(loopback_candidates=True),
            audio_source=callsetup.synthetic_media().audio_source,
        )
        callee_channel = WebSocketChannel(url, "self-test", "self-test-secret")
        await callee_channel.connect()

        async def answer() -> None:
            assert callee is not None
            offer = await callee.wait_for_offer(callee_channel)
            await callee.answer(callee_channel, offer)

        answering = asyncio.ensure_future(answer())
        await window.start_call(
            WebSocketChannel(url, "self-test", "self-test-secret"), "self-test peer"
        )
        await asyncio.wait_for(answering, 30)
        print("peercall: self-test connected", flush=True)
        await callee.send_chat("hello from the self-test")
        await asyncio.sleep(0.3)
        await window.adapter.hangup()
        await callee.hangup()
        await callee_channel.close()
        print("peercall: self-test hung up", flush=True)
        code = 0
    except Exception as exc:
        print(f"peercall: error: self-test call failed: {exc!r}", file=sys.stderr, flush=True)
        if callee is not None:
            await callee.hangup()
    finally:
        result["code"] = code
        window.close()


async def _start_signaling(window: Any) -> str:
    ok = await window.signaling_host.start("127.0.0.1", 0)
    if not ok:
        raise RuntimeError("could not start the embedded signaling server")
    url: str = window.signaling_host.url
    logging.getLogger(__name__).info("self-test signaling at %s", url)
    return url
