"""The one link a host sends to a friend: where the signaling server is, the room, its secret.

Two spellings of the same thing:

- ``peercall://HOST:PORT/ROOM#secret=SECRET`` for the desktop app (``peercall open LINK``, or
  the ``x-scheme-handler/peercall`` handler of the .desktop file); ``&tls=1`` in the fragment
  when the server speaks wss://;
- ``https://HOST:PORT/#room=ROOM&secret=SECRET`` for the browser page the signaling server
  serves (``http://`` when it has no certificate: browsers then allow the microphone only on
  localhost, so a real friend needs the host to run with ``--cert``/``--key``).

The secret travels in the fragment, which browsers never send to the server in a request.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

from app.errors import ConfigError

SCHEME = "peercall"
_ROOM_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")  # signaling.ws_protocol.ROOM_RE


def _host_text(host: str) -> str:
    try:
        return (
            f"[{host}]" if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address) else host
        )
    except ValueError:
        return host


@dataclass(frozen=True)
class CallLink:
    """A hosted call: signaling at ``host:port``, ``room`` guarded by ``secret``."""

    host: str
    port: int
    room: str
    secret: str
    tls: bool = False

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("the link has no host")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"the link's port {self.port} is not 1-65535")
        if not _ROOM_RE.fullmatch(self.room):
            raise ConfigError(
                f"the link's room {self.room!r} must be 1-64 characters of A-Z a-z 0-9 . _ ~ -"
            )
        if not self.secret:
            raise ConfigError("the link has no secret (the part after #secret=)")

    @property
    def signaling_url(self) -> str:
        """What ``peercall call --server`` takes."""
        return f"{'wss' if self.tls else 'ws'}://{_host_text(self.host)}:{self.port}"

    def app_url(self) -> str:
        fragment = f"secret={quote(self.secret, safe='')}" + ("&tls=1" if self.tls else "")
        return f"{SCHEME}://{_host_text(self.host)}:{self.port}/{self.room}#{fragment}"

    def browser_url(self) -> str:
        """The browser page's link (signaling.web builds it: one format for both)."""
        from signaling.web import call_link

        return call_link(self.signaling_url, self.room, self.secret)

    def with_host(self, host: str, port: int | None = None) -> CallLink:
        return CallLink(host, self.port if port is None else port, self.room, self.secret, self.tls)


def parse_link(text: str) -> CallLink:
    """A :class:`CallLink` from either spelling; :class:`ConfigError` names what is wrong."""
    text = text.strip().strip("<>\"'")
    if not text:
        raise ConfigError("empty link: paste the whole peercall://… or https://… link")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in (SCHEME, "http", "https"):
        raise ConfigError(
            f"not a PeerCall link: {text[:60]!r} (it should start with peercall:// or https://)"
        )
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(
            f"the link's port is not a number from 1 to 65535: {parts.netloc!r}"
        ) from None
    if not host:
        raise ConfigError(f"the link has no host: {text[:60]!r}")
    fragment = parse_qs(parts.fragment, keep_blank_values=True)

    def one(name: str) -> str:
        values = fragment.get(name, [])
        return values[0] if values else ""

    if scheme == SCHEME:
        room = unquote(parts.path.strip("/"))
        tls = one("tls") in ("1", "true", "yes")
        default_port = 8765
    else:
        room = one("room")
        tls = scheme == "https"
        default_port = 443 if tls else 80
    if not room:
        raise ConfigError("the link names no room (cut off when it was copied?)")
    if not one("secret"):
        raise ConfigError("the link has no secret (cut off when it was copied?)")
    return CallLink(host, port or default_port, room, one("secret"), tls)
