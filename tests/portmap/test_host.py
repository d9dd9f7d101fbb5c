"""CallHost on loopback (no router): servers, room, link, handed-out credentials, clean stop."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from app.errors import ConfigError
from app.host import CallHost, HostOptions, ip_range
from app.link import parse_link
from signaling.client import WebSocketChannel
from signaling.errors import PeerRejected
from tests.nat.conftest import free_udp_tcp_port


def free_port() -> int:
    return free_udp_tcp_port()  # TURN listens on UDP and TCP with one number


def options(**kw: object) -> HostOptions:
    values: dict[str, object] = {
        "listen": "127.0.0.1",
        "signaling_port": 0,
        "turn_port": free_port(),
        "min_port": 50010,
        "max_port": 50013,
        "map_ports": False,
    }
    values.update(kw)
    return HostOptions(**values)  # type: ignore[arg-type]


async def test_host_hands_out_relay_credentials_to_whoever_has_the_link():
    host = CallHost(options(stun_servers=(("198.18.0.1", 3478),)))
    status = await host.start()
    try:
        assert status.address_source == "LAN only"
        assert status.mapping_line == "port mapping: off"
        link = parse_link(status.link.app_url())
        assert link == status.link
        assert link.host == "127.0.0.1"
        assert len(link.secret) >= 24  # 144 random bits
        friend = WebSocketChannel(link.signaling_url, link.room, link.secret, reconnect=False)
        await friend.connect()
        urls = [s["urls"] for s in friend.ice_servers]
        await friend.close()
        flat = [u for x in urls for u in ([x] if isinstance(x, str) else x)]
        assert "stun:198.18.0.1:3478" in flat
        assert f"turn:127.0.0.1:{host.options.turn_port}?transport=udp" in flat
        # A stranger guessing the room without the secret is refused.
        stranger = WebSocketChannel(link.signaling_url, link.room, "guess", reconnect=False)
        with pytest.raises(PeerRejected):
            await stranger.connect()
        await stranger.close()
    finally:
        await host.stop()
        await host.stop()  # idempotent
    assert host.relay is None
    assert host.signaling is None


async def test_rooms_and_secrets_are_random():
    a, b = CallHost(options()), CallHost(options())
    assert a.room != b.room
    assert a.room_secret != b.room_secret
    assert a.turn_secret != b.turn_secret


async def test_the_relay_may_reach_this_computer_but_the_rest_of_the_lan_stays_denied():
    host = CallHost(options(listen="0.0.0.0"))
    status = await host.start()
    try:
        own = ipaddress.ip_address(status.link.host)
        allowed = host.relay.config.allowed_peer_ips
        if own.is_loopback:
            assert allowed == ()
        else:
            assert allowed == ((own, own),)
        assert host.relay.config.denied_peer_ips == ()  # the built-in private deny list applies
    finally:
        await host.stop()


async def test_a_busy_port_stops_everything_started():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        host = CallHost(options(signaling_port=busy.getsockname()[1]))
        with pytest.raises(Exception, match=r"in use|address"):
            await host.start()
    assert host.signaling is None
    assert host.relay is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"min_port": 50010, "max_port": 50000}, "relay ports: 50010 is above 50000"),
        ({"min_port": 50000, "max_port": 50300}, "relay ports: at most 256"),
        ({"public_address": "my.host"}, "--public-address 'my.host' is not an IP address"),
    ],
)
def test_bad_options(kw, message):
    with pytest.raises(ConfigError, match=message):
        options(**kw)


def test_ip_range():
    low, high = ip_range("198.18.0.0-198.18.0.255")
    assert (str(low), str(high)) == ("198.18.0.0", "198.18.0.255")
    with pytest.raises(ConfigError, match="expected an IP or a range A-B"):
        ip_range("nope")


def test_the_printed_join_command_parses_when_the_secret_begins_with_a_dash():
    """A random secret starts with "-" about once in 64 hosts: the join line must still parse
    (``--secret -x…`` made argparse refuse it, and the host never answered)."""
    import argparse
    import io
    import shlex

    from app.call_cli import configure_parser
    from app.host import HostStatus, print_status
    from app.link import CallLink

    link = CallLink("198.18.0.10", 8765, "room1", "-starts-with-a-dash")
    status = HostStatus(
        link=link,
        local_link=CallLink("127.0.0.1", 8765, "room1", "-starts-with-a-dash"),
        address_source="given",
        mapping_line="mapping: none",
        own_ice_server="peercall-host:pw@turn:127.0.0.1:3478",
    )
    out = io.StringIO()
    print_status(status, out, qr=False)
    line = out.getvalue().split("join it yourself: peercall ", 1)[1].splitlines()[0]
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(shlex.split(line)[1:])  # after the "call" subcommand
    assert args.secret == "-starts-with-a-dash"
    assert args.answer
