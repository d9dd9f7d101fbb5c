"""ICE server URIs (RFC 7064 ``stun:``/``stuns:``, RFC 7065 ``turn:``/``turns:``) and entries.

Parsing is strict and reports the first problem in one line, because these strings are typed by
people into a settings dialog or a command line and a silent misparse shows up much later as a
call that "just doesn't connect".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.errors import ConfigError

Scheme = Literal["stun", "stuns", "turn", "turns"]

# RFC 7064 §3.3 / RFC 7065 §3.3: 3478 for plain, 5349 for the TLS schemes.
DEFAULT_PORTS: dict[str, int] = {"stun": 3478, "turn": 3478, "stuns": 5349, "turns": 5349}

# RFC 3986 reg-name restricted to what resolves in DNS (letters, digits, '-', '.').
_REG_NAME = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.?$"
)


@dataclass(frozen=True)
class IceUri:
    """A parsed STUN or TURN URI; ``str(uri)`` gives the canonical form."""

    scheme: Scheme
    host: str  # an IPv6 literal is stored without brackets
    port: int
    transport: Literal["udp", "tcp"] | None = None  # only for turn/turns

    @property
    def is_turn(self) -> bool:
        return self.scheme in ("turn", "turns")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{self.scheme}:{host}:{self.port}"
        if self.transport is not None:
            text += f"?transport={self.transport}"
        return text


def _parse_host(text: str, uri: str) -> tuple[str, str]:
    """Split ``host[:port]`` into (host, rest-after-host)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"ICE server {uri!r}: missing ']' after the IPv6 address")
        host = text[1:end]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"ICE server {uri!r}: {host!r} is not an IPv6 address") from None
        return host, text[end + 1 :]
    host, sep, rest = text.partition(":")
    if not host:
        raise ConfigError(f"ICE server {uri!r}: missing host")
    if not _REG_NAME.match(host):
        raise ConfigError(f"ICE server {uri!r}: {host!r} is not a valid host name or IPv4 address")
    return host, sep + rest


def parse_ice_uri(text: str) -> IceUri:
    """Parse a STUN or TURN URI; raises ConfigError naming the first problem."""
    uri = text.strip()
    scheme_text, sep, rest = uri.partition(":")
    scheme = scheme_text.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ConfigError(
            f"ICE server {uri!r}: must start with stun:, stuns:, turn: or turns: (RFC 7064/7065)"
        )
    if rest.startswith("//"):
        raise ConfigError(f"ICE server {uri!r}: no '//' after '{scheme}:' (write {scheme}:host)")
    rest, qsep, query = rest.partition("?")
    host, after = _parse_host(rest, uri)
    port = DEFAULT_PORTS[scheme]
    if after:
        port_text = after[1:]
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"ICE server {uri!r}: port {port_text!r} is not a number 1-65535")
        port = int(port_text)
    transport: Literal["udp", "tcp"] | None = None
    if qsep:
        if scheme in ("stun", "stuns"):
            raise ConfigError(f"ICE server {uri!r}: {scheme}: URIs take no '?' parameters")
        key, _, value = query.partition("=")
        if key != "transport" or value.lower() not in ("udp", "tcp"):
            raise ConfigError(
                f"ICE server {uri!r}: the only parameter is ?transport=udp or ?transport=tcp"
            )
        transport = "udp" if value.lower() == "udp" else "tcp"
    return IceUri(scheme, host, port, transport)  # type: ignore[arg-type]


@dataclass(frozen=True)
class IceServer:
    """One entry of ``RTCConfiguration.iceServers``: URLs sharing one set of credentials."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None
    # Where the entry came from, for the debug panel: typed by the user, or handed out by the
    # signaling server on join (short-lived TURN REST credentials). Not part of equality.
    origin: Literal["user", "signaling server"] = field(default="user", compare=False)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ConfigError("ICE server entry has no URL")
        parsed = [parse_ice_uri(u) for u in self.urls]
        if any(p.is_turn for p in parsed) and (not self.username or self.credential is None):
            raise ConfigError(
                f"ICE server {self.urls[0]!r}: TURN needs a username and a credential"
            )

    @property
    def uris(self) -> tuple[IceUri, ...]:
        return tuple(parse_ice_uri(u) for u in self.urls)

    @classmethod
    def from_spec(cls, spec: str) -> IceServer:
        """Parse the command-line form ``URI`` or ``USER:PASSWORD@URI`` (password may hold ':')."""
        creds, at, uri = spec.rpartition("@")
        if not at:
            return cls((spec,))
        user, colon, password = creds.partition(":")
        if not colon or not user:
            raise ConfigError(f"ICE server {spec!r}: credentials must be USER:PASSWORD@URI")
        return cls((uri,), user, password)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], origin: Literal["user", "signaling server"] = "user"
    ) -> IceServer:
        """An RTCIceServer-shaped dict (``urls`` a string or list, ``username``, ``credential``)."""
        urls = data.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ConfigError(f"ICE server entry {dict(data)!r}: 'urls' is not a list of URIs")
        username, credential = data.get("username"), data.get("credential")
        if username is not None and not isinstance(username, str):
            raise ConfigError(f"ICE server {urls[0]!r}: username is not a string")
        if credential is not None and not isinstance(credential, str):
            raise ConfigError(f"ICE server {urls[0]!r}: credential is not a string")
        return cls(tuple(urls), username, credential, origin)


def merge_ice_servers(
    user: Iterable[IceServer], offered: Iterable[IceServer]
) -> tuple[IceServer, ...]:
    """The user's servers, then the offered ones, without repeating a URI with the same
    credentials (a user who also typed the server's relay must not query it twice)."""
    seen: set[tuple[str, str | None, str | None]] = set()
    merged: list[IceServer] = []
    for server in [*user, *offered]:
        urls = tuple(u for u in server.urls if (u, server.username, server.credential) not in seen)
        if not urls:
            continue
        seen.update((u, server.username, server.credential) for u in urls)
        merged.append(server if urls == server.urls else _with_urls(server, urls))
    return tuple(merged)


def _with_urls(server: IceServer, urls: tuple[str, ...]) -> IceServer:
    return IceServer(urls, server.username, server.credential, server.origin)
