"""A real browser (headless Chromium) gathers a relay candidate from a real relay process.

Chromium is driven over the DevTools protocol with the ``websockets`` library: the page runs
``new RTCPeerConnection({iceServers: [our turn: URI], iceTransportPolicy: "relay"})`` and we
collect what ``onicecandidate`` / ``onicecandidateerror`` report. libwebrtc's TURN client is
the one most users' browsers will use against a PeerCall relay.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from nat.auth import rest_credentials
from tests.nat.conftest import TurnServer, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed"),
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


@dataclass
class Browser:
    """A headless Chromium process and its DevTools websocket address."""

    proc: subprocess.Popen[bytes]
    ws_url: str


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = profile.parent / "chromium.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (active.exists() and len(active.read_text().splitlines()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"chromium did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    port, path = active.read_text().splitlines()[:2]
    yield Browser(proc, f"ws://127.0.0.1:{port}{path}")
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class DevTools:
    """Just enough of the Chrome DevTools protocol: numbered calls, events skipped."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]


async def gather(browser: Browser, uri: str, username: str, password: str) -> dict[str, Any]:
    """Run GATHER_JS in a fresh page; returns {"candidates": [...], "errors": [...]}."""
    async with connect(browser.ws_url, max_size=2**22) as ws:
        devtools = DevTools(ws)
        target = await devtools.call("Target.createTarget", url="about:blank")
        session = (
            await devtools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        )["sessionId"]
        try:
            script = GATHER_JS % {
                "uri": json.dumps(uri),
                "username": json.dumps(username),
                "password": json.dumps(password),
            }
            result = await devtools.call(
                "Runtime.evaluate",
                session,
                expression=script,
                awaitPromise=True,
                returnByValue=True,
            )
        finally:
            await devtools.call("Target.closeTarget", targetId=target["targetId"])
    assert "exceptionDetails" not in result, result
    value: dict[str, Any] = result["result"]["value"]
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
    browser: Browser, turn_server: TurnServer, transport: str
) -> None:
    gathered = await gather(
        browser, turn_server.uri(transport), turn_server.user, turn_server.password
    )
    found = relay_candidates(turn_server, gathered)
    assert found, f"no relay candidate: {gathered}"
    assert {address for address, _ in found} == {"127.0.0.1"}


async def test_chromium_gathers_with_rest_credentials(
    browser: Browser, server_kind: str, tmp_path: Path
) -> None:
    server = start_server(server_kind, "rest", tmp_path)
    try:
        username, password = rest_credentials(server.secret, "carol", 600, time.time())
        gathered = await gather(browser, server.uri("udp"), username, password)
    finally:
        server.stop()
    assert relay_candidates(server, gathered), f"no relay candidate: {gathered}"


async def test_chromium_reports_401_for_a_wrong_password(
    browser: Browser, turn_server: TurnServer
) -> None:
    gathered = await gather(browser, turn_server.uri("udp"), turn_server.user, "wrong")
    assert gathered["candidates"] == []
    assert any(error.startswith("401 ") for error in gathered["errors"]), gathered
