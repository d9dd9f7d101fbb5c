"""Run PeerCall's STUN/TURN relay headless: a small-group replacement for coturn.

Options have coturn's names and meanings, and -c reads coturn's turnserver.conf syntax, so a
deployment can switch between coturn and PeerCall without rewriting its configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any, TextIO

from nat.conffile import SETTINGS, NoticeKind, Setting, Settings, parse_conffile
from nat.config import RelayConfig
from nat.errors import ConfigError

logger = logging.getLogger(__name__)

# Which help section each coturn key is listed under, in this order.
_GROUPS: dict[str, tuple[str, ...]] = {
    "listeners": (
        "listening-ip",
        "listening-port",
        "tls-listening-port",
        "cert",
        "pkey",
        "no-udp",
        "no-tcp",
        "no-tls",
    ),
    "relay addresses": (
        "relay-ip",
        "external-ip",
        "min-port",
        "max-port",
        "no-udp-relay",
        "no-tcp-relay",
    ),
    "credentials": (
        "realm",
        "lt-cred-mech",
        "user",
        "use-auth-secret",
        "static-auth-secret",
    ),
    "peer policy (who may be relayed to)": (
        "allow-loopback-peers",
        "allowed-peer-ip",
        "denied-peer-ip",
        "no-multicast-peers",
    ),
    "limits and lifetimes": (
        "user-quota",
        "total-quota",
        "max-bps",
        "max-allocate-lifetime",
        "max-allocate-timeout",
        "channel-lifetime",
        "permission-lifetime",
        "stale-nonce",
    ),
    "protocol and logging": ("fingerprint", "server-name", "verbose", "Verbose"),
}

_EPILOG = """\
Every option also works as a line of the config file (-c), with the same name and meaning as
coturn's turnserver.conf: 'key=value', 'key value' or a bare flag. An option on the command line
replaces the file's value for that key (a repeatable option given on the command line replaces
the file's whole list). Flags accept an optional on/off value, e.g. --fingerprint=off.

Unknown keys and coturn keys PeerCall does not implement are reported with their line and
ignored (--strict makes them errors). TURN REST API credentials (--use-auth-secret) are the
same as coturn's: username '<expiry>:<name>', password base64(HMAC-SHA1(secret, username)).
The expiry is checked when a credential creates an allocation; the allocation it made can still
be refreshed after it (a call does not drop at the TTL), as with coturn.

examples:
  peercall relay --listening-ip 0.0.0.0 --external-ip 203.0.113.7 --user alice:secret
  peercall relay -c /etc/turnserver.conf --strict
  peercall relay --use-auth-secret --static-auth-secret s3cret --print-credentials
"""

DEFAULT_CREDENTIAL_TTL = 86400


def _dest(setting: Setting) -> str:
    return "relay_" + setting.key.replace("-", "_")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add `peercall relay`'s options: coturn's names, one per RelayConfig field."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    general = parser.add_argument_group("configuration")
    general.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="read options from FILE, in coturn's turnserver.conf syntax (no file is read "
        "unless given)",
    )
    general.add_argument(
        "--strict",
        action="store_true",
        help="treat unknown or unsupported keys in the config file as errors",
    )
    general.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration, print the resulting settings and exit",
    )
    general.add_argument(
        "--event-loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop of the headless relay: uvloop spends about a fifth less CPU per "
        "relayed message than asyncio's own; auto (the default) uses uvloop when installed",
    )
    from nat.portmap.cli import add_option

    add_option(general)
    general.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="relay worker processes sharing the listening ports (SO_REUSEPORT; each client "
        "stays on one worker, quotas are counted across all of them); default: one per core "
        "(like coturn's relay threads); 1 serves in this single process",
    )
    general.add_argument(
        "-n",
        dest="relay_no_conf",
        action="store_true",
        help="accepted for coturn compatibility: a config file is only read with -c",
    )
    creds = parser.add_argument_group("TURN REST credentials")
    creds.add_argument(
        "--print-credentials",
        action="store_true",
        help="print a fresh TURN REST username and password signed with the first "
        "--static-auth-secret, with the turn: URIs, and exit",
    )
    creds.add_argument(
        "--credential-user",
        metavar="NAME",
        default="peercall",
        help="name part of the REST username printed by --print-credentials (default peercall)",
    )
    creds.add_argument(
        "--credential-ttl",
        metavar="SECONDS",
        type=int,
        default=DEFAULT_CREDENTIAL_TTL,
        help=f"lifetime of the printed credential (default {DEFAULT_CREDENTIAL_TTL})",
    )
    by_key = {s.key: s for s in SETTINGS}
    grouped = [key for keys in _GROUPS.values() for key in keys]
    missing = set(by_key) - set(grouped)
    assert not missing, f"keys without a help section: {sorted(missing)}"
    for title, keys in _GROUPS.items():
        group = parser.add_argument_group(title)
        for key in keys:
            setting = by_key[key]
            names = [*([setting.short] if setting.short else []), f"--{key}"]
            if setting.flag:
                group.add_argument(
                    *names,
                    dest=_dest(setting),
                    nargs="?",
                    const="",
                    metavar="on|off" if not setting.bare else "SECONDS",
                    help=setting.help,
                )
            else:
                group.add_argument(
                    *names,
                    dest=_dest(setting),
                    action="append" if setting.repeatable else "store",
                    metavar=setting.metavar or "VALUE",
                    help=setting.help,
                )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The coturn options given on the command line, through the config file's converters."""
    settings = Settings()
    for setting in SETTINGS:
        value = getattr(args, _dest(setting), None)
        if value is None:
            continue
        for raw in value if isinstance(value, list) else [value]:
            settings.add(setting.key, raw or None, "command line")
    return settings


def build_config(args: argparse.Namespace, err: TextIO = sys.stderr) -> RelayConfig:
    """RelayConfig from ``-c FILE`` (if any) overridden by the options; notices go to ``err``."""
    settings = Settings()
    if args.config is not None:
        settings = parse_conffile(args.config, strict=args.strict)
    settings = settings.merged(settings_from_args(args))
    for notice in settings.notices:
        label = "note" if notice.kind is NoticeKind.NO_EFFECT else "warning"
        print(f"peercall: {label}: {notice}", file=err)
    return settings.to_config()


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def planned_uris(config: RelayConfig, port: int | None = None) -> list[str]:
    """The turn: URIs clients should use (RFC 7065), before or after binding."""
    hosts = [config.external_ip] if config.external_ip else list(config.listening_ips)
    port = config.listening_port if port is None else port
    uris: list[str] = []
    for host in hosts:
        if host in ("0.0.0.0", "::"):
            continue
        if not config.no_udp:
            uris.append(f"turn:{_hostport(host, port)}?transport=udp")
        if not config.no_tcp:
            uris.append(f"turn:{_hostport(host, port)}?transport=tcp")
        if config.tls_enabled:
            uris.append(f"turns:{_hostport(host, config.tls_listening_port)}?transport=tcp")
    return uris


def print_credentials(args: argparse.Namespace, config: RelayConfig, out: TextIO) -> int:
    """Print a time-limited TURN REST credential for the first static-auth-secret."""
    from nat.auth import rest_credentials

    if not config.static_auth_secrets:
        raise ConfigError("--print-credentials needs a static-auth-secret")
    if not config.use_auth_secret:
        print(
            "peercall: warning: use-auth-secret is off: the relay will not accept this "
            "credential until it is turned on",
            file=sys.stderr,
        )
    if args.credential_ttl <= 0:
        raise ConfigError(f"--credential-ttl: {args.credential_ttl} must be more than 0 seconds")
    username, password = rest_credentials(
        config.static_auth_secrets[0], args.credential_user, args.credential_ttl, time.time()
    )
    print(f"username: {username}", file=out)
    print(f"password: {password}", file=out)
    print(f"ttl: {args.credential_ttl}", file=out)
    for uri in planned_uris(config):
        print(f"uri: {uri}", file=out)
    return 0


def describe(config: RelayConfig) -> list[str]:
    """A short human summary of the effective settings (no secrets)."""
    lines = [
        f"realm {config.realm}; {len(config.users)} long-term user(s); REST API "
        f"{'on' if config.use_auth_secret else 'off'} "
        f"({len(config.static_auth_secrets)} secret(s))",
        f"relay ports {config.min_port}-{config.max_port}"
        + (f"; advertised as {config.external_ip}" if config.external_ip else ""),
        f"quotas: {config.user_quota or 'unlimited'} per user, {config.total_quota or 'unlimited'}"
        f" total; max-bps {config.max_bps or 'unlimited'}",
        "peers: loopback "
        + ("allowed" if config.allow_loopback_peers else "denied")
        + f", {len(config.allowed_peer_ips)} allowed range(s), "
        f"{len(config.denied_peer_ips)} denied range(s)",
    ]
    if not config.users and not config.use_auth_secret:
        lines.append("no credentials configured: every allocation will be refused (401)")
    return lines


async def serve(
    config: RelayConfig, out: TextIO, stop: asyncio.Event | None = None, map_ports: bool = False
) -> int:
    """Run the relay until SIGINT/SIGTERM (or ``stop`` is set), then stop it cleanly."""
    from nat.portmap.cli import map_relay, unmap
    from nat.service import RelayServer

    mapper = None
    if map_ports:  # before the server exists: the router's address becomes its external-ip
        config, mapper = await map_relay(config, out)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    server = RelayServer(config)
    await server.start()
    installed: list[signal.Signals] = []
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
                installed.append(signum)
            except (NotImplementedError, RuntimeError):  # not the main thread / not Unix
                pass
        for transport, host, port in server.addresses:
            print(f"listening on {transport} {_hostport(host, port)}", file=out)
        for uri in server.turn_uris():
            print(f"uri: {uri}", file=out)
        for line in describe(config):
            print(line, file=out)
        print("relay ready (Ctrl-C to stop)", file=out, flush=True)
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await server.stop()
        await unmap(mapper, out)
    stats = server.stats()
    print(
        f"relay stopped: {stats.stun_requests} STUN requests, {stats.relayed_packets} packets "
        f"({stats.relayed_bytes} bytes) relayed, {stats.errors} errors",
        file=out,
        flush=True,
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """`peercall relay`: build the config, then check it, print credentials, or serve."""
    config = build_config(args)
    if config.verbose:
        logging.getLogger("nat").setLevel(logging.INFO)
    if args.print_credentials:
        return print_credentials(args, config, sys.stdout)
    if args.check_config:
        for line in describe(config):
            print(line)
        for uri in planned_uris(config):
            print(f"uri: {uri}")
        print("configuration OK")
        return 0
    workers = _workers(args)
    if workers > 1 and args.map_ports:
        # The router mapping lives on the relay's event loop and renews there: one process.
        print("peercall: note: --map-ports serves in one process (--workers 1)", file=sys.stderr)
        workers = 1
    if workers > 1:
        from nat.workers import serve_workers

        if args.event_loop == "uvloop":  # say so before forking, not once per worker
            try:
                import uvloop  # noqa: F401
            except ImportError as exc:
                raise ConfigError("--event-loop uvloop: uvloop is not installed") from exc

        return serve_workers(
            config,
            workers,
            sys.stdout,
            lambda main: _run_loop(main, args.event_loop),
            describe,
        )
    return _run_loop(serve(config, sys.stdout, map_ports=args.map_ports), args.event_loop)


def _workers(args: argparse.Namespace) -> int:
    """``--workers``, or one per core (checked: a user mistake is one line)."""
    if args.workers is None:
        from nat.workers import default_workers

        return default_workers()
    if args.workers < 1:
        raise ConfigError(f"--workers: {args.workers} must be at least 1")
    return int(args.workers)


def _run_loop(main: Coroutine[Any, Any, int], choice: str) -> int:
    """Run ``main`` on uvloop or asyncio's own loop, as ``--event-loop`` asks."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError as exc:
            if choice == "uvloop":
                main.close()  # never awaited: without this Python warns on stderr at exit
                raise ConfigError("--event-loop uvloop: uvloop is not installed") from exc
        else:
            return uvloop.run(main)
    return asyncio.run(main)
