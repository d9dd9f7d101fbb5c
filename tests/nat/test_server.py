"""nat.server: the sans-I/O TURN core driven with plain bytes, time passed in as ``now``."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct
from collections.abc import Sequence
from typing import Any, cast

import pytest

from nat import stun
from nat.auth import long_term_key, rest_credentials
from nat.config import RelayConfig
from nat.errors import StunError
from nat.five_tuple import FiveTuple
from nat.server import CloseRelay, OpenRelay, SendToClient, SendToPeer, TurnServer
from tests.nat.test_stun import SEND_INDICATION_SHAPES
from tests.nat.turn_helpers import TCP, UDP, Client, closes, error_code, only_response

KNOWN_REQUIRED = frozenset(t for t in stun.ATTRIBUTES if t < 0x8000)

REALM = "example.org"
ALICE_KEY = long_term_key("alice", REALM, "secret")
BOB_KEY = long_term_key("bob", REALM, "hunter2")
PEER = ("203.0.113.9", 6000)
T0 = 1_700_000_000.0


def make_server(**overrides: object) -> TurnServer:
    base: dict[str, object] = {"realm": REALM, "users": (("alice", ALICE_KEY), ("bob", BOB_KEY))}
    base.update(overrides)
    config = RelayConfig(**base)  # type: ignore[arg-type]
    rng = random.Random(7)
    return TurnServer(config, random_bytes=rng.randbytes)


@pytest.fixture
def server() -> TurnServer:
    return make_server()


@pytest.fixture
def alice(server: TurnServer) -> Client:
    client = Client(server)
    assert error_code(client.allocate(T0)) is None
    return client


def sent_to_client(actions: Sequence[object]) -> list[SendToClient]:
    return [a for a in actions if isinstance(a, SendToClient)]


# --- Binding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [("198.51.100.1", 1234), ("2001:db8::5", 65000)])
def test_binding_reports_the_source_address(server: TurnServer, source: tuple[str, int]) -> None:
    request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, bytes(range(12))).encode()
    response = only_response(server.handle(request, source, UDP, T0))
    assert response.cls == stun.MsgClass.SUCCESS
    assert response.transaction_id == bytes(range(12))
    assert response.get(stun.XOR_MAPPED_ADDRESS) == source
    assert response.get(stun.SOFTWARE) == "PeerCall"
    assert response.get(stun.FINGERPRINT) is not None  # parse_message verified it
    assert stun.MESSAGE_INTEGRITY not in response


def test_binding_without_fingerprint_when_disabled() -> None:
    server = make_server(fingerprint=False, server_name="relay-7")
    request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, bytes(12)).encode()
    response = only_response(server.handle(request, ("192.0.2.1", 9), UDP, T0))
    assert response.get(stun.FINGERPRINT) is None
    assert response.get(stun.SOFTWARE) == "relay-7"


def test_binding_with_unknown_required_attribute_gets_420(server: TurnServer) -> None:
    msg = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, bytes(12))
    data = bytearray(msg.encode())
    data += struct.pack(">HH", 0x0031, 4) + b"abcd"  # unknown, comprehension-required
    data += struct.pack(">HH", 0x8031, 4) + b"abcd"  # unknown, optional: not listed
    data[2:4] = struct.pack(">H", len(data) - 20)
    response = only_response(server.handle(bytes(data), ("192.0.2.1", 9), UDP, T0))
    assert response.get(stun.ERROR_CODE) == (420, "Unknown Attribute")
    assert response.get(stun.UNKNOWN_ATTRIBUTES) == (0x0031,)


# --- authentication (RFC 8489 §9.2.4) -----------------------------------------------------------


def test_allocate_without_credentials_is_challenged(server: TurnServer) -> None:
    client = Client(server)
    raw = client.build(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], auth=False)
    response = only_response(client.send(raw, T0))
    assert response.get(stun.ERROR_CODE) == (401, "Unauthorized")
    assert response.get(stun.REALM) == REALM
    assert response.get(stun.NONCE)
    assert stun.MESSAGE_INTEGRITY not in response
    assert server.allocations.by_five_tuple == {}


def test_wrong_password_and_unknown_user_get_401(server: TurnServer) -> None:
    for client in (Client(server, password="wrong"), Client(server, username="mallory")):
        response = client.call(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)
        assert error_code(response) == 401
        assert response.get(stun.NONCE)
        assert stun.MESSAGE_INTEGRITY not in response


def test_integrity_without_nonce_is_a_bad_request(server: TurnServer) -> None:
    client = Client(server)
    msg = stun.Message(stun.Method.ALLOCATE, stun.MsgClass.REQUEST, bytes(12))
    msg.add(stun.REQUESTED_TRANSPORT, 17)
    msg.add(stun.USERNAME, "alice")
    msg.add(stun.REALM, REALM)
    response = only_response(client.send(msg.encode(client.key), T0))
    assert response.get(stun.ERROR_CODE) == (400, "Bad Request")
    assert response.get(stun.NONCE) is None


def test_stale_nonce_gets_438_with_a_fresh_one(server: TurnServer) -> None:
    client = Client(server)
    old = client.learn_nonce(T0)
    later = T0 + server.config.stale_nonce + 1
    raw = client.build(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
    response = only_response(client.send(raw, later))
    assert response.get(stun.ERROR_CODE) == (438, "Stale Nonce")
    assert response.get(stun.REALM) == REALM
    assert response.get(stun.NONCE) not in (None, old)


def test_nonce_is_bound_to_the_client_ip(server: TurnServer) -> None:
    first = Client(server, source=("198.51.100.7", 1))
    thief = Client(server, source=("198.51.100.8", 1))
    thief.nonce = first.learn_nonce(T0)
    raw = thief.build(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
    assert error_code(only_response(thief.send(raw, T0))) == 438
    thief.nonce = b"00000000" + b"0" * 24  # a forged one
    raw = thief.build(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)])
    assert error_code(only_response(thief.send(raw, T0))) == 438


def test_no_credentials_configured_means_no_allocation() -> None:
    server = make_server(users=())
    response = Client(server).call(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)
    assert error_code(response) == 401


def test_rest_credentials_work_until_they_expire() -> None:
    server = make_server(users=(), use_auth_secret=True, static_auth_secrets=("old", "s3cret"))
    username, password = rest_credentials("s3cret", "carol", ttl=600, now=T0)
    client = Client(server, username=username, password=password)
    response = client.allocate(T0)
    assert error_code(response) is None
    assert response.check_integrity(client.key)
    # Past the expiry encoded in the username: 401 like coturn.
    late = Client(server, source=("198.51.100.9", 2), username=username, password=password)
    later = T0 + 601
    assert (
        error_code(late.call(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], later)) == 401
    )


def test_expired_rest_credential_keeps_its_allocation_but_cannot_make_a_new_one() -> None:
    """RFC 8656 §7.3 + draft-uberti-behave-turn-rest-00 §2.2, as coturn: the expiry limits
    obtaining a relay, not using the one obtained (a call does not drop at the TTL)."""
    server = make_server(users=(), use_auth_secret=True, static_auth_secrets=("s",))
    username, password = rest_credentials("s", "erin", ttl=600, now=T0)
    client = Client(server, username=username, password=password)
    assert error_code(client.allocate(T0)) is None
    later = T0 + 700  # the credential expired 100 s ago; the allocation lives until T0 + 600
    refresh = client.call(stun.Method.REFRESH, [(stun.LIFETIME, 600)], T0 + 500)
    assert error_code(refresh) is None
    refresh = client.call(stun.Method.REFRESH, [(stun.LIFETIME, 600)], later)
    assert error_code(refresh) is None
    assert refresh.check_integrity(client.key)
    peer = ("203.0.113.9", 5000)
    assert (
        error_code(
            client.call(stun.Method.CREATE_PERMISSION, [(stun.XOR_PEER_ADDRESS, peer)], later)
        )
        is None
    )
    bind: list[tuple[stun.Attr[Any], Any]] = [
        (stun.CHANNEL_NUMBER, 0x4000),
        (stun.XOR_PEER_ADDRESS, peer),
    ]
    assert error_code(client.call(stun.Method.CHANNEL_BIND, bind, later)) is None
    # A new allocation with it, from another port: 401.
    other = Client(server, ("198.51.100.7", 40001), username=username, password=password)
    other.nonce = client.nonce
    response = other.call(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], later)
    assert error_code(response) == 401
    # Someone else's expired credential does not ride on this allocation either.
    u2, p2 = rest_credentials("s", "mallory", ttl=600, now=T0)
    thief = Client(server, client.source, username=u2, password=p2)
    thief.nonce = client.nonce
    assert error_code(thief.call(stun.Method.REFRESH, [(stun.LIFETIME, 600)], later)) == 401
    # Once the allocation is gone, the expired credential is nothing.
    assert error_code(client.call(stun.Method.REFRESH, [(stun.LIFETIME, 0)], later)) is None
    assert error_code(client.call(stun.Method.REFRESH, [(stun.LIFETIME, 600)], later)) == 401


def test_rest_quota_counts_the_user_not_each_timestamp() -> None:
    server = make_server(users=(), use_auth_secret=True, static_auth_secrets=("s",), user_quota=1)
    u1, p1 = rest_credentials("s", "dave", ttl=600, now=T0)
    u2, p2 = rest_credentials("s", "dave", ttl=700, now=T0)
    assert (
        error_code(Client(server, ("192.0.2.1", 1), username=u1, password=p1).allocate(T0)) is None
    )
    second = Client(server, ("192.0.2.1", 2), username=u2, password=p2)
    assert error_code(second.allocate(T0)) == 486


# --- Allocate (RFC 8656 §7.2) -------------------------------------------------------------------


def test_allocate_success(server: TurnServer) -> None:
    client = Client(server)
    actions = client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)
    assert actions == [OpenRelay(client.five_tuple, "127.0.0.1", port=None)]
    response = only_response(server.relay_opened(client.five_tuple, ("127.0.0.1", 50002), None, T0))
    assert response.cls == stun.MsgClass.SUCCESS
    assert response.get(stun.XOR_RELAYED_ADDRESS) == ("127.0.0.1", 50002)
    assert response.get(stun.XOR_MAPPED_ADDRESS) == client.source
    assert response.get(stun.LIFETIME) == 600
    assert response.check_integrity(ALICE_KEY)
    allocation = server.allocation(client.source, UDP)
    assert allocation is not None
    assert allocation.expires == T0 + 600
    assert server.allocations.users == 1


def test_allocate_retransmission_gets_the_same_answer_and_others_437(alice: Client) -> None:
    allocation = alice.server.allocation(alice.source, UDP)
    assert allocation is not None
    tid = allocation.transaction_id
    raw = alice.build(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], tid=tid)
    assert [a.data for a in sent_to_client(alice.send(raw, T0 + 1))] == [allocation.success]
    response = alice.call(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0 + 1)
    assert response.get(stun.ERROR_CODE) == (437, "Allocation Mismatch")
    assert response.check_integrity(ALICE_KEY)


@pytest.mark.parametrize(
    ("attrs", "code"),
    [
        ([], 400),
        ([(stun.REQUESTED_TRANSPORT, 6)], 442),
        ([(stun.REQUESTED_TRANSPORT, 17), (stun.REQUESTED_ADDRESS_FAMILY, 3)], 440),
        ([(stun.REQUESTED_TRANSPORT, 17), (stun.REQUESTED_ADDRESS_FAMILY, 2)], 440),  # no v6 ip
        (
            [
                (stun.REQUESTED_TRANSPORT, 17),
                (stun.RESERVATION_TOKEN, b"12345678"),
                (stun.EVEN_PORT, False),
            ],
            400,
        ),
        ([(stun.REQUESTED_TRANSPORT, 17), (stun.RESERVATION_TOKEN, b"12345678")], 508),
    ],
)
def test_allocate_errors(
    server: TurnServer, attrs: list[tuple[stun.Attr[object], object]], code: int
) -> None:
    client = Client(server)
    response = client.call(stun.Method.ALLOCATE, attrs, T0)
    assert error_code(response) == code
    assert response.get(stun.ERROR_CODE) == (code, __import__("nat.server").server.REASONS[code])
    assert response.check_integrity(ALICE_KEY)  # errors after authentication are signed
    assert server.allocations.by_five_tuple == {}
    assert server.allocations.quota_left("alice")


def test_allocate_with_unknown_required_attribute_gets_420(server: TurnServer) -> None:
    client = Client(server)
    client.learn_nonce(T0)
    msg = stun.Message(stun.Method.ALLOCATE, stun.MsgClass.REQUEST, bytes(12))
    msg.add(stun.REQUESTED_TRANSPORT, 17)
    unknown = stun.Attr(0x0010, "BANDWIDTH", stun.DATA.encode, stun.DATA.decode)
    msg.add(unknown, b"\x00\x00\x00\x10")
    msg.add(stun.USERNAME, "alice")
    msg.add(stun.REALM, REALM)
    msg.add(stun.NONCE, client.nonce or b"")
    response = only_response(client.send(msg.encode(ALICE_KEY), T0))
    assert response.get(stun.ERROR_CODE) == (420, "Unknown Attribute")
    assert response.get(stun.UNKNOWN_ATTRIBUTES) == (0x0010,)


def test_user_and_total_quotas() -> None:
    server = make_server(user_quota=1, total_quota=2)
    assert error_code(Client(server, ("192.0.2.1", 1)).allocate(T0)) is None
    assert error_code(Client(server, ("192.0.2.1", 2)).allocate(T0)) == 486
    bob = Client(server, ("192.0.2.1", 3), username="bob", password="hunter2")
    assert error_code(bob.allocate(T0)) is None
    bob2 = Client(server, ("192.0.2.1", 4), username="bob", password="hunter2")
    response = bob2.allocate(T0)
    assert response.get(stun.ERROR_CODE) == (486, "Allocation Quota Reached")
    assert server.allocations.users == 2


def test_relay_failure_is_508_and_releases_the_quota() -> None:
    server = make_server(user_quota=1)
    client = Client(server)
    actions = client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)
    assert isinstance(actions[0], OpenRelay)
    response = only_response(server.relay_failed(client.five_tuple, T0))
    assert response.get(stun.ERROR_CODE) == (508, "Insufficient Capacity")
    assert server.allocations.quota_left("alice")


def test_lifetime_is_clamped(server: TurnServer) -> None:
    short = Client(server, ("192.0.2.1", 1))
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.LIFETIME, 30)]
    assert short.allocate(T0, attrs=attrs).get(stun.LIFETIME) == 600
    long = Client(server, ("192.0.2.1", 2))
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.LIFETIME, 999_999)]
    assert long.allocate(T0, ("127.0.0.1", 50001), attrs=attrs).get(stun.LIFETIME) == 3600


def test_external_ip_is_advertised() -> None:
    server = make_server(external_ip="203.0.113.77")
    response = Client(server).allocate(T0, ("127.0.0.1", 50123))
    assert response.get(stun.XOR_RELAYED_ADDRESS) == ("203.0.113.77", 50123)
    assert server.allocations.by_relay.keys() == {("127.0.0.1", 50123)}


@pytest.mark.parametrize(
    ("external", "reached", "advertised"),
    [
        (None, "192.0.2.10", ("192.0.2.10", 50123)),  # wildcard: the address the client reached
        ("203.0.113.77", "192.0.2.10", ("203.0.113.77", 50123)),  # external-ip wins
        (None, "2001:db8::1", ("0.0.0.0", 50123)),  # other family: nothing better known
    ],
)
def test_wildcard_relay_advertises_the_address_the_client_reached(
    external: str | None, reached: str, advertised: tuple[str, int]
) -> None:
    server = make_server(listening_ips=("0.0.0.0",), external_ip=external)
    client = Client(server)
    actions = client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)
    (opening,) = [a for a in actions if isinstance(a, OpenRelay)]
    assert opening.host == "0.0.0.0"
    relay = ("0.0.0.0", 50123)
    response = only_response(
        server.relay_opened(opening.five_tuple, relay, None, T0, reached=reached)
    )
    assert response.get(stun.XOR_RELAYED_ADDRESS) == advertised
    assert server.allocations.by_relay.keys() == {relay}


def test_ipv6_allocation_rfc6156() -> None:
    server = make_server(listening_ips=("127.0.0.1", "::1"), allow_loopback_peers=True)
    client = Client(server)
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.REQUESTED_ADDRESS_FAMILY, 2)]
    actions = client.request(stun.Method.ALLOCATE, attrs, T0)
    assert actions == [OpenRelay(client.five_tuple, "::1")]
    response = only_response(server.relay_opened(client.five_tuple, ("::1", 50000), None, T0))
    assert response.get(stun.XOR_RELAYED_ADDRESS) == ("::1", 50000)
    # An IPv4 peer on an IPv6 allocation: 443 (RFC 6156 §4.4).
    assert error_code(client.permit(("127.0.0.1", 1), T0)) == 443
    assert error_code(client.permit(("::1", 1), T0)) is None
    # Refresh asking for the other family: 443 too.
    attrs = [(stun.REQUESTED_ADDRESS_FAMILY, 1)]
    assert error_code(client.call(stun.Method.REFRESH, attrs, T0)) == 443


@pytest.mark.parametrize(
    "attr", [stun.ADDITIONAL_ADDRESS_FAMILY, stun.ADDITIONAL_ADDRESS_FAMILY_DRAFT]
)
def test_dual_allocation_rfc8656(attr: stun.Attr[int]) -> None:
    server = make_server(listening_ips=("127.0.0.1", "::1"), allow_loopback_peers=True)
    client = Client(server)
    attrs: list[tuple[stun.Attr[Any], Any]] = [
        (stun.REQUESTED_TRANSPORT, 17),
        (attr, 2),
        (stun.EVEN_PORT, False),
    ]
    actions = client.request(stun.Method.ALLOCATE, attrs, T0)
    assert actions == [OpenRelay(client.five_tuple, "127.0.0.1", even=True, additional_host="::1")]
    v4, v6 = ("127.0.0.1", 50000), ("::1", 50001)
    msg = only_response(server.relay_opened(client.five_tuple, v4, None, T0, additional=v6))
    assert msg.get_all(stun.XOR_RELAYED_ADDRESS) == [v4, v6]
    assert server.allocations.by_relay.keys() == {v4, v6}
    client.relay = v4
    # Peers of both families; each is relayed from the relay of its family.
    assert error_code(client.bind(0x4000, ("127.0.0.2", 7), T0)) is None
    assert error_code(client.bind(0x4001, ("::1", 7), T0)) is None
    assert client.send(stun.encode_channel_data(0x4000, b"a"), T0) == [
        SendToPeer(v4, ("127.0.0.2", 7), b"a")
    ]
    assert client.send(stun.encode_channel_data(0x4001, b"b"), T0) == [
        SendToPeer(v6, ("::1", 7), b"b")
    ]
    assert client.send_indication(("::1", 9), b"c", T0) == [SendToPeer(v6, ("::1", 9), b"c")]
    (back,) = server.relay_received(v6, b"d", ("::1", 7), T0)
    assert isinstance(back, SendToClient)
    assert back.data == b"\x40\x01\x00\x01d"
    # Refresh may name either family (RFC 8656 §7.3); deleting closes both relays.
    for family in (1, 2):
        reply = client.call(stun.Method.REFRESH, [(stun.REQUESTED_ADDRESS_FAMILY, family)], T0)
        assert error_code(reply) is None
    actions = client.request(stun.Method.REFRESH, [(stun.LIFETIME, 0)], T0)
    assert closes(actions) == [v4, v6]
    assert server.allocations.by_relay == {}


@pytest.mark.parametrize(("family", "kept", "gone"), [(2, 0, 1), (1, 1, 0)])
def test_refresh_zero_with_a_family_deletes_half_a_dual_allocation(
    family: int, kept: int, gone: int
) -> None:
    server = make_server(listening_ips=("127.0.0.1", "::1"), allow_loopback_peers=True)
    client = Client(server)
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.ADDITIONAL_ADDRESS_FAMILY, 2)]
    client.request(stun.Method.ALLOCATE, attrs, T0)
    relays = [("127.0.0.1", 50000), ("::1", 50001)]
    server.relay_opened(client.five_tuple, relays[0], None, T0, additional=relays[1])
    peers = [("127.0.0.2", 7), ("::1", 7)]
    assert error_code(client.bind(0x4000, peers[0], T0)) is None
    assert error_code(client.bind(0x4001, peers[1], T0)) is None
    refresh = [(stun.LIFETIME, 0), (stun.REQUESTED_ADDRESS_FAMILY, family)]
    actions = client.request(stun.Method.REFRESH, refresh, T0)
    assert closes(actions) == [relays[gone]]
    assert error_code(only_response(actions)) is None
    assert server.allocations.by_relay.keys() == {relays[kept]}
    # The kept family still relays; the other one is gone (443 for its peers, data dropped).
    channel = 0x4000 + kept
    assert client.send(stun.encode_channel_data(channel, b"k"), T0) == [
        SendToPeer(relays[kept], peers[kept], b"k")
    ]
    assert client.send(stun.encode_channel_data(0x4000 + gone, b"g"), T0) == []
    assert error_code(client.permit(peers[gone], T0)) == 443
    refresh = [(stun.LIFETIME, 0)]
    assert closes(client.request(stun.Method.REFRESH, refresh, T0)) == [relays[kept]]


def test_dual_allocation_without_ipv6_relay_gets_address_error_code(server: TurnServer) -> None:
    client = Client(server)
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.ADDITIONAL_ADDRESS_FAMILY, 2)]
    msg = client.allocate(T0, attrs=attrs)
    assert msg.get_all(stun.XOR_RELAYED_ADDRESS) == [client.relay]
    assert msg.get(stun.ADDRESS_ERROR_CODE) == (2, (440, "Address Family not Supported"))
    assert server.allocation(client.source, client.transport) is not None


def test_dual_allocation_never_advertises_a_wildcard_ipv6_relay() -> None:
    # listening-ip 0.0.0.0 and ::, an IPv4 client: the IPv4 half advertises the address the
    # client reached; nothing is known for the IPv6 half bound on "::", so it is closed and
    # answered with ADDRESS-ERROR-CODE 440 rather than advertised as "::".
    server = make_server(listening_ips=("0.0.0.0", "::"))
    client = Client(server)
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.ADDITIONAL_ADDRESS_FAMILY, 2)]
    (opening,) = [
        a for a in client.request(stun.Method.ALLOCATE, attrs, T0) if isinstance(a, OpenRelay)
    ]
    assert (opening.host, opening.additional_host) == ("0.0.0.0", "::")
    v4, v6 = ("0.0.0.0", 50000), ("::", 50001)
    actions = server.relay_opened(
        client.five_tuple, v4, None, T0, reached="192.0.2.10", additional=v6
    )
    assert closes(actions) == [v6]
    msg = only_response(actions)
    assert msg.get_all(stun.XOR_RELAYED_ADDRESS) == [("192.0.2.10", 50000)]
    assert msg.get(stun.ADDRESS_ERROR_CODE) == (2, (440, "Address Family not Supported"))
    assert server.allocations.by_relay.keys() == {v4}


def test_dual_allocation_whose_ipv6_port_failed_gets_508() -> None:
    server = make_server(listening_ips=("127.0.0.1", "::1"))
    client = Client(server)
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.ADDITIONAL_ADDRESS_FAMILY, 2)]
    client.request(stun.Method.ALLOCATE, attrs, T0)
    msg = only_response(server.relay_opened(client.five_tuple, ("127.0.0.1", 5), None, T0))
    assert msg.get(stun.ADDRESS_ERROR_CODE) == (2, (508, "Insufficient Capacity"))


@pytest.mark.parametrize(
    "extra",
    [
        [(stun.ADDITIONAL_ADDRESS_FAMILY, 1)],  # must be IPv6
        [(stun.ADDITIONAL_ADDRESS_FAMILY, 2), (stun.REQUESTED_ADDRESS_FAMILY, 1)],
        [(stun.ADDITIONAL_ADDRESS_FAMILY, 2), (stun.EVEN_PORT, True)],
        [(stun.ADDITIONAL_ADDRESS_FAMILY, 2), (stun.RESERVATION_TOKEN, bytes(8))],
    ],
)
def test_bad_dual_allocation_requests_are_400(extra: list[tuple[stun.Attr[Any], Any]]) -> None:
    server = make_server(listening_ips=("127.0.0.1", "::1"))
    attrs: list[tuple[stun.Attr[Any], Any]] = [(stun.REQUESTED_TRANSPORT, 17), *extra]
    assert error_code(Client(server).allocate(T0, attrs=attrs)) == 400


def test_even_port_reservation_and_token(server: TurnServer) -> None:
    rtp = Client(server, ("192.0.2.1", 1))
    attrs: list[tuple[stun.Attr[Any], Any]] = [
        (stun.REQUESTED_TRANSPORT, 17),
        (stun.EVEN_PORT, True),
    ]
    actions = rtp.request(stun.Method.ALLOCATE, attrs, T0)
    assert actions == [OpenRelay(rtp.five_tuple, "127.0.0.1", even=True, reserve_next=True)]
    response = only_response(
        server.relay_opened(rtp.five_tuple, ("127.0.0.1", 50010), ("127.0.0.1", 50011), T0)
    )
    token = response.get(stun.RESERVATION_TOKEN)
    assert token is not None
    assert len(token) == 8
    rtcp = Client(server, ("192.0.2.1", 2))
    attrs = [(stun.REQUESTED_TRANSPORT, 17), (stun.RESERVATION_TOKEN, token)]
    actions = rtcp.request(stun.Method.ALLOCATE, attrs, T0 + 1)
    assert actions == [OpenRelay(rtcp.five_tuple, "127.0.0.1", port=50011)]
    response = only_response(server.relay_opened(rtcp.five_tuple, ("127.0.0.1", 50011), None, T0))
    assert response.get(stun.XOR_RELAYED_ADDRESS) == ("127.0.0.1", 50011)
    # The token is single use.
    again = Client(server, ("192.0.2.1", 3))
    assert error_code(again.call(stun.Method.ALLOCATE, attrs, T0 + 2)) == 508


def test_unclaimed_reservation_expires_after_30_seconds(server: TurnServer) -> None:
    rtp = Client(server, ("192.0.2.1", 1))
    rtp.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17), (stun.EVEN_PORT, True)], T0)
    server.relay_opened(rtp.five_tuple, ("127.0.0.1", 50010), ("127.0.0.1", 50011), T0)
    assert closes(server.tick(T0 + 29)) == []
    assert closes(server.tick(T0 + 30)) == [("127.0.0.1", 50011)]
    assert server.reservations == {}


def test_relay_opened_after_the_client_left_closes_it(server: TurnServer) -> None:
    client = Client(server, transport=TCP)
    client.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)
    assert server.connection_lost(client.source, TCP, T0) == []
    actions = server.relay_opened(client.five_tuple, ("127.0.0.1", 5), ("127.0.0.1", 6), T0)
    assert closes(actions) == [("127.0.0.1", 5), ("127.0.0.1", 6)]
    assert server.allocations.quota_left("alice")
    assert server.allocations.users == 0


# --- Refresh (RFC 8656 §7.3) --------------------------------------------------------------------


def test_refresh_extends_and_zero_deletes(alice: Client) -> None:
    server = alice.server
    response = alice.call(stun.Method.REFRESH, [(stun.LIFETIME, 1200)], T0 + 100)
    assert response.get(stun.LIFETIME) == 1200
    assert response.check_integrity(ALICE_KEY)
    assert closes(server.tick(T0 + 700)) == []  # the original 600 s passed: still alive
    actions = alice.request(stun.Method.REFRESH, [(stun.LIFETIME, 0)], T0 + 800)
    assert closes(actions) == [alice.relay]
    assert only_response(actions).get(stun.LIFETIME) == 0
    assert server.allocation(alice.source, UDP) is None
    assert server.allocations.users == 0
    assert error_code(alice.call(stun.Method.REFRESH, [], T0 + 801)) == 437


def test_requests_from_another_user_on_the_allocation_get_441(alice: Client) -> None:
    bob = Client(alice.server, alice.source, username="bob", password="hunter2")
    assert bob.call(stun.Method.REFRESH, [], T0).get(stun.ERROR_CODE) == (441, "Wrong Credentials")


def test_allocation_expires(alice: Client) -> None:
    server = alice.server
    assert server.next_deadline() == T0 + 600
    assert closes(server.tick(T0 + 599)) == []
    assert closes(server.tick(T0 + 600)) == [alice.relay]
    assert server.allocation(alice.source, UDP) is None
    assert alice.send_indication(PEER, b"x", T0 + 601) == []


def test_tcp_connection_loss_deletes_the_allocation(server: TurnServer) -> None:
    client = Client(server, transport=TCP)
    client.allocate(T0)
    assert closes(server.connection_lost(client.source, TCP, T0 + 1)) == [client.relay]
    assert server.allocation(client.source, TCP) is None


# --- permissions, Send and Data (RFC 8656 §9-11) ------------------------------------------------


def test_send_needs_a_permission_which_is_per_ip(alice: Client) -> None:
    assert alice.send_indication(PEER, b"hello", T0) == []
    assert error_code(alice.permit(PEER, T0)) is None
    assert alice.send_indication(PEER, b"hello", T0) == [SendToPeer(alice.relay, PEER, b"hello")]
    other_port = (PEER[0], 7777)
    assert alice.send_indication(other_port, b"x", T0) == [
        SendToPeer(alice.relay, other_port, b"x")
    ]
    assert alice.send_indication(("203.0.113.10", 6000), b"x", T0) == []
    assert alice.server.counters.relayed_packets == 2


def test_permission_expires_after_its_lifetime(alice: Client) -> None:
    alice.permit(PEER, T0)
    assert alice.send_indication(PEER, b"x", T0 + 299) != []
    assert alice.send_indication(PEER, b"x", T0 + 300) == []
    alice.server.tick(T0 + 300)
    allocation = alice.server.allocation(alice.source, UDP)
    assert allocation is not None
    assert allocation.permissions == {}


def test_permission_refresh_keeps_it(alice: Client) -> None:
    alice.permit(PEER, T0)
    alice.permit(PEER, T0 + 200)
    alice.server.tick(T0 + 300)
    assert alice.send_indication(PEER, b"x", T0 + 450) != []


def test_peer_data_becomes_a_data_indication(alice: Client) -> None:
    server = alice.server
    assert server.relay_received(alice.relay, b"nope", PEER, T0) == []  # no permission
    alice.permit(PEER, T0)
    (action,) = server.relay_received(alice.relay, b"payload", PEER, T0)
    assert isinstance(action, SendToClient)
    assert (action.transport, action.client) == (UDP, alice.source)
    msg = stun.parse_message(action.data)
    assert (msg.method, msg.cls) == (stun.Method.DATA, stun.MsgClass.INDICATION)
    assert msg.get(stun.XOR_PEER_ADDRESS) == PEER
    assert msg.get(stun.DATA) == b"payload"
    assert server.relay_received(("127.0.0.1", 1), b"x", PEER, T0) == []  # unknown relay


@pytest.mark.parametrize(
    ("peer", "code"),
    [
        (("127.0.0.1", 9), 403),
        (("::ffff:127.0.0.1", 9), 443),  # an IPv6 peer on an IPv4 allocation
        (("10.1.2.3", 9), 403),
        (("0.0.0.0", 9), 403),
        (("224.0.0.251", 5353), 403),
        (("2001:db8::1", 9), 443),
    ],
)
def test_forbidden_and_mismatched_peers(alice: Client, peer: tuple[str, int], code: int) -> None:
    response = alice.permit(peer, T0)
    assert error_code(response) == code
    assert alice.bind(0x4000, peer, T0).get(stun.ERROR_CODE) == (
        code,
        {403: "Forbidden", 443: "Peer Address Family Mismatch"}[code],
    )


def test_create_permission_is_all_or_nothing(alice: Client) -> None:
    attrs = [(stun.XOR_PEER_ADDRESS, PEER), (stun.XOR_PEER_ADDRESS, ("192.168.1.1", 1))]
    assert error_code(alice.call(stun.Method.CREATE_PERMISSION, attrs, T0)) == 403
    assert alice.send_indication(PEER, b"x", T0) == []
    assert error_code(alice.call(stun.Method.CREATE_PERMISSION, [], T0)) == 400


def test_create_permission_without_allocation_is_437(server: TurnServer) -> None:
    assert error_code(Client(server).permit(PEER, T0)) == 437


def test_bandwidth_cap() -> None:
    server = make_server(max_bps=1000)
    client = Client(server)
    client.allocate(T0)
    client.permit(PEER, T0)
    sent = [bool(client.send_indication(PEER, b"x" * 400, T0)) for _ in range(4)]
    assert sent == [True, True, False, False]  # 1000 bytes of burst
    assert client.send_indication(PEER, b"x" * 400, T0 + 0.5) != []  # 500 bytes refilled
    assert server.relay_received(client.relay, b"y" * 400, PEER, T0 + 0.5) == []
    assert server.counters.dropped == 3


# --- channels (RFC 8656 §11-12) -----------------------------------------------------------------


def test_channel_bind_and_channel_data_both_ways(alice: Client) -> None:
    server = alice.server
    assert error_code(alice.bind(0x4001, PEER, T0)) is None
    data = stun.encode_channel_data(0x4001, b"abc")
    assert alice.send(data, T0) == [SendToPeer(alice.relay, PEER, b"abc")]
    assert alice.send(data + b"\x00", T0) == [SendToPeer(alice.relay, PEER, b"abc")]  # padded
    (back,) = server.relay_received(alice.relay, b"xyz", PEER, T0)
    assert isinstance(back, SendToClient)
    assert back.data == b"\x40\x01\x00\x03xyz"
    # The bind installed a permission: Send indications to that IP pass too.
    assert alice.send_indication((PEER[0], 1), b"q", T0) != []
    # Unknown channel, truncated ChannelData: dropped.
    assert alice.send(stun.encode_channel_data(0x4002, b"abc"), T0) == []
    assert alice.send(b"\x40\x01\x00\x09abc", T0) == []


def test_channel_data_is_padded_over_tcp(server: TurnServer) -> None:
    client = Client(server, transport=TCP)
    client.allocate(T0)
    client.bind(0x4000, PEER, T0)
    (back,) = server.relay_received(client.relay, b"xyz", PEER, T0)
    assert isinstance(back, SendToClient)
    assert back.data == b"\x40\x00\x00\x03xyz\x00"


@pytest.mark.parametrize(
    ("number", "peer"),
    [
        (0x3FFF, PEER),  # below the range
        (0x8000, PEER),  # above
        (0x4001, ("203.0.113.9", 6001)),  # 0x4001 is bound to PEER already
        (0x4002, PEER),  # PEER is bound to 0x4001 already
    ],
)
def test_channel_bind_conflicts_are_400(alice: Client, number: int, peer: tuple[str, int]) -> None:
    assert error_code(alice.bind(0x4001, PEER, T0)) is None
    assert alice.bind(number, peer, T0).get(stun.ERROR_CODE) == (400, "Bad Request")


def test_channel_bind_missing_attributes_are_400(alice: Client) -> None:
    response = alice.call(stun.Method.CHANNEL_BIND, [(stun.CHANNEL_NUMBER, 0x4000)], T0)
    assert error_code(response) == 400


def test_channel_expires_and_cools_down(alice: Client) -> None:
    server = alice.server
    alice.call(stun.Method.REFRESH, [(stun.LIFETIME, 3600)], T0)
    alice.bind(0x4001, PEER, T0)
    data = stun.encode_channel_data(0x4001, b"abc")
    assert alice.send(data, T0 + 599) != []
    alice.permit(PEER, T0 + 599)  # keep the permission, let the channel lapse
    assert alice.send(data, T0 + 600) == []
    (back,) = server.relay_received(alice.relay, b"z", PEER, T0 + 600)  # now a Data indication
    assert isinstance(back, SendToClient)
    assert back.data[:2] == b"\x00\x17"
    # For 5 minutes after expiry the number cannot go to another peer (RFC 8656 §12)...
    other = ("203.0.113.10", 1)
    assert error_code(alice.bind(0x4001, other, T0 + 700)) == 400
    server.tick(T0 + 900)
    assert error_code(alice.bind(0x4001, other, T0 + 900)) is None


def test_channel_rebind_refreshes(alice: Client) -> None:
    alice.bind(0x4001, PEER, T0)
    alice.bind(0x4001, PEER, T0 + 500)
    assert alice.send(stun.encode_channel_data(0x4001, b"a"), T0 + 1000) != []


# --- robustness ---------------------------------------------------------------------------------


def test_malformed_request_value_is_400_and_garbage_is_dropped(server: TurnServer) -> None:
    body = struct.pack(">HH", 0x000D, 2) + b"\x00\x01\x00\x00"  # LIFETIME of 2 bytes
    data = struct.pack(">HHI12s", 0x0003, len(body), stun.MAGIC_COOKIE, bytes(12)) + body
    response = only_response(server.handle(data, ("192.0.2.1", 1), UDP, T0))
    assert response.get(stun.ERROR_CODE) == (400, "Bad Request")
    assert server.handle(b"\xff" * 30, ("192.0.2.1", 1), UDP, T0) == []
    assert server.handle(b"", ("192.0.2.1", 1), UDP, T0) == []
    assert server.handle(data[:-1], ("192.0.2.1", 1), UDP, T0) == []
    success = stun.Message(stun.Method.BINDING, stun.MsgClass.SUCCESS, bytes(12)).encode()
    assert server.handle(success, ("192.0.2.1", 1), UDP, T0) == []
    unknown_method = stun.Message(0x0FF, stun.MsgClass.REQUEST, bytes(12)).encode()
    assert (
        error_code(only_response(server.handle(unknown_method, ("192.0.2.1", 1), UDP, T0))) == 400
    )
    assert server.counters.internal_errors == 0


def test_close_releases_every_relay(server: TurnServer) -> None:
    a = Client(server, ("192.0.2.1", 1))
    a.allocate(T0, ("127.0.0.1", 50000))
    b = Client(server, ("192.0.2.1", 2))
    b.request(stun.Method.ALLOCATE, [(stun.REQUESTED_TRANSPORT, 17)], T0)  # left pending
    assert set(closes(server.close())) == {("127.0.0.1", 50000)}
    assert server.allocations.users == 0
    assert server.next_deadline() is None


def test_memory_stays_bounded_under_refresh_storms(alice: Client) -> None:
    server = alice.server
    for i in range(2000):
        alice.permit(PEER, T0 + i * 0.01)
        alice.bind(0x4001, PEER, T0 + i * 0.01)
        alice.call(stun.Method.REFRESH, [], T0 + i * 0.01)
    assert len(server.allocations._heap) <= 4


def test_policy_is_applied_through_the_config() -> None:
    server = make_server(allowed_peer_ips=((ipaddress.ip_address("10.0.0.5"),) * 2,))
    client = Client(server)
    client.allocate(T0)
    assert error_code(client.permit(("10.0.0.5", 1), T0)) is None
    assert error_code(client.permit(("10.0.0.6", 1), T0)) == 403


def test_five_tuple_key_and_relay_map(alice: Client) -> None:
    server = alice.server
    allocation = server.allocation(alice.source, UDP)
    assert allocation is not None
    assert server.allocations.by_five_tuple[FiveTuple("udp", alice.source, UDP.local)] is allocation
    assert server.allocations.by_relay[alice.relay] is allocation
    assert dataclasses.replace(CloseRelay(("a", 1))) == CloseRelay(("a", 1))


# --- lean entry points for the I/O layer's hot path ---------------------------------------------


@pytest.mark.parametrize("fingerprint", [True, False])
@pytest.mark.parametrize("source", [("198.51.100.1", 1234), ("2001:db8::5", 65000), ("0.0.0.0", 0)])
def test_binding_fast_gives_the_same_bytes_as_the_full_path(
    fingerprint: bool, source: tuple[str, int]
) -> None:
    server = make_server(fingerprint=fingerprint, server_name="relay-x")
    request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, bytes(range(12))).encode()
    (full,) = sent_to_client(server.handle(request, source, UDP, T0))
    assert server.binding_fast(request, source) == full.data
    assert server.counters.stun_requests == 2
    # Again from the same client with another transaction id: the encoder keeps the IPv4
    # address part per client, and must not keep anything that depends on the transaction.
    again = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, bytes(range(1, 13))).encode()
    (full,) = sent_to_client(server.handle(again, source, UDP, T0))
    assert server.binding_fast(again, source) == full.data
    other = (source[0], source[1] ^ 1)
    (full,) = sent_to_client(server.handle(again, other, UDP, T0))
    assert server.binding_fast(again, other) == full.data


def test_binding_fast_leaves_anything_but_a_bare_request_to_the_core(server: TurnServer) -> None:
    tid = bytes(12)
    bare = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, tid).encode()
    with_attr = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, tid)
    with_attr.add(stun.SOFTWARE, "client")
    source = ("192.0.2.1", 9)
    assert server.binding_fast(with_attr.encode(), source) is None
    assert server.binding_fast(bare[:19], source) is None
    assert server.binding_fast(b"\x00\x01\x00\x00" + bytes(16), source) is None  # RFC 3489
    assert server.binding_fast(b"\x01\x01" + bare[2:], source) is None  # a response
    assert server.counters.stun_requests == 0


def test_channel_data_fast_matches_the_action_path(alice: Client) -> None:
    server = alice.server
    alice.bind(0x4001, PEER, T0)
    data = stun.encode_channel_data(0x4001, b"abc")
    fast = server.channel_data_fast(data, alice.source, alice.transport, T0)
    assert fast == (alice.relay, PEER, b"abc")
    assert alice.send(data, T0) == [SendToPeer(*fast)]
    assert (server.counters.relayed_packets, server.counters.relayed_bytes) == (2, 6)
    # Unbound channel, expired channel, unknown client: dropped by both, and counted.
    unbound = stun.encode_channel_data(0x4002, b"abc")
    for now, raw, source in [
        (T0, unbound, alice.source),
        (T0 + 600, data, alice.source),
        (T0, data, ("198.51.100.99", 1)),
    ]:
        before = server.counters.dropped
        assert server.channel_data_fast(raw, source, alice.transport, now) is None
        assert server.handle(raw, source, alice.transport, now) == []
        assert server.counters.dropped == before + 2
    assert server.counters.relayed_packets == 2


def test_clients_on_is_a_live_view_of_the_listeners_allocations(server: TurnServer) -> None:
    clients = server.clients_on(TCP)
    assert clients == {}
    assert server.clients_on(UDP) == {}
    bob = Client(server, ("198.51.100.8", 40001), TCP)
    bob.allocate(T0)
    carol = Client(server, ("198.51.100.9", 40002), UDP)
    carol.allocate(T0, relay=("127.0.0.1", 50001))
    assert server.clients_on(TCP) is clients
    assert list(clients) == [bob.source]
    assert clients[bob.source] is server.allocation(bob.source, TCP)
    assert list(server.clients_on(UDP)) == [carol.source]
    assert error_code(bob.call(stun.Method.REFRESH, [(stun.LIFETIME, 0)], T0)) is None
    assert clients == {}  # deleted: gone from the view too
    server.tick(T0 + 3600)  # carol's expires
    assert server.clients_on(UDP) == {}


PEER2 = ("203.0.113.10", 6001)


def _stream(*frames: tuple[int, bytes]) -> bytes:
    return b"".join(stun.encode_channel_data(number, data, pad=True) for number, data in frames)


def test_channel_frames_relays_a_run_as_channel_data_does_one(server: TurnServer) -> None:
    bob = Client(server, ("198.51.100.8", 40001), TCP)
    bob.allocate(T0)
    bob.bind(0x4001, PEER, T0)
    bob.bind(0x4002, PEER2, T0)
    frames = [(0x4001, b"abc"), (0x4002, b"hello"), (0x4001, b""), (0x4003, b"zz"), (0x4001, b"q")]
    request = stun.Message(stun.Method.BINDING, stun.MsgClass.REQUEST, bytes(12)).encode()
    data = b"xy" + _stream(*frames) + request + _stream((0x4001, b"after"))
    allocation = server.clients_on(TCP)[bob.source]
    relayed: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
    end = server.channel_frames(allocation, data, 2, T0, relayed)
    assert data[end:].startswith(request)  # the run ends at the first frame of another kind
    # Each frame decided as the datagram path decides it (0x4003 is not bound: dropped).
    singles = [server.channel_data_fast(_stream(f), bob.source, TCP, T0) for f in frames]
    assert relayed == [found for found in singles if found is not None]
    assert [payload for _, _, payload in relayed] == [b"abc", b"hello", b"", b"q"]
    assert [peer for _, peer, _ in relayed] == [PEER, PEER2, PEER, PEER]
    assert server.counters.relayed_packets == 8
    assert server.counters.relayed_bytes == 18
    assert server.counters.dropped == 2


def test_channel_frames_stops_before_an_incomplete_frame(server: TurnServer) -> None:
    bob = Client(server, ("198.51.100.8", 40001), TCP)
    bob.allocate(T0)
    bob.bind(0x4001, PEER, T0)
    allocation = server.clients_on(TCP)[bob.source]
    whole = _stream((0x4001, b"abcde"))  # 4 + 5 bytes, padded to 12
    for cut in (1, 3, 4, 9, 11):  # the header, the payload, and the padding not all there
        relayed: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
        data = bytearray(whole + whole[:cut])  # a stream's buffer, as the service passes it
        assert server.channel_frames(allocation, cast(bytes, data), 0, T0, relayed) == len(whole)
        data[:] = bytes(len(data))  # the payloads are copies: the buffer may change afterwards
        assert relayed == [(bob.relay, PEER, b"abcde")]
        assert server.channel_frames(allocation, whole[:cut], 0, T0, relayed) == 0
    assert server.counters.dropped == 0


def test_channel_frames_drop_what_the_datagram_path_drops() -> None:
    server = make_server(max_bps=1000)
    bob = Client(server, ("198.51.100.8", 40001), TCP)
    bob.allocate(T0)
    bob.bind(0x4001, PEER, T0)
    allocation = server.clients_on(TCP)[bob.source]
    data = _stream(*[(0x4001, b"x" * 400)] * 3)
    relayed: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
    # max-bps: one second of burst, 1000 bytes; the third frame is over it.
    assert server.channel_frames(allocation, data, 0, T0, relayed) == len(data)
    assert len(relayed) == 2
    assert server.counters.dropped == 1
    # An expired channel, and a client whose allocation is gone: every frame dropped, counted.
    for held, now in [(allocation, T0 + 600), (None, T0 + 2)]:
        relayed.clear()
        before = server.counters.dropped
        assert server.channel_frames(held, data, 0, now, relayed) == len(data)
        assert relayed == []
        assert server.counters.dropped == before + 3
    assert server.counters.relayed_packets == 2


def test_send_indication_fast_drops_malformed_indications_silently(alice: Client) -> None:
    # RFC 8656 §11.2 / RFC 8489 §6.3.2: indications are never answered; the usual layout is
    # relayed, anything malformed or carrying an unknown comprehension-required attribute is
    # dropped and counted, by the fast entry point and by handle alike.
    server = alice.server
    alice.permit(PEER, T0)
    peer_attr = (stun.XOR_PEER_ADDRESS.type, stun.XOR_PEER_ADDRESS.encode(PEER, bytes(12)))
    data_attr = (stun.DATA.type, b"hello")

    def indication(attrs: list[tuple[int, bytes]], cut: int = 0) -> bytes:
        body = b"".join(
            struct.pack(">HH", kind, len(value)) + value + bytes(-len(value) & 3)
            for kind, value in attrs
        )
        body = body[: len(body) - cut]
        return struct.pack(">HHI12s", 0x0016, len(body), stun.MAGIC_COOKIE, bytes(12)) + body

    usual = indication([peer_attr, data_attr])
    fast = server.send_indication_fast(usual, alice.source, alice.transport, T0)
    assert fast == (alice.relay, PEER, b"hello")
    assert alice.send(usual, T0) == [SendToPeer(*fast)]
    v6_family = (peer_attr[0], peer_attr[1][:1] + b"\x02" + peer_attr[1][2:])
    for raw in [
        indication([peer_attr, data_attr, (0x0030, b"zz")]),  # unknown comprehension-required
        indication([peer_attr, data_attr], cut=4),  # DATA overruns the message
        indication([v6_family, data_attr]),  # an IPv6 family in 8 bytes
        indication([peer_attr]),  # no DATA
        indication([data_attr]),  # no XOR-PEER-ADDRESS
        usual[:-4],  # the header's length does not match
    ]:
        before = server.counters.dropped
        assert server.send_indication_fast(raw, alice.source, alice.transport, T0) is None
        assert server.handle(raw, alice.source, alice.transport, T0) == []
        assert server.counters.dropped == before + 2
    assert server.counters.relayed_packets == 2


def _send_reference(data: bytes, client: Client) -> tuple[Any, ...] | None:
    """What send_indication_fast must give for ``data`` from ``client`` (permitted for
    every peer in the shapes): the header's length checked, then the attribute walk."""
    if (data[2] << 8 | data[3]) != len(data) - stun.HEADER_LENGTH:
        return None
    try:
        found = stun.scan_send_indication(data, KNOWN_REQUIRED)
    except StunError:
        return None
    if found is None or found[0][0] != "198.51.100.9":
        return None
    return (client.relay, *found)


def test_send_indication_fast_agrees_with_the_attribute_walk(alice: Client) -> None:
    # The entry point reads the usual layout itself: every shape of test_stun, each of
    # their truncations and single-byte changes give what the length check and the walk give
    # (relayed, or dropped and counted).
    server = alice.server
    assert error_code(alice.permit(("198.51.100.9", 1), T0)) is None
    rng = random.Random(14)
    cases = []
    for name, base in SEND_INDICATION_SHAPES.items():
        cases.append(base)
        if name in ("usual", "usual, empty DATA", "fingerprint after", "IPv6 peer"):
            cases += [base[:cut] for cut in range(20, len(base))]
            for pos in range(2, len(base)):
                for value in {0, 1, 2, 3, 0x12, 0x13, 0x80, 0xFF, rng.randrange(256)}:
                    cases.append(base[:pos] + bytes([value]) + base[pos + 1 :])
    for data in cases:
        dropped = server.counters.dropped
        expected = _send_reference(data, alice)
        found = server.send_indication_fast(data, alice.source, alice.transport, T0)
        assert found == expected, data.hex()
        assert server.counters.dropped == dropped + (expected is None)


def test_relay_received_fast_matches_the_action_path(alice: Client) -> None:
    server = alice.server
    alice.bind(0x4001, PEER, T0)
    fast = server.relay_received_fast(alice.relay, b"xyz", PEER, T0)
    assert fast == (alice.five_tuple, b"\x40\x01\x00\x03xyz")
    (action,) = server.relay_received(alice.relay, b"xyz", PEER, T0)
    assert action == SendToClient(alice.transport, alice.source, fast[1])
    # Permission expired (300 s) though the channel lives 600 s: dropped by both.
    dropped = server.counters.dropped
    assert server.relay_received_fast(alice.relay, b"xyz", PEER, T0 + 300) is None
    assert server.relay_received(alice.relay, b"xyz", PEER, T0 + 300) == []
    # A peer IP without permission, or an unknown relay: dropped too.
    assert server.relay_received_fast(alice.relay, b"xyz", ("203.0.113.99", 1), T0) is None
    assert server.relay_received_fast(("127.0.0.1", 1), b"xyz", PEER, T0) is None
    assert server.counters.dropped == dropped + 3  # an unknown relay is not a drop to count
    assert (server.counters.relayed_packets, server.counters.relayed_bytes) == (2, 6)


@pytest.mark.parametrize("fingerprint", [True, False])
def test_data_indications_are_what_message_encodes(fingerprint: bool) -> None:
    # The lean Data indication (an IPv4 peer's attribute kept, ids from the random source in
    # blocks) gives Message's bytes, for IPv4 and IPv6 peers; a permission that expires in the
    # middle of a burst drops from that datagram on, and a new one relays again.
    server = make_server(
        listening_ips=("127.0.0.1", "::1"), allow_loopback_peers=True, fingerprint=fingerprint
    )
    client = Client(server)
    attrs: list[tuple[stun.Attr[Any], Any]] = [
        (stun.REQUESTED_TRANSPORT, 17),
        (stun.ADDITIONAL_ADDRESS_FAMILY, 2),
    ]
    client.request(stun.Method.ALLOCATE, attrs, T0)
    v4, v6 = ("127.0.0.1", 50000), ("::1", 50001)
    server.relay_opened(client.five_tuple, v4, None, T0, additional=v6)
    client.relay = v4
    tids, relayed, dropped = set(), 0, 0
    for relay, peer in [(v4, ("127.0.0.2", 7)), (v6, ("::1", 7))]:
        assert error_code(client.permit(peer, T0)) is None
        for n, payload in enumerate([b"", b"a", b"abcde", bytes(120)] * 20):
            now = T0 + 299.5 + n * 0.01  # the permission ends at T0 + 300, mid-burst
            found = server.relay_received_fast(relay, payload, peer, now)
            if now >= T0 + 300:
                assert found is None
                dropped += 1
                continue
            assert found is not None
            relayed += 1
            assert found[0] == client.five_tuple
            tid = found[1][8:20]
            tids.add(tid)
            msg = stun.Message(stun.Method.DATA, stun.MsgClass.INDICATION, tid)
            msg.add(stun.XOR_PEER_ADDRESS, peer)
            msg.add(stun.DATA, payload)
            assert found[1] == msg.encode(add_fingerprint=fingerprint)
        assert error_code(client.permit(peer, T0 + 301)) is None
        assert server.relay_received_fast(relay, b"again", peer, T0 + 301) is not None
    assert len(tids) == relayed  # a fresh transaction id for each
    assert relayed > 90
    assert dropped > 50
    assert server.counters.dropped == dropped


def test_fast_paths_honour_the_bandwidth_cap() -> None:
    server = make_server(max_bps=1000)
    client = Client(server)
    client.allocate(T0)
    client.bind(0x4000, PEER, T0)
    data = stun.encode_channel_data(0x4000, b"x" * 400)
    assert server.channel_data_fast(data, client.source, client.transport, T0) is not None
    assert server.relay_received_fast(client.relay, b"y" * 400, PEER, T0) is not None
    assert server.channel_data_fast(data, client.source, client.transport, T0) is None
    assert server.relay_received_fast(client.relay, b"y" * 400, PEER, T0) is None
    assert server.counters.dropped == 2


def test_default_quotas_keep_one_credential_from_locking_out_the_others() -> None:
    server = make_server()  # the defaults: user-quota 100, total-quota 1000
    assert (server.config.user_quota, server.config.total_quota) == (100, 1000)
    for port in range(1, 101):
        assert error_code(Client(server, ("192.0.2.1", port)).allocate(T0)) is None
    assert error_code(Client(server, ("192.0.2.1", 101)).allocate(T0)) == 486
    bob = Client(server, ("192.0.2.2", 1), username="bob", password="hunter2")
    assert error_code(bob.allocate(T0)) is None


def test_advertise_as_changes_what_new_allocations_are_told() -> None:
    # External-ip learned at run time (the window's relay, once the router forwards its ports).
    config = RelayConfig(listening_ips=("0.0.0.0",), external_ip=None)
    server = TurnServer(config)
    assert server.advertised_ip is None
    server.advertise_as("198.18.0.10")
    assert server._advertise(("0.0.0.0", 50000), "192.168.1.5") == ("198.18.0.10", 50000)
    server.advertise_as(None)  # back to the configuration: the address the client reached
    assert server._advertise(("0.0.0.0", 50000), "192.168.1.5") == ("192.168.1.5", 50000)
