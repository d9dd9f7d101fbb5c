"""RelayConfig: every setting of the STUN/TURN relay, with coturn's ``turnserver.conf`` meaning.

One frozen dataclass shared by the config-file parser (``nat.conffile``), the CLI and the GUI's
"Host a relay". Each field names the coturn key it mirrors. Values are validated at construction
and a bad one raises :class:`nat.errors.ConfigError` with a one-line message naming the key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nat.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPRange = tuple[IPAddress, IPAddress]
"""An inclusive address range ``(first, last)``; a single address is ``(a, a)``."""


def _check_ip(key: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not an IP address") from None


def _check_port(key: str, value: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise ConfigError(f"{key}: {value!r} is not a port number ({low}-65535)")


def _check_non_negative(key: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}: {value!r} must be a whole number >= 0")


def _check_positive(key: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: {value!r} must be a whole number > 0")


@dataclass(frozen=True)
class RelayConfig:
    """The relay's settings; the comment on each field is the coturn key with the same meaning."""

    listening_ips: tuple[str, ...] = ("127.0.0.1",)  # listening-ip (repeatable)
    listening_port: int = 3478  # listening-port (UDP and TCP); 0 = ephemeral (tests)
    tls_listening_port: int = 5349  # tls-listening-port (only used when cert+pkey given)
    cert: str | None = None  # cert
    pkey: str | None = None  # pkey
    external_ip: str | None = None  # external-ip: public IP advertised in XOR-RELAYED-ADDRESS
    relay_ips: tuple[str, ...] = ()  # relay-ip (default: the listening ip)
    min_port: int = 49152  # min-port (relay port range)
    max_port: int = 65535  # max-port
    realm: str = "peercall"  # realm
    fingerprint: bool = True  # fingerprint
    lt_cred_mech: bool = True  # lt-cred-mech
    users: tuple[tuple[str, bytes], ...] = ()  # user=name:pass or name:0x<md5 key>; stored as key
    use_auth_secret: bool = False  # use-auth-secret
    static_auth_secrets: tuple[str, ...] = ()  # static-auth-secret (repeatable)
    allow_loopback_peers: bool = False  # allow-loopback-peers
    allowed_peer_ips: tuple[IPRange, ...] = ()  # allowed-peer-ip (single ip or range a-b)
    denied_peer_ips: tuple[IPRange, ...] = ()  # denied-peer-ip
    no_multicast_peers: bool = True  # no-multicast-peers (secure default)
    # user-quota / total-quota. Bounded by default, unlike coturn (0 and 0): one credential may
    # hold a tenth of the relay, so a leaked or looping client cannot lock everyone else out.
    user_quota: int = 100  # user-quota: max allocations per user (REST: per name part)
    total_quota: int = 1000  # total-quota (0 = unlimited)
    max_bps: int = 0  # max-bps per allocation, bytes/s as coturn (0 = unlimited)
    max_allocate_lifetime: int = 3600  # max-allocate-lifetime
    max_allocate_timeout: int = 60  # max-allocate-timeout: TCP/TLS time to allocate (or stall)
    channel_lifetime: int = 600  # channel-lifetime
    permission_lifetime: int = 300  # permission-lifetime
    stale_nonce: int = 600  # stale-nonce (seconds a nonce lives)
    no_udp: bool = False  # no-udp
    no_tcp: bool = False  # no-tcp
    no_tls: bool = False  # no-tls
    no_udp_relay: bool = False  # no-udp-relay
    no_tcp_relay: bool = True  # no-tcp-relay (RFC 6062 TCP relay is not supported)
    server_name: str = "PeerCall"  # server-name / SOFTWARE attribute
    verbose: bool = False  # verbose

    def __post_init__(self) -> None:
        if not self.listening_ips:
            raise ConfigError("listening-ip: at least one address is needed")
        for ip in self.listening_ips:
            _check_ip("listening-ip", ip)
        for ip in self.relay_ips:
            _check_ip("relay-ip", ip)
        if self.external_ip is not None:
            _check_ip("external-ip", self.external_ip)
        _check_port("listening-port", self.listening_port, allow_zero=True)
        _check_port("tls-listening-port", self.tls_listening_port, allow_zero=True)
        _check_port("min-port", self.min_port, allow_zero=False)
        _check_port("max-port", self.max_port, allow_zero=False)
        if self.min_port > self.max_port:
            raise ConfigError(f"min-port {self.min_port} is greater than max-port {self.max_port}")
        if (self.cert is None) != (self.pkey is None):
            raise ConfigError("cert and pkey must be given together")
        if not self.realm:
            raise ConfigError("realm: must not be empty")
        for name, key in self.users:
            if not name or ":" in name:
                raise ConfigError(f"user: bad user name {name!r}")
            if not isinstance(key, bytes) or len(key) != 16:
                raise ConfigError(f"user: key of {name!r} must be 16 bytes (an MD5 digest)")
        if self.use_auth_secret and not self.static_auth_secrets:
            raise ConfigError("use-auth-secret needs at least one static-auth-secret")
        for secret in self.static_auth_secrets:
            if not secret:
                raise ConfigError("static-auth-secret: must not be empty")
        for conf_key, ranges in (
            ("allowed-peer-ip", self.allowed_peer_ips),
            ("denied-peer-ip", self.denied_peer_ips),
        ):
            for first, last in ranges:
                if first.version != last.version or int(first) > int(last):
                    raise ConfigError(f"{conf_key}: {first}-{last} is not a valid address range")
        _check_non_negative("user-quota", self.user_quota)
        _check_non_negative("total-quota", self.total_quota)
        _check_non_negative("max-bps", self.max_bps)
        _check_positive("max-allocate-lifetime", self.max_allocate_lifetime)
        _check_positive("max-allocate-timeout", self.max_allocate_timeout)
        _check_positive("channel-lifetime", self.channel_lifetime)
        _check_positive("permission-lifetime", self.permission_lifetime)
        _check_positive("stale-nonce", self.stale_nonce)
        if self.no_udp and self.no_tcp and (self.no_tls or self.cert is None):
            raise ConfigError("no-udp, no-tcp and no-tls leave no listener")
        if self.no_udp_relay:
            raise ConfigError("no-udp-relay: UDP is the only relay transport supported")

    @property
    def tls_enabled(self) -> bool:
        """Whether a TLS listener is configured (cert and pkey given, and not no-tls)."""
        return self.cert is not None and not self.no_tls
