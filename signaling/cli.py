"""Run PeerCall's WebSocket signaling server headless.

Two peers join a room (the first sets its secret) and the server relays their offer, answer and
ICE candidates, queueing what a reconnecting peer misses. With a TURN shared secret it hands
each peer short-lived TURN REST credentials, so clients never hold a long-term relay password.
The wire protocol is described in docs/signaling-protocol.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from signaling.errors import SignalingError

if TYPE_CHECKING:
    from signaling.server import SignalingServer

# Mirrored from signaling.server (importing it here would slow down `peercall --help`);
# tests/signaling/test_cli.py checks that they agree.
DEFAULT_PORT = 8765
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_PING_INTERVAL = 20.0
DEFAULT_RESUME_GRACE = 30.0
DEFAULT_TURN_TTL = 3600.0
DEFAULT_MAX_QUEUE = 256
DEFAULT_RATE_LIMIT = 50.0
DEFAULT_RATE_BURST = 200
DEFAULT_MAX_CONNECTIONS_PER_IP = 100
DEFAULT_MAX_ROOM_BYTES = 1024 * 1024
DEFAULT_MAX_ADDRESS_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_SEATS_PER_IP = 200
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
REDIS_URL_ENV = "PEERCALL_REDIS_URL"
TURN_SECRET_ENV = "PEERCALL_TURN_SECRET"

_EPILOG = f"""\
The TURN secret is read from --turn-secret, else --turn-secret-file, else the
{TURN_SECRET_ENV} environment variable (prefer the file or the variable: command lines are
visible to other users). It must equal the relay's static-auth-secret (coturn or
`peercall relay --use-auth-secret`).

On start the server prints 'listening on ws://HOST:PORT' (with the real port when --port 0)
and 'ready'. SIGINT or SIGTERM stop it cleanly (exit 0); a port in use or a bad option is one
line on stderr and exit 2.

With --cert and --key the server speaks TLS (wss://); clients of a self-signed certificate
need it as their CA file.

With --redis URL (or the {REDIS_URL_ENV} variable) rooms live in Redis/Valkey: run several
servers with the same URL behind any TCP/HTTP load balancer; two callers of a room may sit on
different servers, and a server that dies loses only its sockets (clients resume elsewhere).

examples:
  peercall signal --host 0.0.0.0 --port 8765
  peercall signal --host 0.0.0.0 --cert fullchain.pem --key privkey.pem
  PEERCALL_TURN_SECRET=s3cret peercall signal --turn-uri turn:relay.example.org:3478
  peercall signal --host 0.0.0.0 --advertise --name "Kitchen PC"
  peercall signal --host 0.0.0.0 --redis redis://10.0.0.5:6379/0
"""


def _number(kind: type[int] | type[float], *, zero_ok: bool = False) -> argparse._ActionType:
    """An argparse type for a positive (or, with ``zero_ok``, non-negative) int or float."""
    noun = "whole number" if kind is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {noun}: {text!r}") from None
        if value < 0 or (value == 0 and not zero_ok):
            rule = "must not be negative" if zero_ok else "must be positive"
            raise argparse.ArgumentTypeError(f"{rule}: {text!r}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535: {text!r}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `peercall signal`'s options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    listen = parser.add_argument_group("listening")
    listen.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every "
        "IPv4 interface, :: for IPv6)",
    )
    listen.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free port and prints it)",
    )
    listen.add_argument(
        "--cert",
        metavar="FILE",
        type=Path,
        help="serve wss:// (TLS) with this PEM certificate (chain, leaf first); needs --key",
    )
    listen.add_argument(
        "--key",
        metavar="FILE",
        type=Path,
        help="the certificate's PEM private key, unencrypted (with --cert)",
    )
    listen.add_argument(
        "--redis",
        metavar="URL",
        help="share rooms with other servers through Redis/Valkey at URL (redis://host:port/db, "
        f"rediss:// for TLS; default: the {REDIS_URL_ENV} variable, else rooms in memory)",
    )
    from nat.portmap.cli import add_option

    add_option(listen)
    turn = parser.add_argument_group("TURN credentials handed to clients")
    turn.add_argument(
        "--turn-secret",
        metavar="SECRET",
        help="TURN REST shared secret (the relay's static-auth-secret); clients get "
        "'<expiry>:<peer>' usernames signed with it",
    )
    turn.add_argument(
        "--turn-secret-file",
        metavar="FILE",
        type=Path,
        help="read the TURN shared secret from the first line of FILE",
    )
    turn.add_argument(
        "--turn-uri",
        metavar="URI",
        action="append",
        default=[],
        help="a stun:/stuns:/turn:/turns: URI given to clients with the credentials "
        "(repeatable, e.g. turn:relay.example.org:3478?transport=udp); turn: URIs need a secret",
    )
    turn.add_argument(
        "--turn-ttl",
        metavar="SECONDS",
        type=_number(float),
        default=DEFAULT_TURN_TTL,
        help=f"lifetime of handed-out TURN credentials (default {DEFAULT_TURN_TTL:g})",
    )
    limits = parser.add_argument_group("limits and timeouts")
    limits.add_argument(
        "--max-message-bytes",
        metavar="N",
        type=_number(int),
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help=f"largest frame accepted (default {DEFAULT_MAX_MESSAGE_BYTES}); bigger frames get "
        "a 'too-big' error frame, frames above 4 x N close the connection (1009)",
    )
    limits.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        type=_number(float),
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"close a connection silent this long (default {DEFAULT_IDLE_TIMEOUT:g}); clients "
        "are told to ping every third of it",
    )
    limits.add_argument(
        "--ping-interval",
        metavar="SECONDS",
        type=_number(float, zero_ok=True),
        default=DEFAULT_PING_INTERVAL,
        help=f"WebSocket keepalive ping interval and timeout (default {DEFAULT_PING_INTERVAL:g}; "
        "0 disables)",
    )
    limits.add_argument(
        "--resume-grace",
        metavar="SECONDS",
        type=_number(float, zero_ok=True),
        default=DEFAULT_RESUME_GRACE,
        help="how long a disconnected peer's seat and queued messages are kept for it to "
        f"resume (default {DEFAULT_RESUME_GRACE:g})",
    )
    limits.add_argument(
        "--max-queue",
        metavar="N",
        type=_number(int),
        default=DEFAULT_MAX_QUEUE,
        help="most unacknowledged messages queued per peer; beyond it the sender gets "
        f"'queue-full' (default {DEFAULT_MAX_QUEUE})",
    )
    limits.add_argument(
        "--max-room-bytes",
        metavar="N",
        type=_number(int, zero_ok=True),
        default=DEFAULT_MAX_ROOM_BYTES,
        help="most unacknowledged bytes queued in one room (default "
        f"{DEFAULT_MAX_ROOM_BYTES}; 0 disables); beyond it the sender gets 'queue-full'",
    )
    limits.add_argument(
        "--max-address-bytes",
        metavar="N",
        type=_number(int, zero_ok=True),
        default=DEFAULT_MAX_ADDRESS_BYTES,
        help="most unacknowledged bytes queued by the clients of one IP address, dropped seats "
        f"included (default {DEFAULT_MAX_ADDRESS_BYTES}; 0 disables)",
    )
    limits.add_argument(
        "--max-seats-per-ip",
        metavar="N",
        type=_number(int, zero_ok=True),
        default=DEFAULT_MAX_SEATS_PER_IP,
        help="room seats one IP address may hold, dropped seats within their resume grace "
        f"included (default {DEFAULT_MAX_SEATS_PER_IP}; 0 disables); more get 'too-many-rooms'",
    )
    limits.add_argument(
        "--handshake-timeout",
        metavar="SECONDS",
        type=_number(float),
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        help="drop a TCP connection that has not finished its WebSocket upgrade by then "
        f"(default {DEFAULT_HANDSHAKE_TIMEOUT:g})",
    )
    limits.add_argument(
        "--rate-limit",
        metavar="FRAMES",
        type=_number(float, zero_ok=True),
        default=DEFAULT_RATE_LIMIT,
        help=f"frames per second a connection may send, sustained (default "
        f"{DEFAULT_RATE_LIMIT:g}; 0 disables); a client over it gets 'rate-limited' and is "
        "disconnected (1008)",
    )
    limits.add_argument(
        "--rate-burst",
        metavar="N",
        type=_number(int),
        default=DEFAULT_RATE_BURST,
        help="frames a connection may send back to back before --rate-limit applies (default "
        f"{DEFAULT_RATE_BURST})",
    )
    limits.add_argument(
        "--max-connections-per-ip",
        metavar="N",
        type=_number(int, zero_ok=True),
        default=DEFAULT_MAX_CONNECTIONS_PER_IP,
        help=f"open connections allowed from one IP address (default "
        f"{DEFAULT_MAX_CONNECTIONS_PER_IP}; 0 disables); more are refused with HTTP 429",
    )
    limits.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop: uvloop forwards with less CPU per frame than asyncio's own; auto "
        "(the default) uses uvloop when it is installed",
    )
    lan = parser.add_argument_group("LAN discovery (mDNS / DNS-SD)")
    lan.add_argument(
        "--advertise",
        action="store_true",
        help="announce this server on the local network as a _peercall._tcp service",
    )
    lan.add_argument(
        "--name",
        help="display name to advertise (default: this machine's host name)",
    )
    lan.add_argument(
        "--room",
        default="lobby",
        help="room name to advertise; callers who find the service join it (default lobby)",
    )
    lan.add_argument(
        "--room-secret",
        metavar="SECRET",
        help="PIN callers must type to join the advertised room; without it the advertisement "
        "publishes a random secret (an open room: anyone on the LAN may take the free seat)",
    )


def _turn_secret(args: argparse.Namespace) -> str | None:
    if args.turn_secret:
        secret: str = args.turn_secret
        return secret
    if args.turn_secret_file is not None:
        try:
            path: Path = args.turn_secret_file
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SignalingError(
                f"cannot read --turn-secret-file {str(args.turn_secret_file)!r}: "
                f"{exc.strerror or exc}"
            ) from None
        if not lines or not lines[0].strip():
            raise SignalingError(f"--turn-secret-file {str(args.turn_secret_file)!r} is empty")
        return lines[0].strip()
    from_env = os.environ.get(TURN_SECRET_ENV)
    return from_env or None


def build_server(args: argparse.Namespace) -> SignalingServer:
    """The server the options describe; raises :class:`SignalingError` for bad values."""
    from signaling.server import SignalingServer

    if (args.cert is None) != (args.key is None):
        raise SignalingError("--cert and --key go together: give both to serve wss://")
    return SignalingServer(
        args.host,
        args.port,
        turn_secret=_turn_secret(args),
        turn_uris=args.turn_uri,
        turn_ttl=args.turn_ttl,
        max_message_bytes=args.max_message_bytes,
        idle_timeout=args.idle_timeout,
        ping_interval=args.ping_interval or None,
        resume_grace=args.resume_grace,
        max_queue=args.max_queue,
        max_room_bytes=args.max_room_bytes or None,
        max_address_bytes=args.max_address_bytes or None,
        max_seats_per_ip=args.max_seats_per_ip or None,
        handshake_timeout=args.handshake_timeout,
        redis_url=args.redis or os.environ.get(REDIS_URL_ENV) or None,
        rate_limit=args.rate_limit or None,
        rate_burst=args.rate_burst,
        max_connections_per_ip=args.max_connections_per_ip or None,
        cert=args.cert,
        key=args.key,
    )


async def serve(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop."""
    import asyncio
    import secrets
    import signal

    from signaling.lan import LanAdvertiser, hostname

    server = build_server(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread / not Unix
            pass
    from nat.portmap.cli import map_signaling, unmap

    advertiser: LanAdvertiser | None = None
    upkeep: asyncio.Task[None] | None = None
    mapper = None
    try:
        files = raise_open_files_limit()
        await server.start()
        loop.set_exception_handler(server.loop_exception_handler)
        if args.map_ports:
            mapper = await map_signaling(server.port, sys.stdout)
        tune_gc()  # after start-up, so that its objects are frozen too
        upkeep = asyncio.create_task(gc_upkeep(), name="gc upkeep")
        print(f"listening on {server.url}", flush=True)
        # Each client is one file descriptor: the limit is the most clients this server holds.
        print(f"open files limit {files} (about {max(files - 64, 0)} clients)", flush=True)
        if server.redis_url:
            print(f"rooms shared through Redis at {_redacted(server.redis_url)}", flush=True)
        if server.turn_uris:
            print(
                f"handing out {'TURN REST credentials for ' if server.turn_secret else ''}"
                f"{', '.join(server.turn_uris)} (ttl {server.turn_ttl:g} s)",
                flush=True,
            )
        if args.advertise:
            secret = args.room_secret or secrets.token_urlsafe(12)
            server.reserve_room(args.room, secret)
            addresses = None if args.host in ("0.0.0.0", "::", "") else [args.host]
            advertiser = LanAdvertiser(
                args.name or hostname(),
                server.port,
                args.room,
                secret=None if args.room_secret else secret,  # a PIN is never published
                addresses=addresses,
                tls=server.ssl_context is not None,
            )
            await advertiser.start()
            print(f"advertising {advertiser.instance} (room {args.room})", flush=True)
        print("ready (Ctrl-C to stop)", flush=True)
        await stop.wait()
    finally:
        if upkeep is not None:
            upkeep.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)
        if advertiser is not None:
            await advertiser.stop()
        await server.stop()
        await unmap(mapper, sys.stdout)
    print("stopped", flush=True)
    return 0


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (often 1,024 -> 524,288); the new soft
    limit. At 1,024 a server refuses clients long before memory or CPU run short."""
    import contextlib
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # hard = unlimited: keep what we have
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _redacted(url: str) -> str:
    """``url`` without its password (it may carry one: redis://:secret@host)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def tune_gc() -> None:
    """Keep CPython's full collections out of the forwarding path of the headless server.

    A full (generation 2) collection walks every live container object: with 2,000 clients that
    is ~200,000 objects and a 110-150 ms pause on the benchmark machine, which every frame in
    flight waits out (bench/bench_signaling_load.py: it was the whole p99 tail). The objects
    created by imports and start-up are frozen (never scanned again), and a full collection
    waits for 100 generation-1 collections instead of 10: young collections still reclaim
    short-lived cycles, and steady forwarding allocates and frees in balance, so full
    collections become rare instead of following every connection ramp-up. Process-wide, so
    only the headless ``peercall signal`` does this, never the embedded server.
    """
    import gc

    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
    gc.callbacks.append(_log_long_collections)


_gc_started = (0.0, 0.0)
GC_PAUSE_LOG = 0.05


def _log_long_collections(phase: str, info: dict[str, int]) -> None:
    """Log a collection that held the server up for more than 50 ms (it is forwarding tail),
    with the CPU it used: much less CPU than wall time means the process was waiting for a
    core (a busy machine), not collecting."""
    import logging
    import time

    global _gc_started
    if phase == "start":
        _gc_started = (time.perf_counter(), time.process_time())
        return
    pause = time.perf_counter() - _gc_started[0]
    if pause > GC_PAUSE_LOG:
        logging.getLogger("signaling.gc").warning(
            "garbage collection of generation %d paused the server %.0f ms (%.0f ms of CPU)",
            info.get("generation", -1),
            pause * 1000,
            (time.process_time() - _gc_started[1]) * 1000,
        )


# Every second: what a collection walks is then at most one second's worth of new objects.
# At 5 s, a connection ramp (10,000 clients) left ~5 s of connections' objects for each
# upkeep collection: 50-110 ms of CPU per pause (bench_signaling_load.py's GC log).
GC_FREEZE_EVERY = 1.0
GC_FULL_EVERY = 3600.0


async def gc_upkeep(
    freeze_every: float = GC_FREEZE_EVERY, full_every: float = GC_FULL_EVERY
) -> None:
    """Keep full collections out of the forwarding path while clients come and stay.

    Every ``freeze_every`` s: a young collection (frees what died recently, cycles included,
    in well under a millisecond), then ``gc.freeze()`` (constant time): what survived, mostly
    the state of connections that stay for the whole call, goes to the permanent generation,
    which no automatic collection walks, so a full collection only walks what arrived in the
    last few seconds. Without it, the 10,000 connections of 5,000 rooms made each
    full collection walk ~1 M objects (100-400 ms, the whole p99 tail). Cycles that die after
    being frozen would wait forever, so once per ``full_every`` s everything is unfrozen and
    collected: one full pause an hour instead of one every few minutes.
    """
    import asyncio
    import gc
    import time

    last_full = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every)
        if time.monotonic() - last_full >= full_every:
            gc.unfreeze()
            gc.collect()
            last_full = time.monotonic()
        else:
            gc.collect(1)
        gc.freeze()


def run(args: argparse.Namespace) -> int:
    import asyncio

    try:
        if args.event_loop != "asyncio":
            try:
                import uvloop
            except ImportError:
                if args.event_loop == "uvloop":
                    raise SignalingError("--event-loop uvloop: uvloop is not installed") from None
            else:
                return uvloop.run(serve(args))
        return asyncio.run(serve(args))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        print("stopped", file=sys.stderr)
        return 0
