"""Each mistake a person can make with a call link gets one clear line on the page.

Wrong secret, full room, denied camera, unreachable server, a malformed link: the text of
``#error`` is asserted, not just that something went wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.browser.conftest import PAGE, SIGNAL_PORT, Process, running
from tests.browser.lab import LoopbackNamespace
from tests.browser.test_calls import link
from tests.chromium import Chromium, DevTools

ERROR = "document.getElementById('error').textContent"


async def test_wrong_secret(devtools: DevTools, signal_server: Process) -> None:
    first = await devtools.new_page(link("den", "right", "loopback"))
    await first.wait_for("document.body.dataset.state === 'waiting'")
    second = await devtools.new_page(link("den", "wrong", "loopback"))
    message = await second.wait_for(ERROR)
    assert message == 'Wrong secret for room "den": check the link you were sent.'
    assert await second.evaluate("document.body.dataset.state") == "failed"
    # The one who was waiting is undisturbed.
    assert await first.evaluate("document.body.dataset.state") == "waiting"


async def test_full_room(devtools: DevTools, signal_server: Process) -> None:
    first = await devtools.new_page(link("hall", "pw", "loopback"))
    await first.wait_for("document.body.dataset.state === 'waiting'")
    second = await devtools.new_page(link("hall", "pw", "loopback"))
    for page in (first, second):  # both seats taken
        await page.wait_for("document.body.dataset.state === 'connected'")
    third = await devtools.new_page(link("hall", "pw", "loopback"))
    message = await third.wait_for(ERROR)
    assert message == 'Room "hall" is full: two people are already in it.'


async def test_denied_camera_and_microphone(lab: LoopbackNamespace, signal_server: Process) -> None:
    # A browser that asks (no auto-accepting fake prompt), and a user who clicked Block.
    with Chromium(
        prefix=lab.prefix,
        connect_tcp=lab.connect_tcp,
        without=["--use-fake-ui-for-media-stream"],
    ) as browser:
        async with browser.devtools() as devtools:
            page = await devtools.new_page()
            await page.deny(PAGE.rstrip("/"), "camera", "microphone")
            await page.goto(link("loft", "pw", "loopback"))
            message = await page.wait_for(ERROR)
            state = await page.wait_for(
                "document.body.dataset.state === 'waiting' && document.body.dataset.state"
            )
    assert message == (
        "Camera and microphone access was denied: allow them for this site (the icon in the "
        "address bar) and reload. Joining without sending audio or video."
    )
    assert state == "waiting"  # it still joins, to listen and watch


async def test_unreachable_server(devtools: DevTools, signal_server: Process) -> None:
    page = await devtools.new_page(PAGE)
    await page.wait_for("!document.getElementById('join-form').hidden")
    signal_server.stop()  # the page is loaded; now the server is gone
    await page.type("room", "garden")
    await page.type("secret", "pw")
    await page.click("join")
    message = await page.wait_for(ERROR)
    assert message == (
        f"Cannot reach the signaling server at ws://127.0.0.1:{SIGNAL_PORT}/: check that it is "
        "running and that the address is right."
    )


async def test_malformed_links(devtools: DevTools, signal_server: Process) -> None:
    cases = {
        PAGE + "#room=bad room!&secret=pw": (
            'Room name "bad room!" must be 1-64 characters of A-Z a-z 0-9 . _ ~ -'
        ),
        PAGE + "#room=kitchen": "Enter the room secret (the link should carry it as &secret=…).",
        PAGE + "#secret=pw": "The link names no room: it should end like #room=kitchen&secret=…",
        PAGE
        + "#room=kitchen&secret="
        + "x" * 257: "The room secret is longer than 256 characters.",
    }
    for url, expected in cases.items():
        page = await devtools.new_page(url)
        assert await page.wait_for(ERROR) == expected, url
        # The form is offered to fix it.
        assert await page.evaluate("!document.getElementById('join-form').hidden")
        await page.close()


async def test_locked_out_after_repeated_wrong_secrets(
    devtools: DevTools, signal_server: Process
) -> None:
    """The server locks an address out after a few wrong secrets; the page says so and stops."""
    owner = await devtools.new_page(link("safe", "right", "loopback"))
    await owner.wait_for("document.body.dataset.state === 'waiting'")
    # The first few mistakes are free (typos); then each one locks a growing while.
    for attempt in range(15):
        page = await devtools.new_page(link("safe", f"guess{attempt}", "loopback"))
        message = await page.wait_for(ERROR)
        state = await page.wait_for("document.body.dataset.state === 'failed' && 'failed'")
        await page.close()
        if not message.startswith("Wrong secret"):
            break
    assert re.fullmatch(
        r"Signaling server: too many wrong room secrets; try again in \d+ s", message
    ), message
    assert state == "failed"


async def test_plain_http_on_a_lan_address_explains_https(
    lab: LoopbackNamespace, devtools: DevTools, tmp_path: Path
) -> None:
    """http:// from another machine is not a secure context: no camera, and the page says why."""
    lan = "198.19.7.1"  # a LAN address of the lab's own (namespace-private) range
    lab.run("ip", "addr", "add", f"{lan}/32", "dev", "lo")
    try:
        with running(
            lab,
            tmp_path / "signal.log",
            "signal",
            "--host",
            lan,
            "--port",
            str(SIGNAL_PORT),
            ready=r"^ready",
        ):
            page = await devtools.new_page(f"http://{lan}:{SIGNAL_PORT}/#room=porch&secret=pw")
            message = await page.wait_for(ERROR)
            assert message == (
                "This page needs https:// (or http://localhost) to use the camera and "
                "microphone: ask for an https link. You can still listen and watch."
            )
            await page.wait_for("document.body.dataset.state === 'waiting'")
    finally:
        lab.run("ip", "addr", "del", f"{lan}/32", "dev", "lo")
