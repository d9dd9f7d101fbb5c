"""Make or answer a call from the terminal.

Copy-paste (the default) needs nothing but a way to send each other one line of text:

    A$ peercall call                 # prints an offer blob; paste B's answer blob back
    B$ peercall call --answer        # paste A's offer blob; prints the answer blob for A

Or meet in a room on a signaling server (``peercall signal`` runs one):

    peercall call --server ws://host:8765 --room kitchen --secret s3cret [--answer]

Once connected, each line typed is sent as chat; an empty line or end of input hangs up
(unless --duration is given). Both ends print the short authentication string (SAS): read it
to each other; if it differs, someone is in the middle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app import startup
from app.errors import ConfigError

if TYPE_CHECKING:
    from app.history import Direction

#: app.cli.main leaves app.startup.end() to us: the engine is imported later, in _call.
ENDS_STARTUP = True
EXIT_ENDED = 0
EXIT_FAILED = 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sig = parser.add_argument_group("signaling (copy-paste blobs unless --server is given)")
    sig.add_argument(
        "--answer",
        action="store_true",
        help="answer a call (read the offer first) instead of calling",
    )
    sig.add_argument(
        "--auto-answer",
        action="store_true",
        help="with --answer: take the call without asking (asked only when stdin is a terminal)",
    )
    sig.add_argument("--server", metavar="URL", help="signaling server, e.g. ws://host:8765")
    sig.add_argument(
        "--room", default="peercall", help="room name on the server (default: %(default)s)"
    )
    sig.add_argument("--secret", default="", help="room secret both callers share")
    sig.add_argument(
        "--reconnect-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="keep trying to reach a lost signaling server this long; the call itself goes on"
        " without it (default: %(default)s)",
    )
    sig.add_argument(
        "--print-link",
        action="store_true",
        help="first print the link that joins this room from a web browser (for someone"
        " without PeerCall), then call as usual",
    )
    sig.add_argument(
        "--ca-file",
        metavar="PEM",
        help="for a wss:// server with a self-signed or private-CA certificate: trust only"
        " the certificate(s) in this PEM file instead of the system CAs",
    )
    ice = parser.add_argument_group("NAT traversal")
    ice.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="[USER:PASS@]URI",
        help="a stun:/turn:/turns: server (RFC 7064/7065); repeatable. None by default",
    )
    ice.add_argument(
        "--relay-only",
        action="store_true",
        help="connect only through a TURN relay (hides your address)",
    )
    ice.add_argument(
        "--loopback",
        action="store_true",
        help="offer only 127.0.0.1 host candidates (both ends on this machine)",
    )
    ice.add_argument(
        "--gather-timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="longest wait on any STUN/TURN server (default: %(default)s)",
    )
    media = parser.add_argument_group("media")
    media.add_argument(
        "--mic", metavar="DEVICE", help="input device name or index (default: system default)"
    )
    media.add_argument(
        "--speaker", metavar="DEVICE", help="output device name or index (default: system default)"
    )
    media.add_argument(
        "--send-tone", type=float, metavar="HZ", help="send a sine tone instead of the mic"
    )
    media.add_argument(
        "--send-file", metavar="AUDIO", help="send an audio file (WAV, …) instead of the mic"
    )
    media.add_argument(
        "--record",
        metavar="WAV",
        help="write what the peer sends to a WAV file instead of playing it",
    )
    media.add_argument(
        "--no-devices",
        action="store_true",
        help="no sound card: send silence (or --send-*), discard what arrives (or --record)",
    )
    media.add_argument(
        "--video", action="store_true", help="also send video (test pattern unless --camera)"
    )
    media.add_argument(
        "--camera", metavar="DEVICE", help="camera device, e.g. /dev/video0 (implies --video)"
    )
    run = parser.add_argument_group("session")
    run.add_argument(
        "--chat",
        action="append",
        default=[],
        metavar="TEXT",
        help="send this chat message once connected",
    )
    run.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="hang up this long after connecting (ignores stdin)",
    )
    run.add_argument(
        "--no-history",
        action="store_true",
        help="do not add this call to the call history the desktop window shows",
    )
    run.add_argument(
        "--export",
        metavar="JSON",
        help="write the session (candidates, states, stats, SDPs) here at the end",
    )


def _say(text: str) -> None:
    print(f"peercall: {text}", file=sys.stderr, flush=True)


def _build_media(args: argparse.Namespace) -> dict[str, Any]:
    """Sources and sinks from the options; device errors surface here, before any signaling."""
    media: dict[str, Any] = {}
    if args.no_devices and not (args.send_tone is not None or args.send_file or args.record):
        # Silence out, nothing kept: the session's defaults (aiortc's silent track, a black
        # hole), which spare the start-up the synthetic sources' imports (numpy).
        if args.video or args.camera:
            media.update(_video_source(args))
        return media
    from app.media.synthetic import NullSink, SilenceTrack, ToneTrack, WavFileSink, WavFileTrack

    if args.send_tone is not None:
        media["audio_source"] = ToneTrack(args.send_tone)
    elif args.send_file:
        media["audio_source"] = WavFileTrack(args.send_file, loop=True)
    elif args.no_devices:
        media["audio_source"] = SilenceTrack()
    else:
        from app.media.audio import MicrophoneTrack  # PortAudio: only when a device is used

        media["audio_source"] = MicrophoneTrack(args.mic)
    if args.record:
        media["audio_sink"] = WavFileSink(args.record)
    elif args.no_devices:
        media["audio_sink"] = NullSink()
    else:
        from app.media.audio import SpeakerSink

        media["audio_sink"] = SpeakerSink(args.speaker)
    if args.video or args.camera:
        media.update(_video_source(args))
    return media


def _video_source(args: argparse.Namespace) -> dict[str, Any]:
    from app.media.video import CameraTrack, TestPatternTrack

    return {"video_source": CameraTrack(args.camera) if args.camera else TestPatternTrack()}


def _describe(event: Any) -> str | None:
    from app.call.iceview import describe_path
    from app.events import (
        ChatReceived,
        ChatStateChanged,
        ErrorOccurred,
        GatheringFinished,
        IceServersInUse,
        SasReady,
        SelectedPairChanged,
        StateChanged,
    )

    match event:
        case StateChanged(new=new, reason=reason):
            return f"call {new.value}" + (f" ({reason})" if reason else "")
        case SelectedPairChanged():
            return f"path {describe_path(event)}"
        case ChatStateChanged(state=state):
            return "chat connecting…" if state == "connecting" else "chat ready"
        case IceServersInUse(servers=servers):
            offered = [u for s in servers if s.origin == "signaling server" for u in s.urls]
            if offered:
                return f"ICE servers from the signaling server: {', '.join(offered)}"
            return None
        case SasReady(sas=sas):
            return f"security code (SAS) {sas}: read it to your peer, it must match"
        case GatheringFinished(duration=duration, failed_servers=failed) if failed:
            return f"no answer from {', '.join(failed)} within {duration:.1f} s"
        case ErrorOccurred(message=message):
            return f"error: {message}"
        case ChatReceived():
            return None
    return None


async def _call(args: argparse.Namespace) -> int:
    from app.events import ChatReceived
    from app.iceservers import IceServer

    servers = tuple(IceServer.from_spec(spec) for spec in args.ice_server)
    if args.gather_timeout <= 0:
        raise ConfigError(f"--gather-timeout must be positive, got {args.gather_timeout}")
    if args.reconnect_timeout < 0:
        raise ConfigError(f"--reconnect-timeout must not be negative, got {args.reconnect_timeout}")
    if args.ca_file and not (args.server or "").lower().startswith("wss://"):
        raise ConfigError("--ca-file only applies to a wss:// --server")
    if args.relay_only and not args.server and not _has_turn(servers):
        raise ConfigError("--relay-only needs a TURN server (--ice-server USER:PASS@turn:HOST)")
    if args.print_link:
        if not args.server:
            raise ConfigError("--print-link needs --server: the signaling server serves the page")
        from signaling.web import call_link

        print(call_link(args.server, args.room, args.secret), flush=True)
    media = _build_media(args)
    from signaling.manual import stdin_reader

    read_line = stdin_reader()  # pastes first, then chat: one reader of stdin
    channel = _channel(args, read_line)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    session: Any = None
    # The engine (aiortc, codecs) loads in a thread while the join's round trips are in
    # flight: together they take less time than one after the other.
    engine = loop.run_in_executor(None, importlib.import_module, "app.call.session")
    try:
        try:
            await channel.connect()
        finally:
            await engine
            startup.end()
        # Built after the join: the signaling server's ICE servers (TURN REST credentials)
        # join the user's own list.
        session = _new_session(args, servers, channel, media)
        media = {}
        controller = _controller(args, session, channel)

        def on_event(event: Any) -> None:
            if isinstance(event, ChatReceived):
                print(f"<peer> {event.text}", flush=True)
            text = _describe(event)
            if text:
                _say(text)

        session.subscribe(on_event)
        if args.server is None:
            _say(
                "paste the offer blob from your peer:"
                if args.answer
                else "send this offer blob to your peer, then paste their answer blob here:"
            )
        connecting = asyncio.ensure_future(_connect(controller, args, read_line))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():
            controller.cancelled = True
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            await controller.hangup("cancelled")
            return EXIT_FAILED
        stopper.cancel()
        if connecting.exception() is not None:
            exc = connecting.exception()
            # A session that failed has already said why ("call failed (reason)").
            if session.state.value not in ("ended", "failed"):
                _say(f"call failed: {exc}")
            return _exit_code(session)
        if not connecting.result():
            return EXIT_ENDED  # declined on purpose
        for text in args.chat:
            await session.send_chat(text)
        await _in_call(session, read_line, stop, args.duration)
        await session.hangup()
        return _exit_code(session)
    finally:
        for key in ("audio_source", "video_source"):  # never handed to a session
            if key in media:  # (e.g. the join failed): release the device here
                with contextlib.suppress(Exception):
                    media[key].stop()
        if session is not None:
            await session.hangup()
        await channel.close()
        if args.export and session is not None:
            _export(session.export(), args.export)


def _has_turn(servers: Any) -> bool:
    return any(u.is_turn for s in servers for u in s.uris)


def _new_session(args: argparse.Namespace, servers: Any, channel: Any, media: Any) -> Any:
    from app.call.session import CallOptions, CallSession
    from app.iceservers import IceServer, merge_ice_servers

    offered = []
    for data in getattr(channel, "ice_servers", None) or []:
        with contextlib.suppress(ConfigError):  # the session logs what it skips
            offered.append(IceServer.from_dict(data, origin="signaling server"))
    if args.relay_only and not _has_turn(merge_ice_servers(servers, offered)):
        raise ConfigError(
            "--relay-only needs a TURN server (--ice-server USER:PASS@turn:HOST, or a signaling"
            " server started with --turn-secret)"
        )
    options = CallOptions(
        ice_servers=servers,
        relay_only=args.relay_only,
        loopback_candidates=args.loopback,
        gather_timeout=args.gather_timeout,
        video=bool(args.video or args.camera),
    )
    return CallSession(options, **media)


def _exit_code(session: Any) -> int:
    """0 only for a call that connected and then ended; a call that never connected failed,
    even when it ended because the other side hung up first."""
    ended = session.state.value == "ended"
    return EXIT_ENDED if ended and session.connected_once else EXIT_FAILED


def _channel(args: argparse.Namespace, read_line: Any) -> Any:
    if args.server:
        from signaling.client import WebSocketChannel

        return WebSocketChannel(
            args.server,
            args.room,
            args.secret,
            ca_file=args.ca_file,
            reconnect_timeout=args.reconnect_timeout,
        )
    from signaling.manual import stdio_channel

    return stdio_channel(read_line)


def _controller(args: argparse.Namespace, session: Any, channel: Any) -> Any:
    from app.call.controller import CallController

    history = None
    if not args.no_history:
        from app.history import History

        history = History.load()
    peer = f"{args.room} on {args.server}" if args.server else "copy-paste"
    direction: Direction = "incoming" if args.answer else "outgoing"
    return CallController(session, channel, direction=direction, peer=peer, history=history)


async def _connect(controller: Any, args: argparse.Namespace, read_line: Any) -> bool:
    """Dial, or ring and answer; False if the user declined."""
    if not args.answer:
        await controller.dial()
        return True
    ask = not args.auto_answer and sys.stdin.isatty()

    async def decide(peer: str) -> bool:
        if not ask:
            _say(f"incoming call from {peer}: answering")
            return True
        while True:
            _say(f"incoming call from {peer}: accept? [Y/n]")
            line = await read_line()
            if line is None:
                return False
            answer = line.strip().lower()
            if answer in ("", "y", "yes"):
                return True
            if answer in ("n", "no"):
                return False

    accepted: bool = await controller.listen(decide)
    if not accepted:
        _say("call declined")
    return accepted


async def _in_call(
    session: Any, read_line: Any, stop: asyncio.Event, duration: float | None
) -> None:
    from app.errors import CallError
    from app.events import CallState

    ended = asyncio.Event()

    def watch(event: Any) -> None:
        if getattr(event, "new", None) in (CallState.ENDED, CallState.FAILED):
            ended.set()

    unsubscribe: Callable[[], None] = session.subscribe(watch)
    waiters: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(ended.wait()),
        asyncio.ensure_future(stop.wait()),
    ]
    try:
        if duration is not None:
            waiters.append(asyncio.ensure_future(asyncio.sleep(duration)))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            return
        _say("connected: type a line to chat, an empty line (or Ctrl-D) hangs up")
        while True:
            reader = asyncio.ensure_future(read_line())
            done, _ = await asyncio.wait([reader, *waiters], return_when=asyncio.FIRST_COMPLETED)
            if reader not in done:
                reader.cancel()
                return
            line = reader.result()
            if line is None or not line.strip():
                return
            try:
                await session.send_chat(line.rstrip("\n"))
            except CallError as exc:
                _say(str(exc))
    finally:
        unsubscribe()
        for waiter in waiters:
            waiter.cancel()


def _export(data: dict[str, Any], path: str) -> None:
    import json

    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
    except OSError as exc:
        _say(f"cannot write the export to {path}: {exc.strerror}")


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_call(args))
    finally:
        startup.end()  # if _call failed before the engine was imported
