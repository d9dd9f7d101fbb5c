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
        "--calls",
        type=int,
        default=1,
        metavar="N",
        help="with --self-test-call: place N calls in this one process, printing the RSS"
        " after each (the memory-growth benchmark)",
    )
    parser.add_argument(
        "--bench-call",
        choices=("call", "wait"),
        help=argparse.SUPPRESS,  # bench/bench_ui_startup.py: one side of a two-process call
    )
    parser.add_argument("--bench-url", help=argparse.SUPPRESS)
    parser.add_argument("--bench-hold", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--bench-video", action="store_true", help=argparse.SUPPRESS)
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
    bench = getattr(args, "bench_call", None)
    if bench is not None:
        settings.update({"video.enabled": bool(args.bench_video)})
    synthetic = args.synthetic_media or self_test or bench is not None
    media = callsetup.synthetic_media if synthetic else None
    window = MainWindow(
        settings,
        history,
        media=media,
        loopback=self_test or bench is not None,
        video=not self_test or bool(args.bench_video),
    )
    window.show()
    if getattr(args, "link", None):
        from app.ui.hostcall import open_link

        open_link(window, args.link)
    if args.print_ready:
        # Printed from the first loop iteration: the window is shown *and* the loop runs.
        loop.call_soon(lambda: print(f"{READY_MARKER} {time.monotonic() - start:.3f}", flush=True))
    if not self_test and bench is None:
        _autostart_hosting(window, settings)

    result: dict[str, int] = {"code": 0}
    finished: asyncio.Future[None] = loop.create_future()

    def on_closed() -> None:
        if not finished.done():
            finished.set_result(None)

    window.closed.connect(on_closed)
    if args.quit_after is not None:
        loop.call_later(args.quit_after, window.close)
    self_test_task = None
    if self_test:
        self_test_task = asyncio.ensure_future(_self_tests(window, result, max(1, args.calls)))
    elif bench is not None:
        self_test_task = asyncio.ensure_future(
            _bench_call(window, result, bench, args.bench_url, args.bench_hold)
        )

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


def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _self_tests(window: Any, result: dict[str, int], calls: int) -> None:
    """``calls`` self-test calls in this process; the RSS after each (growth per call)."""
    import gc

    for number in range(1, calls + 1):
        last = number == calls
        await _self_test(window, result, close=last)
        gc.collect()
        print(f"peercall: rss after call {number}: {rss_mb():.1f} MB", flush=True)
        if result["code"] != 0:
            if not last:
                window.close()
            return


async def _bench_call(
    window: Any, result: dict[str, int], role: str, url: str, hold: float
) -> None:
    """One side of a two-process call (bench/bench_ui_startup.py measures each side's CPU):
    join the room through the window's own fields and buttons, accept when it rings, hold,
    report what video arrived, hang up, quit."""
    from signaling.client import WebSocketChannel

    code = 1
    try:
        channel = WebSocketChannel(url, "bench", "bench-secret")
        if role == "wait":
            window.adapter.incomingCall.connect(lambda _peer: window.accept_button.click())
            window.wait_for_call(channel, "bench caller")
        else:
            window.start_call(channel, "bench callee")
        for _ in range(600):
            session = window.adapter.session
            if session is not None and session.state.value == "connected":
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("no connection after 30 s")
        print("peercall: bench connected", flush=True)
        await asyncio.sleep(1.0)  # past the first frames' set-up
        sink = window._remote_sink
        frames, t0 = (sink.frames if sink is not None else 0), time.monotonic()
        await asyncio.sleep(hold)
        elapsed = time.monotonic() - t0
        size = sink.size if sink is not None else None
        rate = (sink.frames - frames) / elapsed if sink is not None else 0.0
        where = f"{size[0]}x{size[1]}" if size else "none"
        # The mean over the whole hold, not one second's count.
        print(f"peercall: bench video received {where} {rate:.1f} fps", flush=True)
        if role == "call":
            await window.adapter.hangup()
        else:
            for _ in range(200):
                if not window.adapter.in_call:
                    break
                await asyncio.sleep(0.05)
        code = 0
    except Exception as exc:
        print(f"peercall: error: bench call failed: {exc!r}", file=sys.stderr, flush=True)
    finally:
        result["code"] = code
        window.close()


async def _self_test(window: Any, result: dict[str, int], *, close: bool = True) -> None:
    """The exit-code check: a loopback call through the embedded signaling server."""
    from app.call.session import CallOptions, CallSession
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
        if close:
            window.close()


async def _start_signaling(window: Any) -> str:
    if window.signaling_host.url is not None:
        return str(window.signaling_host.url)
    ok = await window.signaling_host.start("127.0.0.1", 0)
    if not ok:
        raise RuntimeError("could not start the embedded signaling server")
    url = str(window.signaling_host.url)
    logging.getLogger(__name__).info("self-test signaling at %s", url)
    return url
