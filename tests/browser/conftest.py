"""Fixtures for the browser tests: a loopback-only namespace, Chromium in it, real processes.

Every peer runs inside one private network namespace (see lab.py): ``peercall signal`` serves
the page, ``peercall relay`` relays, headless Chromium loads the page, ``peercall call`` is the
desktop. Namespaces are private, so fixed ports never clash with other engineers' tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests import chromium
from tests.browser.lab import LoopbackNamespace, can_create

REPO = Path(__file__).resolve().parents[2]
SIGNAL_PORT = 8765
RELAY_PORT = 3478
RELAY_PORTS = (49152, 49200)
TURN_SECRET = "browser-test-secret"
# What Chromium's fake microphone plays (--use-file-for-fake-audio-capture): a steady sine
# is what the desktop's recording is checked for. Its built-in fake device plays short
# unipolar square-wave beeps twice a second, whose spectrum (after Opus) peaks anywhere
# between 60 and 350 Hz: too vague to assert on.
BROWSER_TONE = 660.0
DESKTOP_TONE = 1000.0


def _skip_reason() -> str | None:
    if not chromium.available():
        return "chromium is not installed"
    if not can_create():
        return "needs root and iproute2 for a private network namespace"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "tests/browser/" in item.nodeid and "lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.interop)
            item.add_marker(pytest.mark.netns)
            item.add_marker(pytest.mark.slow)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def write_tone(path: Path, freq: float, seconds: float = 10.0, rate: int = 48000) -> Path:
    """A 16-bit mono WAV of a -12 dBFS sine (Chromium loops it)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.25 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def lab() -> Iterator[LoopbackNamespace]:
    with LoopbackNamespace() as ns:
        yield ns


@pytest.fixture(scope="module")
def browser(
    lab: LoopbackNamespace, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[chromium.Chromium]:
    tone = write_tone(tmp_path_factory.mktemp("fake-mic") / "tone.wav", BROWSER_TONE)
    with chromium.Chromium(
        f"--use-file-for-fake-audio-capture={tone}",
        prefix=lab.prefix,
        connect_tcp=lab.connect_tcp,
    ) as process:
        yield process


@pytest.fixture
async def devtools(browser: chromium.Chromium) -> AsyncIterator[chromium.DevTools]:
    async with browser.devtools() as tools:
        yield tools


class Process:
    """A PeerCall command run inside the namespace, its output collected line by line."""

    def __init__(self, lab: LoopbackNamespace, log: Path, *args: str) -> None:
        self.log = log
        self.args = args
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*lab.prefix, sys.executable, "-m", "app.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_line(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        """Block until a line matching ``pattern`` was printed (for start-up)."""
        deadline = time.monotonic() + within
        while (found := re.search(pattern, self.output(), re.MULTILINE)) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} from {self.args[0]}:\n{self.output()}")
            time.sleep(0.05)
        return found

    async def until(self, pattern: str, within: float = 30.0) -> re.Match[str]:
        """Wait (without blocking the loop) for a line matching ``pattern``."""
        deadline = time.monotonic() + within
        while (found := re.search(pattern, self.output(), re.MULTILINE)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} from {self.args[0]}:\n{self.output()}")
            await asyncio.sleep(0.1)
        return found

    async def finished(self, within: float = 60.0) -> int:
        return await asyncio.to_thread(self.proc.wait, within)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(lab: LoopbackNamespace, log: Path, *args: str, ready: str) -> Iterator[Process]:
    process = Process(lab, log, *args)
    try:
        process.wait_line(ready)
        yield process
    finally:
        process.stop()


@pytest.fixture
def signal_server(lab: LoopbackNamespace, tmp_path: Path) -> Iterator[Process]:
    """``peercall signal`` on the namespace's 127.0.0.1:8765, with no TURN."""
    with running(
        lab, tmp_path / "signal.log", "signal", "--port", str(SIGNAL_PORT), ready=r"^ready"
    ) as process:
        yield process


PAGE = f"http://127.0.0.1:{SIGNAL_PORT}/"
SERVER = f"ws://127.0.0.1:{SIGNAL_PORT}"
