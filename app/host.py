"""``peercall host``: be the server for one call across the internet, and hand out one link.

:class:`CallHost` starts the signaling server and the TURN relay together, asks the home
router to forward their ports (:mod:`nat.portmap`), learns the public address (from the
router, else from STUN), reserves a room with a random secret and builds the link. The
relay hands out only short-lived TURN REST credentials (through the signaling server, on
join), keeps its peer deny list, and the mappings exist only while hosting. The window's
"Host a call" dialog drives the same class.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from app.errors import ConfigError
from app.link import CallLink

logger = logging.getLogger(__name__)

DEFAULT_SIGNALING_PORT = 8765
DEFAULT_TURN_PORT = 3478
# Small on purpose: every relay port is one router forwarding; two per call leg is plenty.
DEFAULT_RELAY_PORTS = (49160, 49175)
CREDENTIAL_TTL = 3600.0  # TURN REST credentials handed out on join live one hour
OWN_USER = "host"  # the relay's one long-term user: the host's own app

VISIBILITY_WARNING = (
    "Your friend will see your public IP address {address} (as in any direct call); share "
    "the link only with the person you want to call."
)


@dataclass(frozen=True)
class HostOptions:
    """What to host and how; defaults suit a home computer behind one router."""

    listen: str = "0.0.0.0"
    signaling_port: int = DEFAULT_SIGNALING_PORT
    turn_port: int = DEFAULT_TURN_PORT
    min_port: int = DEFAULT_RELAY_PORTS[0]
    max_port: int = DEFAULT_RELAY_PORTS[1]
    map_ports: bool = True
    methods: Sequence[str] = ("pcp", "natpmp", "upnp")
    public_address: str = ""  # skip discovery: use this in the link and as the relay's external-ip
    stun_servers: Sequence[tuple[str, int]] = ()  # fallback when the router does not say
    allowed_peer_ips: Sequence[str] = ()  # relay allowed-peer-ip (lab ranges); deny list stays
    room: str = ""  # random when empty
    cert: str | None = None
    key: str | None = None
    mapping_lifetime: int = 3600

    def __post_init__(self) -> None:
        if self.min_port > self.max_port:
            raise ConfigError(f"relay ports: {self.min_port} is above {self.max_port}")
        if self.max_port - self.min_port > 255:
            raise ConfigError(
                "relay ports: at most 256 (each one is a router forwarding), "
                f"not {self.max_port - self.min_port + 1}"
            )
        if self.public_address:
            try:
                ipaddress.ip_address(self.public_address)
            except ValueError:
                raise ConfigError(
                    f"--public-address {self.public_address!r} is not an IP address"
                ) from None


@dataclass
class HostStatus:
    """What the CLI prints and the dialog shows once hosting."""

    link: CallLink
    local_link: CallLink  # for the host's own app (this machine)
    address_source: str  # "router", "STUN", "given", "LAN only"
    mapping_line: str
    warnings: list[str] = field(default_factory=list)
    turn_uris: tuple[str, ...] = ()
    own_ice_server: str = ""  # USER:PASS@turn:… for the host's own app (reachable from here)


def ip_range(text: str) -> tuple[Any, Any]:
    """``A`` or ``A-B`` as the relay's (low, high) pair, as coturn's allowed-peer-ip reads it."""
    low, _, high = text.partition("-")
    try:
        return ipaddress.ip_address(low.strip()), ipaddress.ip_address((high or low).strip())
    except ValueError:
        raise ConfigError(f"--allowed-peer-ip {text!r}: expected an IP or a range A-B") from None


def _first_lan_address(gateway_hint: str | None = None) -> str:
    from nat.portmap.address import default_gateway, local_address_towards

    gateway = gateway_hint or default_gateway()
    if gateway:
        try:
            return local_address_towards(gateway)
        except OSError:
            pass
    return "127.0.0.1"


class CallHost:
    """Signaling + relay + port mapping + one room, started and stopped together."""

    def __init__(
        self,
        options: HostOptions,
        *,
        on_mapping: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.on_mapping = on_mapping
        self.turn_secret = secrets.token_urlsafe(24)
        self.room = options.room or secrets.token_urlsafe(8).replace("-", "x").replace("_", "y")
        self.room_secret = secrets.token_urlsafe(18)  # 144 bits: not guessable
        # The host's own app cannot reach turn:PUBLIC-IP from inside its router (no hairpin
        # NAT in most homes) and would wait out its gather timeout on it; it gets its own
        # long-term user on the relay at this machine's address, listed before the offered one.
        self.own_password = secrets.token_urlsafe(18)
        self.mapper: Any = None
        self.relay: Any = None
        self.signaling: Any = None
        self.status: HostStatus | None = None

    def _mapping_changed(self, state: Any) -> None:
        if self.on_mapping is not None:
            self.on_mapping(state.line())

    async def start(self) -> HostStatus:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> HostStatus:
        from nat.auth import long_term_key
        from nat.config import RelayConfig
        from nat.portmap import PortMapper, ports_for_hosting
        from nat.portmap.stunaddr import first_public_address
        from nat.service import RelayServer
        from signaling.server import SignalingServer

        opts = self.options
        # 1. Signaling first: a port already in use fails before the router is touched.
        signaling = SignalingServer(
            opts.listen,
            opts.signaling_port,
            turn_secret=self.turn_secret,
            turn_uris=(),  # set below, once the public address is known
            turn_ttl=CREDENTIAL_TTL,
            cert=opts.cert,
            key=opts.key,
        )
        await signaling.start()
        self.signaling = signaling
        signaling.reserve_room(self.room, self.room_secret)
        signaling_port = int(signaling.port)

        # 2. Router forwarding for TURN (UDP+TCP), each relay port, signaling (TCP).
        mapping_line = "port mapping: off"
        public = opts.public_address
        source = "given" if public else ""
        external_signaling = signaling_port
        external_turn = opts.turn_port
        gateway: str | None = None
        if opts.map_ports:
            self.mapper = PortMapper(
                ports_for_hosting(
                    turn_port=opts.turn_port,
                    relay_ports=range(opts.min_port, opts.max_port + 1),
                    signaling_port=signaling_port,
                ),
                methods=opts.methods,
                lifetime=opts.mapping_lifetime,
                on_state=self._mapping_changed,
            )
            state = await self.mapper.start()
            mapping_line = state.line()
            gateway = state.gateway or None
            if state.status in ("mapped", "partial"):
                external_signaling = state.external_port("TCP", signaling_port) or signaling_port
                external_turn = state.external_port("UDP", opts.turn_port) or opts.turn_port
                if not public and state.external_ip:
                    public, source = state.external_ip, "router"
        # 3. Public address, else STUN against the configured servers, else LAN only.
        if not public and opts.stun_servers:
            found = await first_public_address(list(opts.stun_servers))
            if found:
                public, source = found, "STUN"
        warnings: list[str] = []
        wildcard = opts.listen in ("0.0.0.0", "::", "")
        lan = _first_lan_address(gateway) if wildcard else opts.listen
        if not public:
            public, source = lan, "LAN only"
            warnings.append(
                "Only computers on your network can use this link: the router forwarded "
                "nothing and no public address was found."
            )
        elif source == "STUN" and (not self.mapper or self.mapper.state.status == "failed"):
            warnings.append(
                f"Your public address {public} is known from STUN, but the router forwards "
                "nothing: a friend outside can only reach you if your router allows it."
            )
        # 4. The relay advertises the public address in its allocations (external-ip).
        external_ip = public if public not in ("127.0.0.1", "::1") else None
        relay = RelayServer(
            RelayConfig(
                listening_ips=(opts.listen,),
                listening_port=opts.turn_port,
                min_port=opts.min_port,
                max_port=opts.max_port,
                external_ip=external_ip,
                use_auth_secret=True,
                static_auth_secrets=(self.turn_secret,),
                users=((OWN_USER, long_term_key(OWN_USER, "peercall", self.own_password)),),
                realm="peercall",
                # The deny list stays (no door into the host's LAN) except for this very
                # computer: a friend on the relay must reach the host's own app, whose LAN
                # address is private (RFC 1918) in any home.
                allowed_peer_ips=(
                    *(ip_range(r) for r in opts.allowed_peer_ips),
                    *((ip_range(lan),) if lan not in ("127.0.0.1", "::1") else ()),
                ),
            )
        )
        await relay.start()
        self.relay = relay
        turn_host = f"[{public}]" if ":" in public else public
        # Both sides get the configured STUN servers too: with one outside the host's router
        # the host learns its own server-reflexive address (its relay, behind the same
        # router, cannot tell it without hairpin NAT), so two cone NATs can go direct.
        stun_uris = tuple(f"stun:{f'[{h}]' if ':' in h else h}:{p}" for h, p in opts.stun_servers)
        signaling.turn_uris = (
            *stun_uris,
            f"turn:{turn_host}:{external_turn}?transport=udp",
            f"turn:{turn_host}:{external_turn}?transport=tcp",
        )
        tls = opts.cert is not None
        link = CallLink(public, external_signaling, self.room, self.room_secret, tls)
        local_host = "127.0.0.1" if wildcard else opts.listen
        local_link = CallLink(local_host, signaling_port, self.room, self.room_secret, tls)
        own_turn = f"[{local_host}]" if ":" in local_host else local_host
        own_ice = f"{OWN_USER}:{self.own_password}@turn:{own_turn}:{opts.turn_port}?transport=udp"
        if source != "LAN only":
            warnings.append(VISIBILITY_WARNING.format(address=public))
        self.status = HostStatus(
            link,
            local_link,
            source,
            mapping_line,
            warnings,
            tuple(signaling.turn_uris),
            own_ice,
        )
        return self.status

    async def stop(self) -> None:
        """Delete the router's forwardings, stop relay and signaling. Idempotent."""
        mapper, self.mapper = self.mapper, None
        relay, self.relay = self.relay, None
        signaling, self.signaling = self.signaling, None
        if mapper is not None:
            await mapper.stop()
        if relay is not None:
            await relay.stop()
        if signaling is not None:
            await signaling.stop()


# --- the command ------------------------------------------------------------------------

_EPILOG = """\
Starts the signaling server and the TURN relay, asks the home router to forward their ports
(PCP, NAT-PMP, then UPnP-IGD), reserves a room with a random secret and prints ONE link to
send your friend by any chat (and a QR code). The friend runs `peercall open LINK` (or clicks
it, or opens the https:// form in a browser) and gets short-lived relay credentials from this
server with nothing to type. Ctrl-C removes the router's forwardings and stops everything.

examples:
  peercall host
  peercall host --no-map-ports --public-address 203.0.113.7
  peercall host --stun stun.example.org:3478
"""


def _port(text: str, low: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not low <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535: {text!r}")
    return value


def _hostport(text: str) -> tuple[str, int]:
    text = text.removeprefix("stun:")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return text.strip("[]"), 3478
    return host.strip("[]"), _port(port)


def _methods(text: str) -> list[str]:
    from nat.portmap.mapper import METHODS

    methods = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise argparse.ArgumentTypeError(
            f"methods are a comma list of {', '.join(METHODS)}, not {text!r}"
        )
    return methods


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("--listen", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    parser.add_argument(
        "--port",
        type=lambda text: _port(text, 0),
        default=DEFAULT_SIGNALING_PORT,
        help=f"signaling port (TCP, default {DEFAULT_SIGNALING_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--turn-port",
        type=_port,
        default=DEFAULT_TURN_PORT,
        help=f"TURN port (UDP and TCP, default {DEFAULT_TURN_PORT})",
    )
    parser.add_argument(
        "--relay-ports",
        metavar="MIN-MAX",
        default=f"{DEFAULT_RELAY_PORTS[0]}-{DEFAULT_RELAY_PORTS[1]}",
        help="UDP ports the relay hands out, each forwarded by the router (default "
        f"{DEFAULT_RELAY_PORTS[0]}-{DEFAULT_RELAY_PORTS[1]}: 8 calls' worth)",
    )
    parser.add_argument(
        "--map-ports",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask the router to forward the ports while hosting (default on)",
    )
    parser.add_argument(
        "--map-methods",
        type=_methods,
        default=["pcp", "natpmp", "upnp"],
        help="port mapping protocols to try, in order (default pcp,natpmp,upnp)",
    )
    parser.add_argument(
        "--public-address",
        default="",
        help="the address friends reach you at, when you know it (skips router and STUN)",
    )
    parser.add_argument(
        "--stun",
        type=_hostport,
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="STUN server to learn the public address from when the router does not say",
    )
    parser.add_argument(
        "--allowed-peer-ip",
        action="append",
        default=[],
        metavar="IP|A-B",
        help="let the relay reach this range despite its deny list (test labs)",
    )
    parser.add_argument("--room", default="", help="room name (default: random)")
    parser.add_argument("--cert", help="serve wss:// and https:// with this PEM certificate")
    parser.add_argument("--key", help="the certificate's private key (with --cert)")
    parser.add_argument("--no-qr", action="store_true", help="do not print the QR code of the link")


def _relay_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise ConfigError(f"--relay-ports {text!r}: expected MIN-MAX, e.g. 49160-49175") from None
    if not (1024 <= lo <= 65535 and 1024 <= hi <= 65535):
        raise ConfigError(f"--relay-ports {text!r}: ports must be 1024-65535")
    return lo, hi


def options_from_args(args: argparse.Namespace) -> HostOptions:
    if (args.cert is None) != (args.key is None):
        raise ConfigError("--cert and --key go together")
    lo, hi = _relay_range(args.relay_ports)
    return HostOptions(
        listen=args.listen,
        signaling_port=args.port,
        turn_port=args.turn_port,
        min_port=lo,
        max_port=hi,
        map_ports=args.map_ports,
        methods=tuple(args.map_methods),
        public_address=args.public_address,
        stun_servers=tuple(args.stun),
        allowed_peer_ips=tuple(args.allowed_peer_ip),
        room=args.room,
        cert=args.cert,
        key=args.key,
    )


def qr_text(data: str) -> str:
    """The link as a terminal QR code (segno), for a phone camera."""
    import io

    import segno

    out = io.StringIO()
    segno.make(data, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def print_status(status: HostStatus, out: TextIO, *, qr: bool = True) -> None:
    print(status.mapping_line, file=out)
    print(f"public address: {status.link.host} ({status.address_source})", file=out)
    for uri in status.turn_uris:
        print(f"relay: {uri} (credentials are handed out on join)", file=out)
    print(f"link: {status.link.app_url()}", file=out)
    print(f"browser link: {status.link.browser_url()}", file=out)
    if qr:
        print(qr_text(status.link.app_url()), file=out, end="")
    for warning in status.warnings:
        print(f"note: {warning}", file=out)
    local = status.local_link
    print(
        f"join it yourself: peercall call --server {local.signaling_url} --room {local.room} "
        # "--secret=": a random secret may begin with "-", which argparse would take for an option.
        f"--secret={local.secret} --answer --ice-server {status.own_ice_server}",
        file=out,
    )


async def serve(
    options: HostOptions, out: TextIO, stop: asyncio.Event | None = None, *, qr: bool = True
) -> int:
    """Host until SIGINT/SIGTERM (or ``stop``), then remove the forwardings and stop."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):
            pass
    host = CallHost(options)
    try:
        print("hosting: starting signaling and relay, asking the router for ports…", file=out)
        out.flush()
        status = await host.start()
        print_status(status, out, qr=qr)
        print("ready (Ctrl-C to stop hosting)", file=out, flush=True)
        await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await host.stop()
        if host.status is not None and options.map_ports:
            print("port mapping: stopped, the router's forwardings were removed", file=out)
    print("stopped", file=out, flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(serve(options_from_args(args), sys.stdout, qr=not args.no_qr))
