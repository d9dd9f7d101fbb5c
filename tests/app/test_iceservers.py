from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.iceservers import IceServer, IceUri, parse_ice_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stun:example.org", IceUri("stun", "example.org", 3478)),
        ("stuns:example.org", IceUri("stuns", "example.org", 5349)),
        ("STUN:1.2.3.4:19302", IceUri("stun", "1.2.3.4", 19302)),
        ("turn:127.0.0.1", IceUri("turn", "127.0.0.1", 3478)),
        ("turn:127.0.0.1:3478?transport=tcp", IceUri("turn", "127.0.0.1", 3478, "tcp")),
        (
            "turns:relay.example?transport=udp",
            IceUri("turns", "relay.example", 5349, "udp"),
        ),
        ("turn:[::1]:3479", IceUri("turn", "::1", 3479)),
        ("  stun:[2001:db8::1]  ", IceUri("stun", "2001:db8::1", 3478)),
    ],
)
def test_valid_uris(text: str, expected: IceUri) -> None:
    assert parse_ice_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://example.org", "must start with stun:, stuns:, turn: or turns:"),
        ("example.org:3478", "must start with stun:"),
        ("stun://example.org", "no '//' after 'stun:'"),
        ("stun:", "missing host"),
        ("stun:exa mple.org", "is not a valid host name"),
        ("turn:[::1", "missing ']'"),
        ("turn:[nothex]:1", "'nothex' is not an IPv6 address"),
        ("stun:example.org:0", "port '0' is not a number 1-65535"),
        ("stun:example.org:99999", "port '99999'"),
        ("stun:example.org:", "port '' is not a number"),
        ("stun:example.org?transport=udp", "stun: URIs take no '?' parameters"),
        ("turn:example.org?transport=sctp", "the only parameter is ?transport=udp"),
        ("turn:example.org?proto=udp", "the only parameter"),
    ],
)
def test_invalid_uris_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"ICE server") as exc:
        parse_ice_uri(text)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "text", ["stun:a.b:1", "turn:[::1]:3478?transport=udp", "turns:x.example:5349?transport=tcp"]
)
def test_str_round_trips(text: str) -> None:
    assert str(parse_ice_uri(text)) == text


def test_turn_needs_credentials() -> None:
    with pytest.raises(ConfigError, match="TURN needs a username and a credential"):
        IceServer(("turn:127.0.0.1",))
    server = IceServer(("turn:127.0.0.1", "stun:127.0.0.1"), "u", "p")
    assert [u.is_turn for u in server.uris] == [True, False]


def test_empty_server_rejected() -> None:
    with pytest.raises(ConfigError, match="no URL"):
        IceServer(())


def test_from_spec() -> None:
    assert IceServer.from_spec("stun:h") == IceServer(("stun:h",))
    assert IceServer.from_spec("bob:pa:ss@turn:h:1?transport=tcp") == IceServer(
        ("turn:h:1?transport=tcp",), "bob", "pa:ss"
    )
    with pytest.raises(ConfigError, match="USER:PASSWORD@URI"):
        IceServer.from_spec("bob@turn:h")


def test_servers_from_the_signaling_server_merge_after_the_users_without_repeats() -> None:
    from app.iceservers import merge_ice_servers

    user = (IceServer(("stun:a.example:3478",)), IceServer(("turn:r.example",), "u", "p"))
    offered = (
        IceServer.from_dict({"urls": "stun:a.example:3478"}, origin="signaling server"),
        IceServer.from_dict(
            {"urls": ["turn:r.example", "turns:r.example"], "username": "1:x", "credential": "c"},
            origin="signaling server",
        ),
    )
    merged = merge_ice_servers(user, offered)
    assert [(s.urls, s.origin) for s in merged] == [
        (("stun:a.example:3478",), "user"),
        (("turn:r.example",), "user"),
        (("turn:r.example", "turns:r.example"), "signaling server"),  # other credentials
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"urls": 5}, "'urls' is not a list of URIs"),
        ({"urls": ["turn:r.example"], "username": 1, "credential": "c"}, "username is not"),
        ({"urls": ["turn:r.example"]}, "TURN needs a username and a credential"),
    ],
)
def test_a_bad_offered_server_is_a_one_line_error(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IceServer.from_dict(data)
