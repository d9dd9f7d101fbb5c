"""A real browser joins a call: headless Chromium loads the page from a real `peercall signal`.

Browser ↔ desktop (`peercall call`) in both offer directions, browser ↔ browser, relay-only
through `peercall relay` with credentials the signaling server issued, and the same six-digit
security code as the desktop's on the same fingerprints. What is heard is analysed: the
desktop's recording (WAV) for the browser's tone, a WebAudio analyser on the page's remote
stream for the desktop's tone.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.media.analysis import tone_power
from tests.browser.conftest import (
    BROWSER_TONE,
    DESKTOP_TONE,
    PAGE,
    RELAY_PORT,
    RELAY_PORTS,
    SERVER,
    SIGNAL_PORT,
    TURN_SECRET,
    Process,
    running,
)
from tests.browser.lab import LoopbackNamespace
from tests.certs import make_cert
from tests.chromium import DevTools, Page

SECRET = "s3cret"
SAS_RE = r"security code \(SAS\) (\d{3} \d{3})"

# Listen to the page's remote stream (what the <video> plays) for ~2 s: the strongest
# frequency, how far it stands above the median bin, and the level at %(freq)s (dB).
HEAR_JS = """
(async () => {
  const ctx = new AudioContext();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(document.getElementById("remote-video").srcObject);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const power = new Float64Array(bins.length);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    analyser.getFloatFrequencyData(bins);
    bins.forEach((db, k) => { power[k] += Math.pow(10, db / 10); });
  }
  await ctx.close();
  let peak = 1;
  for (let k = 1; k < power.length; k++) if (power[k] > power[peak]) peak = k;
  const sorted = Array.from(power).sort((a, b) => a - b);
  const median = sorted[sorted.length >> 1] || 1e-30;
  const toneBin = Math.round((%(freq)s * analyser.fftSize) / ctx.sampleRate);
  return {
    peakHz: (peak * ctx.sampleRate) / analyser.fftSize,
    aboveMedianDb: 10 * Math.log10(Math.max(1e-30, power[peak]) / median),
    // Floored: digital silence would be -Infinity, which JSON cannot carry.
    toneDb: 10 * Math.log10(Math.max(1e-30, ...power.slice(toneBin - 2, toneBin + 3)) / 20),
  };
})()
"""

CONNECTED = "document.body?.dataset.state === 'connected'"

# Mean brightness (0-255) of the remote video as the page shows it right now.
BRIGHTNESS_JS = """
(() => {
  const video = document.getElementById("remote-video");
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 48;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(video, 0, 0, 64, 48);
  const data = ctx.getImageData(0, 0, 64, 48).data;
  let sum = 0;
  for (let i = 0; i < data.length; i += 4) sum += (data[i] + data[i + 1] + data[i + 2]) / 3;
  return sum / (data.length / 4);
})()
"""


def desktop_sas(fingerprint_a: str, fingerprint_b: str) -> str:
    """The desktop engine's own SAS function (app.call.sas once the call core moved there)."""
    where = "app.call.sas" if importlib.util.find_spec("app.call.sas") else "app.session"
    sas: str = importlib.import_module(where).short_auth_string(fingerprint_a, fingerprint_b)
    return sas


def link(room: str, secret: str = SECRET, *flags: str) -> str:
    return PAGE + "#" + "&".join([f"room={room}", f"secret={secret}", *flags])


def desktop(lab: LoopbackNamespace, tmp_path: Path, room: str, *extra: str) -> Process:
    """`peercall call` sending a 1 kHz tone and recording what it hears, 12 s once connected."""
    return Process(
        lab,
        tmp_path / "desktop.log",
        "call",
        "--server",
        SERVER,
        "--room",
        room,
        "--secret",
        SECRET,
        "--loopback",
        "--no-devices",
        "--send-tone",
        str(DESKTOP_TONE),
        "--record",
        str(tmp_path / "desktop-heard.wav"),
        "--duration",
        "12",
        "--chat",
        "hello from the desktop",
        *extra,
    )


def heard_in_wav(path: Path, freq: float) -> tuple[float, float]:
    """(power at ``freq``, the strongest power at other test frequencies) in the recording."""
    with wave.open(str(path)) as recording:
        rate = recording.getframerate()
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype="<i2")
    others = [f for f in (300.0, 500.0, 800.0, DESKTOP_TONE, 1500.0) if abs(f - freq) > 50]
    return tone_power(samples, freq, rate), max(tone_power(samples, f, rate) for f in others)


async def hears(page: Page, freq: float) -> dict[str, Any]:
    heard: dict[str, Any] = await page.evaluate(HEAR_JS % {"freq": freq})
    assert abs(heard["peakHz"] - freq) < 15, heard
    assert heard["aboveMedianDb"] > 30, heard
    return heard


async def chat_both_ways(page: Page, desktop_proc: Process) -> None:
    await page.wait_for(
        "document.getElementById('chat-log').textContent.includes('hello from the desktop')"
    )
    await page.type("chat-input", "hello from the browser")
    await page.click("chat-send")
    await desktop_proc.until(r"^<peer> hello from the browser$")


async def wait_connected(page: Page, proc: Process) -> None:
    """The page reaches connected; a desktop that exits first fails at once, with its output."""
    for _ in range(300):
        if await page.evaluate(CONNECTED):
            return
        if proc.proc.poll() is not None:
            raise AssertionError(f"the desktop exited before connecting:\n{proc.output()}")
        await asyncio.sleep(0.1)
    await page.wait_for(CONNECTED, within=0)  # fails with the page's state


async def check_browser_desktop_call(page: Page, proc: Process, wav: Path, badge: str) -> None:
    """Connected, same SAS, tone each way, chat each way, hang-up reaches the page."""
    await wait_connected(page, proc)
    browser_sas = await page.wait_for("document.getElementById('sas').textContent")
    desktop_sas = (await proc.until(SAS_RE)).group(1)
    assert browser_sas == desktop_sas
    await page.wait_for(f"document.getElementById('badge').textContent.startsWith({badge!r})")
    await hears(page, DESKTOP_TONE)
    await chat_both_ways(page, proc)
    assert await proc.finished() == 0, proc.output()
    await page.wait_for("document.getElementById('status').textContent.includes('hung up')")
    tone, other = heard_in_wav(wav, BROWSER_TONE)
    assert tone > 1e-4, (tone, other)
    assert tone > 30 * other, (tone, other)


async def test_browser_calls_desktop(
    lab: LoopbackNamespace, devtools: DevTools, signal_server: Process, tmp_path: Path
) -> None:
    proc = desktop(lab, tmp_path, "kitchen", "--answer")
    try:
        page = await devtools.new_page(link("kitchen", SECRET, "loopback"))
        await check_browser_desktop_call(
            page, proc, tmp_path / "desktop-heard.wav", "connected direct"
        )
        assert "call answering" in proc.output()  # the browser made the offer
    finally:
        proc.stop()


async def test_desktop_calls_browser(
    lab: LoopbackNamespace, devtools: DevTools, signal_server: Process, tmp_path: Path
) -> None:
    proc = desktop(lab, tmp_path, "porch", "--print-link")
    try:
        await proc.until(r"call offering")
        printed = (await proc.until(r"^(http://\S+)$")).group(1)
        assert printed == link("porch", SECRET)
        # The printed link as the person gets it; "loopback" keeps the test on 127.0.0.1.
        page = await devtools.new_page(printed + "&loopback")
        await check_browser_desktop_call(
            page, proc, tmp_path / "desktop-heard.wav", "connected direct"
        )
    finally:
        proc.stop()


async def test_browser_to_browser(devtools: DevTools, signal_server: Process) -> None:
    first = await devtools.new_page(link("attic", SECRET, "loopback"))
    await first.wait_for("document.body.dataset.state === 'waiting'")
    second = await devtools.new_page(link("attic", SECRET, "loopback"))
    for page in (first, second):
        await page.wait_for(CONNECTED)
    sas = [
        await page.wait_for("document.getElementById('sas').textContent")
        for page in (first, second)
    ]
    assert sas[0] == sas[1]
    assert re.fullmatch(r"\d{3} \d{3}", sas[0])
    for page in (first, second):
        assert (await page.text("badge")).startswith("connected direct")
        # What a person sees: the call, not the join form (hidden must beat the CSS display).
        shown = "getComputedStyle(document.getElementById(%r)).display"
        assert await page.evaluate(shown % "join-form") == "none"
        assert await page.evaluate(shown % "call") != "none"
        await hears(page, 660.0)  # both fake microphones play the test tone
    # Mute: the other side hears the tone no more (its level drops by far); unmute: it is back.
    before = await hears(second, 660.0)
    await first.click("mute")
    assert await first.text("mute") == "Unmute"
    await asyncio.sleep(0.5)  # what was already on its way plays out
    muted: dict[str, Any] = await second.evaluate(HEAR_JS % {"freq": 660.0})
    assert muted["toneDb"] < before["toneDb"] - 30, (before, muted)
    await first.click("mute")
    assert await first.text("mute") == "Mute"
    await hears(second, 660.0)
    # Camera off: the other side's picture goes black; on again: it comes back.
    assert await second.wait_for(f"{BRIGHTNESS_JS} > 40 && {BRIGHTNESS_JS}")
    await first.click("camera")
    assert await first.text("camera") == "Camera on"
    await second.wait_for(f"{BRIGHTNESS_JS} < 5")
    await first.click("camera")
    await second.wait_for(f"{BRIGHTNESS_JS} > 40")
    await first.type("chat-input", "hi from the first")
    await first.click("chat-send")
    await second.wait_for(
        "document.getElementById('chat-log').textContent.includes('hi from the first')"
    )
    await second.type("chat-input", "hi from the second")
    await second.click("chat-send")
    await first.wait_for(
        "document.getElementById('chat-log').textContent.includes('hi from the second')"
    )
    await second.click("hangup")
    await first.wait_for("document.getElementById('status').textContent.includes('hung up')")


async def test_sas_is_the_desktops_function(devtools: DevTools, signal_server: Process) -> None:
    page = await devtools.new_page(PAGE)
    vectors = [
        ("sha-256 AB:CD:EF", "sha-256 01:02:03"),
        ("sha-256 01:02:03", "sha-256 AB:CD:EF"),  # either order
        ("  sha-256 ab:cd:ef ", "SHA-256 01:02:03"),  # case and spaces
        ("sha-512 " + ":".join(["7F"] * 64), "sha-256 " + ":".join(["00"] * 32)),
    ]
    for a, b in vectors:
        got = await page.evaluate(
            f"import('/sas.js').then(m => m.shortAuthString({json.dumps(a)}, {json.dumps(b)}))"
        )
        assert got == desktop_sas(a, b), (a, b)


# --- relay-only, with TURN credentials issued by the signaling server --------------------


@pytest.fixture
def turn_signal(lab: LoopbackNamespace, tmp_path: Path) -> Iterator[tuple[Process, Process]]:
    """`peercall relay` (shared secret) and `peercall signal` handing out its credentials."""
    with (
        running(
            lab,
            tmp_path / "relay.log",
            "relay",
            "--listening-ip",
            "127.0.0.1",
            "--listening-port",
            str(RELAY_PORT),
            "--min-port",
            str(RELAY_PORTS[0]),
            "--max-port",
            str(RELAY_PORTS[1]),
            "--realm",
            "peercall.test",
            "--use-auth-secret",
            "--static-auth-secret",
            TURN_SECRET,
            "--allow-loopback-peers",
            ready=r"relay ready",
        ) as relay,
        running(
            lab,
            tmp_path / "signal.log",
            "signal",
            "--port",
            str(SIGNAL_PORT),
            "--turn-secret",
            TURN_SECRET,
            "--turn-uri",
            f"turn:127.0.0.1:{RELAY_PORT}?transport=udp",
            ready=r"^ready",
        ) as signal,
    ):
        yield relay, signal


@pytest.mark.parametrize("desktop_answers", [True, False], ids=["browser-offers", "desktop-offers"])
async def test_browser_relay_only(
    lab: LoopbackNamespace,
    devtools: DevTools,
    turn_signal: Any,
    tmp_path: Path,
    desktop_answers: bool,
) -> None:
    proc = desktop(lab, tmp_path, "cellar", *(["--answer"] if desktop_answers else []))
    try:
        page = await devtools.new_page(link("cellar", SECRET, "loopback", "relay"))
        await check_browser_desktop_call(
            page, proc, tmp_path / "desktop-heard.wav", "connected via relay"
        )
        # The desktop is not relay-only: it sends to the browser's relay candidate.
        assert re.search(
            r"^peercall: path via (the other person's relay|relay)", proc.output(), re.MULTILINE
        )
    finally:
        proc.stop()


@pytest.mark.parametrize("desktop_answers", [True, False], ids=["browser-offers", "desktop-offers"])
async def test_desktop_relay_only(
    lab: LoopbackNamespace,
    devtools: DevTools,
    turn_signal: Any,
    tmp_path: Path,
    desktop_answers: bool,
) -> None:
    room = "shed"
    proc = desktop(lab, tmp_path, room, "--relay-only", *(["--answer"] if desktop_answers else []))
    try:
        page = await devtools.new_page(link(room, SECRET, "loopback"))
        await check_browser_desktop_call(
            page, proc, tmp_path / "desktop-heard.wav", "connected via relay"
        )
        # Through its own relay, with the credentials the signaling server issued.
        output = proc.output()
        assert "ICE servers from the signaling server: turn:127.0.0.1:3478" in output
        assert re.search(r"^peercall: path via relay turn:\S+ \(ours\)", output, re.MULTILINE)
    finally:
        proc.stop()


async def test_over_https_with_a_self_signed_certificate(
    lab: LoopbackNamespace, devtools: DevTools, tmp_path: Path
) -> None:
    """`peercall signal --cert/--key` serves the page over https and signals over wss://."""
    cert, key = make_cert(tmp_path)
    with running(
        lab,
        tmp_path / "signal.log",
        "signal",
        "--port",
        str(SIGNAL_PORT),
        "--cert",
        str(cert),
        "--key",
        str(key),
        ready=r"^ready",
    ) as signal:
        assert f"listening on wss://127.0.0.1:{SIGNAL_PORT}" in signal.output()
        url = f"https://127.0.0.1:{SIGNAL_PORT}/#room=vault&secret={SECRET}&loopback"
        # The guest clicked through the self-signed certificate warning.
        first = await devtools.new_page(url, ignore_tls=True)
        await first.wait_for("document.body.dataset.state === 'waiting'")
        second = await devtools.new_page(url, ignore_tls=True)
        for page in (first, second):
            await page.wait_for(CONNECTED)
            assert await page.evaluate("window.isSecureContext && location.protocol") == "https:"
            assert await page.evaluate("document.getElementById('local-video').srcObject !== null")


async def test_call_survives_a_signaling_server_restart(
    lab: LoopbackNamespace, devtools: DevTools, tmp_path: Path
) -> None:
    """The signaling server restarts mid-call: media goes on, the page re-joins, bye arrives."""
    args = ("signal", "--port", str(SIGNAL_PORT))
    with running(lab, tmp_path / "signal-1.log", *args, ready=r"^ready"):
        first = await devtools.new_page(link("lobby", SECRET, "loopback"))
        await first.wait_for("document.body.dataset.state === 'waiting'")
        second = await devtools.new_page(link("lobby", SECRET, "loopback"))
        for page in (first, second):
            await page.wait_for(CONNECTED)
    for page in (first, second):  # the server is gone; the call is not
        await page.wait_for(
            "document.getElementById('status').textContent.includes('reconnecting')"
        )
        assert await page.evaluate(CONNECTED)
    with running(lab, tmp_path / "signal-2.log", *args, ready=r"^ready"):
        for page in (first, second):
            await page.wait_for(
                "document.getElementById('status').textContent.startsWith('Connected.')"
            )
        await first.click("hangup")
        await second.wait_for("document.getElementById('status').textContent.includes('hung up')")


async def test_desktop_restarts_ice_on_a_dead_path(
    lab: LoopbackNamespace, devtools: DevTools, signal_server: Process, tmp_path: Path
) -> None:
    """The desktop's path dies for good: it renegotiates on a fresh one and the page follows."""
    proc = desktop(lab, tmp_path, "stairs", "--duration", "60")
    try:
        await proc.until(r"call offering")
        page = await devtools.new_page(link("stairs", SECRET, "loopback"))
        await wait_connected(page, proc)
        sas = await page.wait_for("document.getElementById('sas').textContent")
        found = await proc.until(r"^peercall: path direct .*: 127\.0\.0\.1:(\d+) <-> ")
        port = found.group(1)
        # Everything to or from the desktop's first port is dropped from now on.
        lab.run("nft", "add", "table", "inet", "cut")
        for hook in ("input", "output"):
            lab.run(
                "nft", "add", "chain", "inet", "cut", hook,
                f"{{ type filter hook {hook} priority 0 ; }}",
            )  # fmt: skip
            for direction in ("sport", "dport"):
                lab.run("nft", "add", "rule", "inet", "cut", hook, "udp", direction, port, "drop")
        await proc.until(r"call reconnecting")
        await proc.until(r"call reconnecting[\s\S]*call connected", within=40)
        await page.type("chat-input", "still here")
        await page.click("chat-send")
        await proc.until(r"^<peer> still here$")
        assert await page.evaluate(CONNECTED)
        assert await page.text("sas") == sas  # same certificates: the same security code
        assert await page.text("error") == ""
    finally:
        proc.stop()
