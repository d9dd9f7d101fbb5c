"""Real ``peercall call`` processes in lab hosts, and what a person would check about them.

Each side sends a tone (``--send-tone``) and records what arrives (``--record``); the WAV is read
while the call runs, so "media flows" means: the peer's tone is arriving now. The recording
only grows while RTP arrives (no packets, no frames), which is what makes it a clock of media.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.media.analysis import DEFAULT_THRESHOLD, tone_power
from app.media.base import AUDIO_RATE
from tests.netlab.lab import Host, Lab

WAV_HEADER = 44  # Python's wave module writes the plain 44-byte PCM header
BLOCK = AUDIO_RATE // 50  # 20 ms, one Opus frame
TONES = (440.0, 1000.0)  # caller's and answerer's tone: each must arrive at the other

# "path direct (host <-> srflx) over UDP: …", "path via relay turn:… (ours) over TCP: …",
# "path via the other person's relay over UDP: …" (app/call/iceview.describe_path).
_PATH = re.compile(r"^peercall: path (?P<how>.*)$", re.MULTILINE)


@dataclass
class Caller:
    """One running ``peercall call`` in a lab host."""

    lab: Lab
    host: Host
    tone: float
    wav: Path
    export: Path
    log: Path
    proc: Any
    started: float  # time.monotonic() at launch

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        """The first match of ``pattern`` in the output, waiting up to ``timeout`` s for it."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output())
            if match or time.monotonic() > deadline or self.proc.poll() is not None:
                return match or re.search(pattern, self.output())
            time.sleep(0.05)

    def paths(self) -> list[str]:
        """Every path line so far, without "peercall: path ": "direct (host <-> srflx) …"."""
        return [m.group("how") for m in _PATH.finditer(self.output())]

    def samples(self) -> npt.NDArray[np.int16]:
        """What has been recorded so far (the WAV is written as frames arrive)."""
        try:
            data = self.wav.read_bytes()[WAV_HEADER:]
        except FileNotFoundError:
            return np.zeros(0, dtype=np.int16)
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")

    def exported(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.export.read_text())
        return data

    def stop(self) -> int | None:
        """Hang up as Ctrl-C does (SIGTERM) and return the exit code."""
        return self.lab.stop(self.proc, grace=10)


@functools.cache
def _call_options() -> frozenset[str]:
    """The options ``peercall call`` has in this checkout (the CLI grows as issue 15 lands)."""
    from app import call_cli

    parser = argparse.ArgumentParser()
    call_cli.configure_parser(parser)
    return frozenset(o for action in parser._actions for o in action.option_strings)


def tone_seconds(samples: npt.ArrayLike, freq: float) -> float:
    """Seconds of ``samples`` (in 20 ms blocks) in which a ``freq`` Hz tone is clearly present."""
    x = np.asarray(samples)
    blocks = len(x) // BLOCK
    heard = sum(
        tone_power(x[i * BLOCK : (i + 1) * BLOCK], freq) >= DEFAULT_THRESHOLD for i in range(blocks)
    )
    return heard * BLOCK / AUDIO_RATE


def start_call(
    lab: Lab,
    host: Host,
    workdir: Path,
    *,
    server: str,
    room: str,
    answer: bool,
    tone: float,
    ice_servers: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Caller:
    """``peercall call --server … --send-tone … --record …`` in ``host``; hangs up on SIGTERM."""
    name = f"{host.label}-{'answer' if answer else 'dial'}"
    wav, export, log = (workdir / f"{name}.{ext}" for ext in ("wav", "json", "log"))
    argv = [
        sys.executable, "-m", "app.cli", "-v", "call",
        "--server", server, "--room", room, "--secret", "lab",
        "--send-tone", str(tone), "--record", str(wav), "--no-devices",
        "--duration", "600",  # the test ends the call (SIGTERM), not a timer
        "--export", str(export),
    ]  # fmt: skip
    if answer:
        argv.append("--answer")
        if "--auto-answer" in _call_options():
            argv.append("--auto-answer")  # an answering CLI that rings would wait on stdin
    for spec in ice_servers:
        argv += ["--ice-server", spec]
    argv += extra
    started = time.monotonic()
    proc = lab.popen(host, argv, log=log)
    return Caller(lab, host, tone, wav, export, log, proc, started)


def start_pair(
    lab: Lab,
    a: Host,
    b: Host,
    workdir: Path,
    *,
    server: str,
    ice_a: Sequence[str] = (),
    ice_b: Sequence[str] = (),
    room: str = "lab",
    extra: Sequence[str] = (),
) -> tuple[Caller, Caller]:
    """``a`` answers, ``b`` dials, in one room; ``a`` sends TONES[0], ``b`` TONES[1]."""
    answerer = start_call(
        lab, a, workdir, server=server, room=room, answer=True, tone=TONES[0], ice_servers=ice_a,
        extra=extra,
    )  # fmt: skip
    dialer = start_call(
        lab, b, workdir, server=server, room=room, answer=False, tone=TONES[1], ice_servers=ice_b,
        extra=extra,
    )  # fmt: skip
    return answerer, dialer


def heard(receiver: Caller, sender: Caller, since: int = 0) -> float:
    """Seconds of ``sender``'s tone in ``receiver``'s recording after sample ``since``."""
    return tone_seconds(receiver.samples()[since:], sender.tone)


def wait_media(
    receiver: Caller, sender: Caller, *, since: int = 0, seconds: float = 1.0, timeout: float = 30
) -> float | None:
    """Wait until ``receiver`` has recorded ``seconds`` of ``sender``'s tone after ``since``.

    Returns the time.monotonic() when the tone first appeared after ``since`` (polled every
    20 ms, so the figure is that precise), or None if it did not within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    first: float | None = None
    while time.monotonic() < deadline:
        got = heard(receiver, sender, since)
        if got > 0 and first is None:
            first = time.monotonic()
        if got >= seconds:
            return first
        if receiver.proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None


def wait_both(a: Caller, b: Caller, *, since: tuple[int, int] = (0, 0), **kw: Any) -> bool:
    """Media both ways: ``a`` hears ``b`` and ``b`` hears ``a`` (see :func:`wait_media`)."""
    return (
        wait_media(a, b, since=since[0], **kw) is not None
        and wait_media(b, a, since=since[1], **kw) is not None
    )
