"""nat.conffile: coturn's turnserver.conf syntax and meanings, every key and every error."""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from nat.auth import long_term_key
from nat.conffile import (
    NO_EFFECT_KEYS,
    SETTINGS,
    UNSUPPORTED_KEYS,
    NoticeKind,
    load_config,
    parse_conf_text,
    parse_conffile,
)
from nat.config import RelayConfig
from nat.errors import ConfigError

ip = ipaddress.ip_address


def conf(text: str, **kwargs: Any) -> RelayConfig:
    return parse_conf_text(text, "turnserver.conf", **kwargs).to_config()


def error_of(text: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        conf(text, **kwargs)
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- every supported key, with coturn's meaning --------------------------------------------

KEY_CASES: list[tuple[str, str, object]] = [
    ("listening-ip=10.0.0.1", "listening_ips", ("10.0.0.1",)),
    ("listening-ip=::1", "listening_ips", ("::1",)),
    ("listening-port=3479", "listening_port", 3479),
    ("listening-port=0", "listening_port", 0),
    ("tls-listening-port=5350", "tls_listening_port", 5350),
    ("external-ip=203.0.113.7", "external_ip", "203.0.113.7"),
    ("relay-ip=127.0.0.1", "relay_ips", ("127.0.0.1",)),
    ("min-port=40000", "min_port", 40000),
    ("max-port=50000", "max_port", 50000),
    ("realm=north.gov", "realm", "north.gov"),
    ("fingerprint", "fingerprint", True),
    ("fingerprint=off", "fingerprint", False),
    ("lt-cred-mech", "lt_cred_mech", True),
    ("lt-cred-mech=0", "lt_cred_mech", False),
    ("static-auth-secret=s3cret", "static_auth_secrets", ("s3cret",)),
    ("allow-loopback-peers", "allow_loopback_peers", True),
    ("allowed-peer-ip=10.0.0.5", "allowed_peer_ips", ((ip("10.0.0.5"), ip("10.0.0.5")),)),
    (
        "allowed-peer-ip=10.0.0.1-10.0.0.9",
        "allowed_peer_ips",
        ((ip("10.0.0.1"), ip("10.0.0.9")),),
    ),
    (
        "denied-peer-ip=192.0.2.0/24",
        "denied_peer_ips",
        ((ip("192.0.2.0"), ip("192.0.2.255")),),
    ),
    ("denied-peer-ip=fe80::1", "denied_peer_ips", ((ip("fe80::1"), ip("fe80::1")),)),
    ("no-multicast-peers=no", "no_multicast_peers", False),
    ("no-multicast-peers", "no_multicast_peers", True),
    ("user-quota=3", "user_quota", 3),
    ("total-quota=0", "total_quota", 0),
    ("max-bps=64000", "max_bps", 64000),
    ("max-allocate-lifetime=7200", "max_allocate_lifetime", 7200),
    ("max-allocate-timeout=30", "max_allocate_timeout", 30),
    ("channel-lifetime=60", "channel_lifetime", 60),
    ("permission-lifetime=30", "permission_lifetime", 30),
    ("stale-nonce", "stale_nonce", 600),
    ("stale-nonce=120", "stale_nonce", 120),
    ("no-udp", "no_udp", True),
    ("no-tcp", "no_tcp", True),
    ("no-tls", "no_tls", True),
    ("no-tcp-relay", "no_tcp_relay", True),
    ("server-name=relay.example", "server_name", "relay.example"),
    ("verbose", "verbose", True),
    ("Verbose", "verbose", True),
]


@pytest.mark.parametrize(("line", "field", "expected"), KEY_CASES)
def test_every_key_sets_its_field(line: str, field: str, expected: object) -> None:
    settings = parse_conf_text(line, "turnserver.conf")
    assert settings.notices == []
    assert getattr(settings.to_config(), field) == expected


def test_every_setting_has_a_case_above() -> None:
    covered = {line.split("=")[0] for line, _, _ in KEY_CASES}
    covered |= {"cert", "pkey", "user", "use-auth-secret", "no-udp-relay"}  # tested below
    assert {s.key for s in SETTINGS} == covered


def test_defaults_are_relayconfig_defaults() -> None:
    assert conf("# nothing but a comment\n\n") == RelayConfig()


# --- syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "min-port=40000",
        "min-port 40000",
        "min-port\t40000",
        "min-port = 40000",
        "--min-port=40000",
        "  min-port=40000   ",
        'min-port="40000"',
    ],
)
def test_coturn_line_forms(line: str) -> None:
    assert conf(line).min_port == 40000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", True),
        ("on", True),
        ("yes", True),
        ("true", True),
        ("1", True),
        ("TRUE", True),
        ("off", False),
        ("no", False),
        ("false", False),
        ("0", False),
    ],
)
def test_flags_take_coturn_booleans(value: str, expected: bool) -> None:
    line = f"allow-loopback-peers={value}" if value else "allow-loopback-peers"
    assert conf(line).allow_loopback_peers is expected


def test_comments_and_hash_inside_values() -> None:
    config = conf("  # a comment\n#realm=ignored\nstatic-auth-secret=a#b\n")
    assert config.realm == "peercall"
    assert config.static_auth_secrets == ("a#b",)


def test_repeated_scalar_key_takes_the_last_value() -> None:
    assert conf("min-port=40000\nmin-port=41000\n").min_port == 41000


def test_repeatable_keys_accumulate() -> None:
    config = conf(
        "listening-ip=127.0.0.1\nlistening-ip=::1\n"
        "relay-ip=127.0.0.1\nrelay-ip=::1\n"
        "static-auth-secret=one\nstatic-auth-secret=two\n"
        "allowed-peer-ip=10.0.0.1\nallowed-peer-ip=10.0.0.2\n"
        "denied-peer-ip=10.0.0.3\ndenied-peer-ip=10.0.0.4\n"
        "user=a:x\nuser=b:y\n"
    )
    assert config.listening_ips == ("127.0.0.1", "::1")
    assert config.relay_ips == ("127.0.0.1", "::1")
    assert config.static_auth_secrets == ("one", "two")
    assert len(config.allowed_peer_ips) == 2
    assert len(config.denied_peer_ips) == 2
    assert [name for name, _ in config.users] == ["a", "b"]


# --- credentials -------------------------------------------------------------------------


def test_user_password_becomes_the_turnadmin_key_with_the_final_realm() -> None:
    # The realm line comes after the user line: the key still uses it (coturn reads the
    # whole file before building accounts).
    config = conf("user=ninefingers:youhavetoberealistic\nrealm=north.gov\n")
    # `turnadmin -k -u ninefingers -r north.gov -p youhavetoberealistic`
    assert config.users == (("ninefingers", bytes.fromhex("bc807ee29df3c9ffa736523fb2c4e8ee")),)


def test_user_hex_key_is_used_as_is() -> None:
    config = conf("user=ninefingers:0xbc807ee29df3c9ffa736523fb2c4e8ee\nrealm=anything\n")
    assert config.users == (("ninefingers", bytes.fromhex("bc807ee29df3c9ffa736523fb2c4e8ee")),)


def test_user_password_may_contain_colons() -> None:
    config = conf("user=alice:pa:ss\n")
    assert config.users == (("alice", long_term_key("alice", "peercall", "pa:ss")),)


def test_rest_api_secret() -> None:
    config = conf("use-auth-secret\nstatic-auth-secret=north\n")
    assert config.use_auth_secret
    assert config.static_auth_secrets == ("north",)


# --- addresses ---------------------------------------------------------------------------


def test_ipv4_mapped_ipv6_is_normalised() -> None:
    config = conf("allowed-peer-ip=::ffff:10.1.2.3\nrelay-ip=::ffff:127.0.0.1\n")
    assert config.allowed_peer_ips == ((ip("10.1.2.3"), ip("10.1.2.3")),)
    assert config.relay_ips == ("127.0.0.1",)


def test_external_ip_public_private_mapping() -> None:
    config = conf("listening-ip=10.0.0.2\nexternal-ip=203.0.113.7/10.0.0.2\n")
    assert config.external_ip == "203.0.113.7"
    config = conf("relay-ip=10.0.0.3\nexternal-ip=203.0.113.7/10.0.0.3\n")
    assert config.external_ip == "203.0.113.7"


def test_cert_and_pkey_are_found_next_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    path = tmp_path / "turnserver.conf"
    path.write_text("cert=cert.pem\npkey=key.pem\n")
    config = load_config(path)
    assert config.cert == str(tmp_path / "cert.pem")
    assert config.pkey == str(tmp_path / "key.pem")
    assert config.tls_enabled


# --- reports: unknown, unsupported and no-effect keys --------------------------------------


def test_unknown_key_is_reported_with_its_line_and_a_suggestion() -> None:
    settings = parse_conf_text("realm=x\nlisteing-port=3478\nfrobnicate\n", "t.conf")
    assert [str(n) for n in settings.notices] == [
        "t.conf:2: unknown option 'listeing-port' (did you mean 'listening-port'?); ignored",
        "t.conf:3: unknown option 'frobnicate'; ignored",
    ]
    assert {n.kind for n in settings.notices} == {NoticeKind.UNKNOWN}


def test_unsupported_coturn_key_is_reported_as_such() -> None:
    settings = parse_conf_text("relay-threads=4\nno-auth\n", "t.conf")
    assert [str(n) for n in settings.notices] == [
        "t.conf:1: coturn option 'relay-threads' is not supported "
        "(runs single-threaded on asyncio); ignored",
        "t.conf:2: coturn option 'no-auth' is not supported "
        "(no anonymous relaying (open relays are abused)); ignored",
    ]
    assert {n.kind for n in settings.notices} == {NoticeKind.UNSUPPORTED}


def test_no_effect_keys_are_noted() -> None:
    settings = parse_conf_text("no-cli\nno-dtls\n", "t.conf")
    assert [str(n) for n in settings.notices] == [
        "t.conf:1: no-cli: no effect, PeerCall has no admin CLI",
        "t.conf:2: no-dtls: no effect, PeerCall has no DTLS listener",
    ]


def test_no_tcp_relay_off_is_a_warning_not_a_silent_change() -> None:
    settings = parse_conf_text("no-tcp-relay=off\n", "t.conf")
    assert [n.kind for n in settings.notices] == [NoticeKind.WARNING]
    assert "t.conf:1: no-tcp-relay=off: PeerCall relays UDP only" in str(settings.notices[0])
    assert settings.to_config().no_tcp_relay is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frobnicate=1", "turnserver.conf:1: unknown option 'frobnicate'"),
        (
            "realm=x\nrelay-threads 2",
            "turnserver.conf:2: coturn option 'relay-threads' is not "
            "supported (runs single-threaded on asyncio)",
        ),
    ],
)
def test_strict_mode_turns_reports_into_errors(text: str, message: str) -> None:
    assert error_of(text, strict=True) == message


def test_strict_mode_accepts_no_effect_keys() -> None:
    assert conf("no-cli\n", strict=True) == RelayConfig()


def test_every_key_of_coturns_sample_config_is_known() -> None:
    # Debian's coturn ships /etc/turnserver.conf showing every key as '#key=value' or '#key',
    # and a few active lines (syslog, no-rfc5780, ...): PeerCall must know them all.
    sample = Path("/etc/turnserver.conf")
    if not sample.exists():
        pytest.skip("coturn's sample turnserver.conf is not installed")
    text = sample.read_text()
    shown = set(re.findall(r"(?m)^# ?([A-Za-z][\w-]*)(?:=\S*)?$", text))
    assert {"listening-port", "user", "static-auth-secret", "no-tlsv1_2"} <= shown
    known = {s.key for s in SETTINGS} | set(UNSUPPORTED_KEYS) | set(NO_EFFECT_KEYS)
    assert shown - known == set()
    settings = parse_conffile(sample)
    assert NoticeKind.UNKNOWN not in {n.kind for n in settings.notices}
    assert settings.to_config() == RelayConfig()


# --- errors name the file, the line and the key ----------------------------------------------

ERROR_CASES: list[tuple[str, str]] = [
    ("realm=x\nmin-port=abc", "turnserver.conf:2: min-port: 'abc' is not a port number"),
    ("max-port=70000", "turnserver.conf:1: max-port: '70000' is not a port number (0-65535)"),
    ("listening-port=-1", "turnserver.conf:1: listening-port: '-1' is not a port number"),
    ("tls-listening-port=x", "turnserver.conf:1: tls-listening-port: 'x' is not a port number"),
    ("listening-ip=localhost", "turnserver.conf:1: listening-ip: 'localhost' is not an IP address"),
    ("relay-ip=1.2.3", "turnserver.conf:1: relay-ip: '1.2.3' is not an IP address"),
    ("external-ip=host", "turnserver.conf:1: external-ip: 'host' is not an IP address"),
    ("external-ip=1.2.3.4/x", "turnserver.conf:1: external-ip: 'x' is not an IP address"),
    (
        "external-ip=203.0.113.7/10.9.9.9",
        "turnserver.conf:1: external-ip: private address 10.9.9.9 is not a relay address "
        "(127.0.0.1), so the mapping would never apply",
    ),
    ("min-port=0", "turnserver.conf:1: min-port: 0 is not a port number (1-65535)"),
    (
        "min-port=50000\n\nmax-port=40000",
        "turnserver.conf:1: min-port 50000 is greater than max-port 40000",
    ),
    ("realm", "turnserver.conf:1: realm: needs a value"),
    ("realm=", "turnserver.conf:1: realm: needs a value"),
    (
        "fingerprint=maybe",
        "turnserver.conf:1: fingerprint: 'maybe' is not a boolean "
        "(use on/off, yes/no, true/false or 1/0)",
    ),
    ("user=alice", "turnserver.conf:1: user: 'alice' is not 'name:password' or 'name:0x<key>'"),
    ("user=:pw", "turnserver.conf:1: user: ':***' is not 'name:password' or 'name:0x<key>'"),
    ("user=bob:", "turnserver.conf:1: user: 'bob:***' is not 'name:password' or 'name:0x<key>'"),
    (
        "user=bob:0x" + "zz" * 16,
        "turnserver.conf:1: user: key of user 'bob' is not 32 hex digits after 0x",
    ),
    ("use-auth-secret", "turnserver.conf:1: use-auth-secret needs at least one static-auth-secret"),
    ("static-auth-secret", "turnserver.conf:1: static-auth-secret: needs a value"),
    (
        "allowed-peer-ip=10.0.0.9-10.0.0.1",
        "turnserver.conf:1: allowed-peer-ip: '10.0.0.9-10.0.0.1' is an empty range "
        "(first address is after the last)",
    ),
    (
        "denied-peer-ip=10.0.0.1-::1",
        "turnserver.conf:1: denied-peer-ip: '10.0.0.1-::1' mixes IPv4 and IPv6",
    ),
    (
        "denied-peer-ip=nope",
        "turnserver.conf:1: denied-peer-ip: 'nope' is not an IP address, a range 'first-last' "
        "or a network 'addr/prefix'",
    ),
    ("user-quota=-3", "turnserver.conf:1: user-quota: '-3' is not a whole number >= 0"),
    ("total-quota=many", "turnserver.conf:1: total-quota: 'many' is not a whole number >= 0"),
    ("max-bps=1.5", "turnserver.conf:1: max-bps: '1.5' is not a whole number >= 0"),
    (
        "max-allocate-lifetime=0",
        "turnserver.conf:1: max-allocate-lifetime: '0' must be more than 0 seconds",
    ),
    (
        "channel-lifetime=x",
        "turnserver.conf:1: channel-lifetime: 'x' is not a whole number of seconds",
    ),
    (
        "permission-lifetime=0",
        "turnserver.conf:1: permission-lifetime: '0' must be more than 0 seconds",
    ),
    ("stale-nonce=soon", "turnserver.conf:1: stale-nonce: 'soon' is not a whole number of seconds"),
    ("no-udp\nno-tcp", "turnserver.conf:1: no-udp, no-tcp and no-tls leave no listener"),
    ("no-udp-relay", "turnserver.conf:1: no-udp-relay: UDP is the only relay transport supported"),
    ("server-name=", "turnserver.conf:1: server-name: needs a value"),
    ("=value", "turnserver.conf:1: no option name before the value"),
    (
        "cert=/nonexistent/cert.pem",
        "turnserver.conf:1: cert: file '/nonexistent/cert.pem' not found",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERROR_CASES)
def test_bad_values_are_one_line_errors_naming_the_line(text: str, message: str) -> None:
    assert error_of(text) == message


def test_password_is_not_echoed_in_errors() -> None:
    assert "hunter2" not in error_of("user=:hunter2")


def test_cert_without_pkey(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    path = tmp_path / "t.conf"
    path.write_text("realm=x\ncert=cert.pem\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == f"{path}:2: cert and pkey must be given together"


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_conffile("/nonexistent/turnserver.conf")
    assert str(exc.value) == (
        "cannot read config file '/nonexistent/turnserver.conf': No such file or directory"
    )


def test_binary_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.conf"
    path.write_bytes(b"realm=x\nuser=a:\xff\xfe\n")
    with pytest.raises(ConfigError) as exc:
        parse_conffile(path)
    assert str(exc.value) == f"{path}:2: not UTF-8 text"


def test_load_config_logs_notices(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.conf"
    path.write_text("frobnicate\nno-cli\n")
    with caplog.at_level(logging.INFO, logger="nat.conffile"):
        load_config(path)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"{path}:1: unknown option 'frobnicate'; ignored"),
        (logging.INFO, f"{path}:2: no-cli: no effect, PeerCall has no admin CLI"),
    ]


# --- layering: the command line overrides the file ------------------------------------------


def test_override_replaces_per_key_and_recomputes_user_keys() -> None:
    base = parse_conf_text("min-port=40000\nmax-port=41000\nuser=a:pw\nrealm=one\n", "f")
    cli = parse_conf_text("max-port=42000\nrealm=two\n", "cli")
    config = base.merged(cli).to_config()
    assert (config.min_port, config.max_port, config.realm) == (40000, 42000, "two")
    assert config.users == (("a", long_term_key("a", "two", "pw")),)
    # A repeatable key given again replaces the file's list (it does not extend it).
    cli_users = parse_conf_text("user=b:pw\n", "cli")
    assert [n for n, _ in base.merged(cli_users).to_config().users] == ["b"]


def test_cross_field_error_names_the_overriding_source() -> None:
    base = parse_conf_text("min-port=40000\n", "f")
    cli = parse_conf_text("max-port=30000\n", "cli")
    with pytest.raises(ConfigError) as exc:
        base.merged(cli).to_config()
    assert str(exc.value) == "f:1: min-port 40000 is greater than max-port 30000"


def test_quota_defaults_are_bounded_and_timeout_matches_coturn() -> None:
    config = parse_conf_text("", "turnserver.conf").to_config()
    # coturn leaves both unlimited; PeerCall bounds them (documented in --help) so one
    # credential (a tenth of the relay) cannot exhaust it. 0 still means unlimited.
    assert config.user_quota == 100
    assert config.total_quota == 1000
    assert config.max_allocate_timeout == 60  # coturn's default
    unlimited = parse_conf_text("user-quota=0\ntotal-quota=0\n", "f").to_config()
    assert (unlimited.user_quota, unlimited.total_quota) == (0, 0)
