"""The call link: what `peercall call --print-link` and the window's "Copy call link" give."""

from __future__ import annotations

import subprocess
import sys

import pytest

from signaling.errors import SignalingError
from signaling.web import call_link
from tests.browser.conftest import REPO


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("ws://192.168.1.5:8765", "http://192.168.1.5:8765/#room=kitchen&secret=s3cret"),
        (
            "wss://call.example.org:8765/",
            "https://call.example.org:8765/#room=kitchen&secret=s3cret",
        ),
        ("WSS://[::1]:8765", "https://[::1]:8765/#room=kitchen&secret=s3cret"),
    ],
)
def test_link_is_the_page_on_the_servers_port(server: str, expected: str) -> None:
    assert call_link(server, "kitchen", "s3cret") == expected


def test_secret_is_percent_encoded() -> None:
    link = call_link("ws://h:1", "a.b_c~d-e", "p&w=d #1/é")
    assert link == "http://h:1/#room=a.b_c~d-e&secret=p%26w%3Dd%20%231%2F%C3%A9"


@pytest.mark.parametrize(
    ("server", "room", "secret", "message"),
    [
        ("http://h:1", "r", "s", "must be ws://HOST:PORT or wss://"),
        ("ws://", "r", "s", "must be ws://HOST:PORT or wss://"),
        ("ws://h:1", "bad room", "s", "must be 1-64 characters"),
        ("ws://h:1", "r", "", "needs a room secret of 1-256 characters"),
    ],
)
def test_bad_parts_are_named(server: str, room: str, secret: str, message: str) -> None:
    with pytest.raises(SignalingError, match=message):
        call_link(server, room, secret)


def peercall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--print-link needs --server: the signaling server serves the page"),
        (["--server", "ws://127.0.0.1:9", "--room", "r"], "needs a room secret"),
    ],
)
def test_print_link_mistakes_are_one_line_exit_2(args: list[str], message: str) -> None:
    result = peercall("call", "--no-devices", "--print-link", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
