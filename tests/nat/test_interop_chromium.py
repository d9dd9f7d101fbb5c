"""A real browser (headless Chromium) gathers a relay candidate from a real relay process.

Chromium is driven over the DevTools protocol (tests/chromium.py): the page runs
``new RTCPeerConnection({iceServers: [our turn: URI], iceTransportPolicy: "relay"})`` and we
collect what ``onicecandidate`` / ``onicecandidateerror`` report. libwebrtc's TURN client is
the one most users' browsers will use against a PeerCall relay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nat.auth import rest_credentials
from tests.chromium import Chromium
from tests.chromium import available as chromium_available
from tests.nat.conftest import TurnServer, start_server

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(not chromium_available(), reason="chromium is not installed"),
]

GATHER_JS = """
(async () => {
  const pc = new RTCPeerConnection({
    iceServers: [{urls: %(uri)s, username: %(username)s, credential: %(password)s}],
    iceTransportPolicy: "relay",
  });
  const candidates = [], errors = [];
  const complete = new Promise((resolve) => {
    pc.onicecandidate = (e) => e.candidate ? candidates.push(e.candidate.candidate) : resolve();
  });
  pc.onicecandidateerror = (e) => errors.push(`${e.errorCode} ${e.errorText} ${e.url}`);
  pc.createDataChannel("probe");
  await pc.setLocalDescription(await pc.createOffer());
  await Promise.race([complete, new Promise((r) => setTimeout(r, 15000))]);
  pc.close();
  return {candidates, errors};
})()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


async def gather(browser: Chromium, uri: str, username: str, password: str) -> dict[str, Any]:
    """Run GATHER_JS in a fresh page; returns {"candidates": [...], "errors": [...]}."""
    script = GATHER_JS % {
        "uri": json.dumps(uri),
        "username": json.dumps(username),
        "password": json.dumps(password),
    }
    async with browser.devtools() as tools:
        page = await tools.new_page()
        try:
            value: dict[str, Any] = await page.evaluate(script)
        finally:
            await page.close()
    return value


def relay_candidates(server: TurnServer, gathered: dict[str, Any]) -> list[tuple[str, int]]:
    """(address, port) of every relay candidate; all must be in the server's relay range."""
    found = []
    for line in gathered["candidates"]:
        parts = line.split()
        assert parts[parts.index("typ") + 1] == "relay", line  # the policy is relay-only
        found.append((parts[4], int(parts[5])))
    low, high = server.relay_ports
    assert all(low <= port <= high for _, port in found), (found, server.relay_ports)
    return found


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_chromium_gathers_a_relay_candidate(
    browser: Chromium, turn_server: TurnServer, transport: str
) -> None:
    gathered = await gather(
        browser, turn_server.uri(transport), turn_server.user, turn_server.password
    )
    found = relay_candidates(turn_server, gathered)
    assert found, f"no relay candidate: {gathered}"
    assert {address for address, _ in found} == {"127.0.0.1"}


async def test_chromium_gathers_with_rest_credentials(
    browser: Chromium, server_kind: str, tmp_path: Path
) -> None:
    server = start_server(server_kind, "rest", tmp_path)
    try:
        username, password = rest_credentials(server.secret, "carol", 600, time.time())
        gathered = await gather(browser, server.uri("udp"), username, password)
    finally:
        server.stop()
    assert relay_candidates(server, gathered), f"no relay candidate: {gathered}"


async def test_chromium_reports_401_for_a_wrong_password(
    browser: Chromium, turn_server: TurnServer
) -> None:
    gathered = await gather(browser, turn_server.uri("udp"), turn_server.user, "wrong")
    assert gathered["candidates"] == []
    assert any(error.startswith("401 ") for error in gathered["errors"]), gathered
