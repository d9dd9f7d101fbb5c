"""The one link of a hosted call: both spellings round-trip; bad links get one clear line."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.link import CallLink, parse_link


def test_app_and_browser_links_round_trip():
    link = CallLink("198.18.0.2", 8765, "kitchen", "s/e+c r&t")
    assert link.app_url() == "peercall://198.18.0.2:8765/kitchen#secret=s%2Fe%2Bc%20r%26t"
    assert link.browser_url() == ("http://198.18.0.2:8765/#room=kitchen&secret=s%2Fe%2Bc%20r%26t")
    assert parse_link(link.app_url()) == link
    assert parse_link(link.browser_url()) == link
    assert link.signaling_url == "ws://198.18.0.2:8765"


def test_tls_and_ipv6():
    link = CallLink("2001:db8::7", 443, "r", "s", tls=True)
    assert link.app_url() == "peercall://[2001:db8::7]:443/r#secret=s&tls=1"
    assert link.browser_url() == "https://[2001:db8::7]:443/#room=r&secret=s"
    assert link.signaling_url == "wss://[2001:db8::7]:443"
    assert parse_link(link.app_url()) == link
    assert parse_link(f"<{link.browser_url()}>") == link  # pasted with angle brackets


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty link: paste the whole peercall://… or https://… link"),
        (
            "ftp://x/y",
            "not a PeerCall link: 'ftp://x/y' (it should start with peercall:// or https://)",
        ),
        (
            "peercall://h:99999/r#secret=1",
            "the link's port is not a number from 1 to 65535: 'h:99999'",
        ),
        ("peercall://h:1/r", "the link has no secret (cut off when it was copied?)"),
        ("peercall://h:1/#secret=x", "the link names no room (cut off when it was copied?)"),
        (
            "peercall://h:1/a%20b#secret=x",
            "the link's room 'a b' must be 1-64 characters of A-Z a-z 0-9 . _ ~ -",
        ),
        ("https://h/#secret=x", "the link names no room (cut off when it was copied?)"),
    ],
)
def test_bad_links(text, message):
    with pytest.raises(ConfigError) as info:
        parse_link(text)
    assert str(info.value) == message
