"""Read coturn's ``turnserver.conf`` syntax into a :class:`nat.config.RelayConfig`.

The same keys mean the same thing as in coturn, so a deployment can move between coturn and
``peercall relay`` by swapping the binary, not the config. Syntax, as coturn's own reader:

* one option per line: ``key=value``, ``key value`` or a bare ``key`` (a flag); a leading ``--``
  on the key is tolerated; a value in double quotes has them stripped;
* lines whose first non-blank character is ``#`` are comments (a ``#`` later in a line is part
  of the value, as in coturn: passwords may contain it);
* a repeated key overrides the previous value, except the repeatable ones (``user``,
  ``listening-ip``, ``relay-ip``, ``static-auth-secret``, ``allowed-peer-ip``,
  ``denied-peer-ip``), which accumulate;
* flags take an optional boolean (``fingerprint=off``), as coturn's ``get_bool_value``.

Nothing is silently ignored: a key PeerCall does not know, or a coturn key it does not
implement, becomes a :class:`Notice` naming the line (an error with ``strict=True``). A bad value
raises :class:`nat.errors.ConfigError` naming file and line, e.g.
``turnserver.conf:12: min-port: 'abc' is not a port number``.

The command line (``nat.cli``) feeds the same converters through :meth:`Settings.add`, so an
option and a config key can never disagree about what a value means.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from nat.auth import long_term_key
from nat.config import IPAddress, IPRange, RelayConfig
from nat.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "NO_EFFECT_KEYS",
    "SETTINGS",
    "UNSUPPORTED_KEYS",
    "Notice",
    "NoticeKind",
    "Setting",
    "Settings",
    "UserEntry",
    "load_config",
    "parse_conf_text",
    "parse_conffile",
]


class _BadValue(Exception):
    """A converter's complaint about one value; the caller adds where it came from."""


# --- value converters: str -> value, raising _BadValue with a message about the value only ---


def _bool(raw: str) -> bool:
    """coturn's get_bool_value: empty means yes; on/off, yes/no, true/false, 1/0."""
    text = raw.strip().lower()
    if text in ("", "1", "on", "yes", "y", "true", "t"):
        return True
    if text in ("0", "off", "no", "n", "false", "f"):
        return False
    raise _BadValue(f"{raw!r} is not a boolean (use on/off, yes/no, true/false or 1/0)")


def _int(raw: str, what: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit():
        raise _BadValue(f"{raw!r} is not {what}")
    return int(text)


def _port(raw: str) -> int:
    value = _int(raw, "a port number")
    if value > 65535:
        raise _BadValue(f"{raw!r} is not a port number (0-65535)")
    return value


def _count(raw: str) -> int:
    return _int(raw, "a whole number >= 0")


def _seconds(raw: str) -> int:
    value = _int(raw, "a whole number of seconds")
    if value == 0:
        raise _BadValue(f"{raw!r} must be more than 0 seconds")
    return value


def _ip(raw: str) -> str:
    text = raw.strip()
    try:
        return str(_normalise(ipaddress.ip_address(text)))
    except ValueError:
        raise _BadValue(f"{raw!r} is not an IP address") from None


def _normalise(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:a.b.c.d``) means the IPv4 address, as the peer policy sees it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _ip_range(raw: str) -> IPRange:
    """``a``, ``a-b`` (coturn's inclusive range) or ``net/prefix`` (a PeerCall extension)."""
    text = raw.strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return (
                _normalise(net.network_address),
                _normalise(net.broadcast_address),
            )
        first_text, sep, last_text = text.partition("-")
        first = _normalise(ipaddress.ip_address(first_text.strip()))
        last = _normalise(ipaddress.ip_address(last_text.strip())) if sep else first
    except ValueError:
        raise _BadValue(
            f"{raw!r} is not an IP address, a range 'first-last' or a network 'addr/prefix'"
        ) from None
    if first.version != last.version:
        raise _BadValue(f"{raw!r} mixes IPv4 and IPv6")
    if int(first) > int(last):
        raise _BadValue(f"{raw!r} is an empty range (first address is after the last)")
    return (first, last)


def _text(raw: str) -> str:
    if not raw:
        raise _BadValue("needs a value")
    return raw


@dataclass(frozen=True)
class UserEntry:
    """One ``user=`` line: the key is computed once the realm is known (it may come later)."""

    name: str
    password: str | None = None
    key: bytes | None = None

    def long_term_key(self, realm: str) -> bytes:
        if self.key is not None:
            return self.key
        assert self.password is not None
        return long_term_key(self.name, realm, self.password)


def _user(raw: str) -> UserEntry:
    """``name:password`` or ``name:0x<32 hex digits>`` (the key ``turnadmin -k`` prints)."""
    name, sep, secret = raw.partition(":")
    if not sep or not name or not secret:
        raise _BadValue(f"{_redact(raw)!r} is not 'name:password' or 'name:0x<key>'")
    if secret.startswith("0x") and len(secret) == 34:
        try:
            return UserEntry(name, key=bytes.fromhex(secret[2:]))
        except ValueError:
            raise _BadValue(f"key of user {name!r} is not 32 hex digits after 0x") from None
    return UserEntry(name, password=secret)


def _redact(raw: str) -> str:
    name, sep, _ = raw.partition(":")
    return f"{name}:***" if sep else raw


def _external_ip(raw: str) -> tuple[str, str | None]:
    """``public`` or ``public/private`` (coturn's NAT mapping of the relay address)."""
    public, sep, private = raw.strip().partition("/")
    return _ip(public), (_ip(private) if sep else None)


@dataclass(frozen=True)
class Setting:
    """One supported key: its coturn name, the RelayConfig field, how to read the value."""

    key: str
    field: str
    convert: Callable[[str], Any]
    help: str
    metavar: str = ""
    repeatable: bool = False
    flag: bool = False
    bare: str = ""  # the value a bare flag stands for
    path: bool = False  # a file name, resolved against the config file's directory
    short: str = ""  # coturn's short command-line option, if any


def _s(*args: Any, **kwargs: Any) -> Setting:
    return Setting(*args, **kwargs)


SETTINGS: tuple[Setting, ...] = (
    _s(
        "listening-ip",
        "listening_ips",
        _ip,
        "address to listen on for STUN/TURN (repeatable; default 127.0.0.1). With 0.0.0.0 or "
        ":: and no relay-ip/external-ip, each allocation advertises the address its client "
        "reached",
        "IP",
        repeatable=True,
        short="-L",
    ),
    _s(
        "listening-port",
        "listening_port",
        _port,
        "UDP and TCP port for STUN/TURN (default 3478; 0 picks a free port)",
        "PORT",
        short="-p",
    ),
    _s(
        "tls-listening-port",
        "tls_listening_port",
        _port,
        "TLS port, used when --cert and --pkey are given (default 5349)",
        "PORT",
    ),
    _s("cert", "cert", _text, "TLS certificate chain, PEM file", "FILE", path=True),
    _s("pkey", "pkey", _text, "TLS private key, PEM file (unencrypted)", "FILE", path=True),
    _s(
        "external-ip",
        "external_ip",
        _external_ip,
        "public address advertised as the relayed address when behind NAT; "
        "'PUBLIC/PRIVATE' maps the private relay address to the public one",
        "IP[/IP]",
        short="-X",
    ),
    _s(
        "relay-ip",
        "relay_ips",
        _ip,
        "address relay sockets are opened on (repeatable; default: the listening address)",
        "IP",
        repeatable=True,
        short="-E",
    ),
    _s("min-port", "min_port", _port, "lowest relay port (default 49152)", "PORT"),
    _s("max-port", "max_port", _port, "highest relay port (default 65535)", "PORT"),
    _s(
        "realm",
        "realm",
        _text,
        "realm for long-term credentials (default peercall)",
        "REALM",
        short="-r",
    ),
    _s(
        "fingerprint",
        "fingerprint",
        _bool,
        "add FINGERPRINT to responses (default on; '=off' disables)",
        flag=True,
        short="-f",
    ),
    _s(
        "lt-cred-mech",
        "lt_cred_mech",
        _bool,
        "use the long-term credential mechanism (default on)",
        flag=True,
        short="-a",
    ),
    _s(
        "user",
        "users",
        _user,
        "a long-term user 'NAME:PASSWORD', or 'NAME:0xKEY' with the key from "
        "'turnadmin -k' (repeatable)",
        "NAME:PASS",
        repeatable=True,
        short="-u",
    ),
    _s(
        "use-auth-secret",
        "use_auth_secret",
        _bool,
        "accept TURN REST API credentials (time-limited usernames signed with a shared secret)",
        flag=True,
    ),
    _s(
        "static-auth-secret",
        "static_auth_secrets",
        _text,
        "shared secret for TURN REST API credentials (repeatable: any of them is accepted)",
        "SECRET",
        repeatable=True,
    ),
    _s(
        "allow-loopback-peers",
        "allow_loopback_peers",
        _bool,
        "allow relaying to 127.0.0.0/8 and ::1 (off by default: see CVE-2020-26262)",
        flag=True,
    ),
    _s(
        "allowed-peer-ip",
        "allowed_peer_ips",
        _ip_range,
        "peer address or range 'FIRST-LAST' (or 'NET/PREFIX') always allowed, even if "
        "private or denied (repeatable)",
        "RANGE",
        repeatable=True,
    ),
    _s(
        "denied-peer-ip",
        "denied_peer_ips",
        _ip_range,
        "peer address or range 'FIRST-LAST' (or 'NET/PREFIX') refused (repeatable)",
        "RANGE",
        repeatable=True,
    ),
    _s(
        "no-multicast-peers",
        "no_multicast_peers",
        _bool,
        "refuse multicast/broadcast peers (default on)",
        flag=True,
    ),
    _s(
        "user-quota",
        "user_quota",
        _count,
        "most allocations one user may hold at once (default 100, a tenth of total-quota, so "
        "one credential cannot exhaust the relay; a TURN REST user counts by its name part; "
        "0 = unlimited, coturn's default)",
        "N",
        short="-q",
    ),
    _s(
        "total-quota",
        "total_quota",
        _count,
        "most allocations in total (default 1000; 0 = unlimited, coturn's default)",
        "N",
        short="-Q",
    ),
    _s(
        "max-bps",
        "max_bps",
        _count,
        "bandwidth cap per allocation in bytes per second (default 0 = unlimited)",
        "BYTES",
        short="-s",
    ),
    _s(
        "max-allocate-lifetime",
        "max_allocate_lifetime",
        _seconds,
        "longest allocation lifetime a client may ask for (default 3600)",
        "SECONDS",
    ),
    _s(
        "max-allocate-timeout",
        "max_allocate_timeout",
        _seconds,
        "idle timeout of TCP/TLS clients: a connection without an allocation, or stalled in "
        "the middle of a message, for this long is closed (default 60, as coturn)",
        "SECONDS",
    ),
    _s(
        "channel-lifetime",
        "channel_lifetime",
        _seconds,
        "channel binding lifetime (default 600, RFC 8656)",
        "SECONDS",
    ),
    _s(
        "permission-lifetime",
        "permission_lifetime",
        _seconds,
        "permission lifetime (default 300, RFC 8656)",
        "SECONDS",
    ),
    _s(
        "stale-nonce",
        "stale_nonce",
        _seconds,
        "seconds a nonce stays valid before 438 Stale Nonce (default 600; bare flag = 600)",
        flag=True,
        bare="600",
    ),
    _s("no-udp", "no_udp", _bool, "do not listen on UDP", flag=True),
    _s("no-tcp", "no_tcp", _bool, "do not listen on TCP", flag=True),
    _s("no-tls", "no_tls", _bool, "do not listen on TLS even if a certificate is given", flag=True),
    _s(
        "no-udp-relay",
        "no_udp_relay",
        _bool,
        "refuse UDP relays (not supported: UDP is PeerCall's only relay transport)",
        flag=True,
    ),
    _s(
        "no-tcp-relay",
        "no_tcp_relay",
        _bool,
        "refuse TCP relays, RFC 6062 (always on: PeerCall relays UDP only)",
        flag=True,
    ),
    _s(
        "server-name",
        "server_name",
        _text,
        "name sent in the SOFTWARE attribute (default PeerCall)",
        "NAME",
    ),
    _s("verbose", "verbose", _bool, "log every allocation and refusal", flag=True),
    _s("Verbose", "verbose", _bool, "same as --verbose (coturn's extra-verbose mode)", flag=True),
)

_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}

# coturn keys PeerCall has no equivalent for: reported, never silently dropped.
UNSUPPORTED_KEYS: dict[str, str] = {
    key: reason
    for reason, keys in {
        "no network-device binding": "listening-device relay-device",
        "no auxiliary or alternate servers": (
            "aux-server udp-self-balance alternate-server tls-alternate-server "
            "alt-listening-port alt-tls-listening-port tcp-proxy-port"
        ),
        "runs single-threaded on asyncio": "relay-threads ne",
        "no daemon mode; use a service manager": "daemon pidfile proc-user proc-group",
        "always sends SOFTWARE": "no-software-attribute prod",
        "no anonymous relaying (open relays are abused)": "no-auth",
        "no bandwidth capacity limit; use max-bps": "bps-capacity",
        "no user database; use user= or use-auth-secret": (
            "userdb db psql-userdb sql-userdb mysql-userdb mongo-userdb redis-userdb "
            "redis-statsdb secret-key-file"
        ),
        "no oAuth": "oauth",
        "no TLS tuning beyond cert and pkey": (
            "pkey-pwd cipher-list CA-file ec-curve-name dh566 dh1066 dh-file "
            "no-tlsv1 no-tlsv1_1 no-tlsv1_2"
        ),
        "logs go to stderr through Python logging": (
            "log-file no-stdout-log syslog syslog-facility simple-log new-log-timestamp "
            "new-log-timestamp-format log-binding"
        ),
        "STUN and TURN are always both served": "stun-only no-stun",
        "the REST username separator is always ':'": "rest-api-separator",
        "no HTTP handling": "acme-redirect web-admin web-admin-ip web-admin-port "
        "web-admin-listen-on-workers prometheus prometheus-port",
        "Binding requests are always unauthenticated": "secure-stun",
        "no ICE mobility (MICE)": "mobility",
        "no ORIGIN checks": "check-origin-consistency",
        "relay address family follows REQUESTED-ADDRESS-FAMILY (RFC 6156)": (
            "keep-address-family allocation-default-address-family"
        ),
        "no server-relay mode: permissions are always checked": "server-relay",
        "no telnet admin CLI": "cli-ip cli-port cli-password cli-max-output-sessions",
        "no RFC 3489 compatibility switches": (
            "no-stun-backward-compatibility response-origin-only-with-rfc5780"
        ),
    }.items()
    for key in keys.split()
}

# coturn keys that ask for what PeerCall already does: noted, nothing to change.
NO_EFFECT_KEYS: dict[str, str] = {
    "no-cli": "PeerCall has no admin CLI",
    "no-dtls": "PeerCall has no DTLS listener",
    "no-rfc5780": "PeerCall does not implement RFC 5780",
    "no-auth-pings": "PeerCall has no user database",
    "no-dynamic-ip-list": "PeerCall has no user database",
    "no-dynamic-realms": "PeerCall has no user database",
}


class NoticeKind(Enum):
    """How a line that does not turn into a setting is reported."""

    UNKNOWN = "unknown"  # neither PeerCall nor coturn knows the key
    UNSUPPORTED = "unsupported"  # a coturn key PeerCall does not implement
    NO_EFFECT = "no-effect"  # a coturn key asking for what PeerCall does anyway
    WARNING = "warning"  # a supported key with a caveat


@dataclass(frozen=True)
class Notice:
    """A reported line of the config: where, which key, and why it changes nothing."""

    where: str
    key: str
    kind: NoticeKind
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class _Entry:
    setting: Setting
    values: list[Any] = field(default_factory=list)
    where: str = ""


class Settings:
    """Values read from one source (a file or the command line), by coturn key name."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.notices: list[Notice] = []

    def add(self, key: str, raw: str | None, where: str, *, base_dir: Path | None = None) -> None:
        """Convert and record ``key``'s value; ``raw`` None means the key was given bare.

        Raises ConfigError ``"<where>: <key>: <problem>"`` for a bad value or unknown key.
        """
        setting = _BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"{where}: unknown option {key!r}")
        if raw is None:
            if not setting.flag:
                raise ConfigError(f"{where}: {key}: needs a value")
            raw = setting.bare
        try:
            value = setting.convert(raw)
        except _BadValue as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        if setting.path:
            value = _resolve_path(value, base_dir, f"{where}: {key}")
        if setting.field == "no_tcp_relay" and value is False:
            self._notice(
                where,
                key,
                NoticeKind.WARNING,
                "no-tcp-relay=off: PeerCall relays UDP only (RFC 6062 TCP relay is not "
                "supported); TCP relay requests are refused",
            )
            value = True
        entry = self._entries.get(setting.field)
        if entry is None or not setting.repeatable:
            entry = self._entries[setting.field] = _Entry(setting)
        entry.values.append(value)
        entry.where = where

    def report(self, where: str, key: str, *, strict: bool) -> None:
        """Record a key that is not a setting (unknown, unsupported or no-effect)."""
        if key in NO_EFFECT_KEYS:
            self._notice(
                where, key, NoticeKind.NO_EFFECT, f"{key}: no effect, {NO_EFFECT_KEYS[key]}"
            )
            return
        if key in UNSUPPORTED_KEYS:
            kind = NoticeKind.UNSUPPORTED
            message = f"coturn option {key!r} is not supported ({UNSUPPORTED_KEYS[key]}); ignored"
        else:
            kind = NoticeKind.UNKNOWN
            message = f"unknown option {key!r}{_suggestion(key)}; ignored"
        if strict:
            raise ConfigError(f"{where}: {message.removesuffix('; ignored')}")
        self._notice(where, key, kind, message)

    def _notice(self, where: str, key: str, kind: NoticeKind, message: str) -> None:
        self.notices.append(Notice(where, key, kind, message))

    def __contains__(self, key: str) -> bool:
        setting = _BY_KEY.get(key)
        return setting is not None and setting.field in self._entries

    def keys(self) -> Iterator[str]:
        """The coturn keys given (one per RelayConfig field, the last spelling used)."""
        return (entry.setting.key for entry in self._entries.values())

    def where(self, field_name: str) -> str | None:
        entry = self._entries.get(field_name)
        return entry.where if entry else None

    def merged(self, override: Settings) -> Settings:
        """A copy where every field ``override`` sets replaces this one's (lists included)."""
        result = Settings()
        result._entries = {**self._entries, **override._entries}
        result.notices = [*self.notices, *override.notices]
        return result

    def to_config(self) -> RelayConfig:
        """Build the RelayConfig; errors name the file line (or option) that set the key."""
        values: dict[str, Any] = {}
        for name, entry in self._entries.items():
            values[name] = tuple(entry.values) if entry.setting.repeatable else entry.values[-1]
        realm = values.get("realm", RelayConfig.realm)
        if "users" in values:
            values["users"] = tuple((u.name, u.long_term_key(realm)) for u in values["users"])
        if "external_ip" in values:
            public, private = values["external_ip"]
            values["external_ip"] = public
            if private is not None:
                self._check_private_ip(private, values)
        try:
            return RelayConfig(**values)
        except ConfigError as exc:
            raise ConfigError(self._locate(str(exc))) from None

    def _check_private_ip(self, private: str, values: dict[str, Any]) -> None:
        """coturn maps only the relay address equal to PRIVATE; ours must be that address."""
        relay_ips = values.get("relay_ips") or values.get("listening_ips") or ("127.0.0.1",)
        if private not in relay_ips:
            where = self.where("external_ip")
            raise ConfigError(
                f"{where}: external-ip: private address {private} is not a relay address "
                f"({', '.join(relay_ips)}), so the mapping would never apply"
            )

    def _locate(self, message: str) -> str:
        """Prefix a RelayConfig message ("min-port ...") with where its key was set."""
        head = re.match(r"[\w-]*", message).group()  # type: ignore[union-attr]
        setting = _BY_KEY.get(head)
        where = self.where(setting.field) if setting else None
        return f"{where}: {message}" if where else message


def _suggestion(key: str) -> str:
    known = [*_BY_KEY, *UNSUPPORTED_KEYS, *NO_EFFECT_KEYS]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _resolve_path(value: str, base_dir: Path | None, what: str) -> str:
    """A relative file name is looked up next to the config file first, then in the cwd."""
    path = Path(value).expanduser()
    candidates = [path]
    if not path.is_absolute() and base_dir is not None:
        candidates.insert(0, base_dir / path)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(f"{what}: file {value!r} not found")


def _split_line(line: str) -> tuple[str, str | None]:
    """coturn's parse_arg_string: the key ends at the first run of blanks and/or '='."""
    for index, char in enumerate(line):
        if char in " \t=":
            rest = line[index:].lstrip(" \t=")
            value = rest
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return line[:index], value
    return line, None


def parse_conf_text(
    text: str, filename: str, *, strict: bool = False, base_dir: Path | None = None
) -> Settings:
    """Parse config-file ``text``; ``filename`` is used in messages (``file:line: ...``)."""
    settings = Settings()
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{filename}:{number}"
        key, value = _split_line(line)
        key = key.removeprefix("--")
        if not key:
            raise ConfigError(f"{where}: no option name before the value")
        if key in _BY_KEY:
            settings.add(key, value or None, where, base_dir=base_dir)
        else:
            settings.report(where, key, strict=strict)
    return settings


def parse_conffile(path: str | os.PathLike[str], *, strict: bool = False) -> Settings:
    """Read a ``turnserver.conf``; a missing or unreadable file is a ConfigError."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {name!r}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}:{line}: not UTF-8 text") from None
    return parse_conf_text(text, name, strict=strict, base_dir=Path(name).resolve().parent)


def load_config(path: str | os.PathLike[str], *, strict: bool = False) -> RelayConfig:
    """Read a ``turnserver.conf`` straight into a RelayConfig (notices are logged)."""
    settings = parse_conffile(path, strict=strict)
    for notice in settings.notices:
        log = logger.info if notice.kind is NoticeKind.NO_EFFECT else logger.warning
        log("%s", notice)
    return settings.to_config()
