"""The ring: the pattern as numbers, and the tone heard on a virtual sound card's monitor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.history import History
from app.media.analysis import tone_power
from app.media.audio import MicrophoneTrack
from app.media.base import AUDIO_RATE
from app.session import CallOptions, CallSession
from app.settings import Settings
from app.ui import callsetup
from app.ui.mainwindow import MainWindow
from app.ui.ring import Ringer, RingPattern, ring_samples
from signaling.memory import memory_pair
from tests.audio import VirtualAudio

PATTERN = RingPattern()


def test_pattern_is_425_hz_for_one_second_then_three_seconds_of_silence() -> None:
    one_period = ring_samples(PATTERN, 0, 4 * AUDIO_RATE)
    on, off = one_period[:AUDIO_RATE], one_period[AUDIO_RATE:]
    assert tone_power(on, 425) > 0.03  # amplitude 0.3 -> 0.045 minus the 5 ms fades
    assert tone_power(on, 1000) < 1e-6
    assert not off.any()
    # Blocks asked for one by one join seamlessly (what the paced track does).
    pieces = np.concatenate([ring_samples(PATTERN, i, 960) for i in range(0, 8 * 960, 960)])
    assert np.array_equal(pieces, ring_samples(PATTERN, 0, 8 * 960))
    # The cadence repeats: the second period starts like the first.
    assert np.array_equal(ring_samples(PATTERN, 4 * AUDIO_RATE, 960), one_period[:960])


def test_bursts_fade_in_and_out_without_a_click() -> None:
    start = ring_samples(PATTERN, 0, 48)
    assert abs(int(start[0])) == 0
    assert np.abs(start.astype(np.int32)).max() < 0.3 * 32767 * 0.25  # still ramping at 1 ms
    end = ring_samples(PATTERN, AUDIO_RATE - 24, 24)
    assert np.abs(end.astype(np.int32)).max() < 0.3 * 32767 * 0.15


async def test_a_disabled_or_deviceless_ringer_is_silent_and_does_not_raise() -> None:
    silent = Ringer(enabled=False)
    await silent.start()
    assert not silent.is_ringing()
    await silent.stop()
    missing = Ringer("no such speaker at all")
    await missing.start()
    assert not missing.is_ringing()
    assert missing.last_error is not None
    await missing.stop()


async def record(mic: MicrophoneTrack, blocks: int) -> np.ndarray:
    frames = [await asyncio.wait_for(mic.recv(), 5) for _ in range(blocks)]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])  # type: ignore[attr-defined]


HALF_SECOND = 25  # 20 ms blocks
CADENCE = 4 * 50  # one ring period (1 s tone + 3 s silence) in 20 ms blocks


async def record_until(mic: MicrophoneTrack, *, ringing: bool, limit: int) -> np.ndarray:
    """The first half second, within ``limit`` blocks, whose ring tone is on (``ringing``) or
    gone; how long the playout path lags on a loaded machine does not matter.

    Fails if it never comes: the condition is waited for, not assumed after a fixed delay.
    """
    blocks: list[np.ndarray] = []
    for _ in range(limit):
        blocks.append(await record(mic, 1))
        if len(blocks) < HALF_SECOND:
            continue
        window = np.concatenate(blocks[-HALF_SECOND:])
        power = tone_power(window, 425)
        if (power > 0.01) if ringing else (power < 1e-6):
            return window
    raise AssertionError(f"the ring was never {'heard' if ringing else 'silent'} in {limit} blocks")


def loudest_half_second(samples: np.ndarray) -> float:
    """The ring tone's power in the loudest half second of ``samples``."""
    step = HALF_SECOND * 960
    return max(tone_power(samples[i : i + step], 425) for i in range(0, len(samples), step))


@pytest.mark.audio
async def test_ring_is_heard_on_the_speaker_monitor_and_stops(virtual_audio: VirtualAudio) -> None:
    mic = MicrophoneTrack("pulse")  # the default source is the speaker's monitor
    ringer = Ringer("pulse")
    try:
        before = await record(mic, 10)
        await ringer.start()
        assert ringer.is_ringing()
        await ringer.start()  # idempotent
        # Heard within one ring period, however late the playout path delivers it.
        during = await record_until(mic, ringing=True, limit=CADENCE)
        await ringer.stop()
        assert not ringer.is_ringing()
        await record_until(mic, ringing=False, limit=CADENCE)  # what was queued drains
        # A whole ring period of silence: a ringer still playing would burst within it.
        after = await record(mic, CADENCE + HALF_SECOND)
    finally:
        await ringer.stop()
        mic.stop()
    assert tone_power(before, 425) < 1e-6  # the control: silence before the ring
    assert tone_power(during, 425) > 0.01
    assert loudest_half_second(after) < 1e-6


@pytest.mark.audio
def test_window_rings_on_the_speaker_until_declined(
    virtual_audio: VirtualAudio,
    qtbot: Any,
    qloop: asyncio.AbstractEventLoop,
    arun: Any,
    tmp_path: Path,
) -> None:
    """The whole path: an incoming call in a real window plays the ring; Decline silences it."""
    settings = Settings(tmp_path / "settings.json")
    settings.set("audio.output", "pulse")
    bob = MainWindow(
        settings,
        History(tmp_path / "history.json"),
        media=callsetup.synthetic_media,  # the call itself needs no sound card...
        loopback=True,
        ring_audio=True,  # ...but the ring goes to the (virtual) speaker
    )
    qtbot.addWidget(bob)
    caller = CallSession(CallOptions(loopback_candidates=True))
    a, b = memory_pair()
    mic = MicrophoneTrack("pulse")  # hears the speaker's monitor
    try:
        before = arun(record(mic, 10))
        with qtbot.waitSignal(bob.adapter.incomingCall, timeout=10_000):
            bob.wait_for_call(b, "alice")
            dialing = asyncio.ensure_future(caller.dial(a))
        qtbot.waitUntil(bob.ringer.is_ringing, timeout=15_000)
        during = arun(record_until(mic, ringing=True, limit=CADENCE))
        bob.decline_button.click()
        qtbot.waitUntil(lambda: not bob.ringer.is_ringing(), timeout=15_000)
        arun(record_until(mic, ringing=False, limit=CADENCE))  # what was queued drains
        after = arun(record(mic, CADENCE + HALF_SECOND))  # a whole ring period of silence
        qtbot.waitUntil(dialing.done, timeout=10_000)
        assert dialing.exception() is not None  # the caller's dial ends: declined
    finally:
        mic.stop()
        arun(caller.hangup())
        arun(bob.shutdown())
    assert tone_power(before, 425) < 1e-6
    assert tone_power(during, 425) > 0.01
    assert loudest_half_second(after) < 1e-6
    assert bob.history.records[-1].outcome == "declined"


def test_ring_rate_is_the_media_rate() -> None:
    from app.media.base import AUDIO_RATE
    from app.ui import ring

    assert ring.AUDIO_RATE == AUDIO_RATE
