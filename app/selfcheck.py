"""``peercall --self-check``: prove an installation works, one timed line per step.

Run after installing (bundle, pipx, or from source) and in CI on the built bundle. The steps
are the parts of a call that break when something is missing from an install: Qt and its
platform plugin (a window is opened, offscreen when there is no display), PortAudio (devices
are listed; having none is reported, not fatal, unless ``--require-audio``), the embedded
STUN/TURN relay (started on 127.0.0.1, random port, a generated user), and a relay-only
loopback call between two :class:`~app.call.session.CallSession` objects carrying a tone whose
arrival is checked on the received audio. Everything is then stopped; the exit code is 0 when
every step passed and 1 naming the first failed step.

Qt is loaded with :func:`importlib.import_module` inside the Qt step, the way ``app.cli``
loads ``app.ui.main``: checking that an install can open a window is this tool's job, while the
engine itself never depends on Qt (DESIGN.md's layering).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

logger = logging.getLogger(__name__)

TONE_HZ = 440.0
TONE_AMPLITUDE = 0.3
# A 0.3-amplitude tone has power 0.045 (see app.media.analysis); Opus keeps it well above this.
TONE_MIN_POWER = 0.005
CONNECT_TIMEOUT = 20.0


class StepFailed(Exception):
    """A self-check step found a problem; ``str(e)`` says what, in one line."""


@dataclass
class StepResult:
    """What one step reported: its name, verdict, duration and a one-line detail."""

    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class Report:
    """Prints each step as it finishes and keeps the results for the exit code."""

    out: TextIO
    results: list[StepResult] = field(default_factory=list)

    def marks(self) -> tuple[str, str]:
        """✓/✗ when the output encoding can show them, else OK/FAIL (a bare C locale)."""
        try:
            "✓✗".encode(self.out.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            return "OK", "FAIL"
        return "✓", "✗"

    def add(self, result: StepResult) -> None:
        self.results.append(result)
        good, bad = self.marks()
        mark = good if result.ok else bad
        print(
            f"{mark} {result.name:<14} {result.seconds:6.2f} s  {result.detail}",
            file=self.out,
            flush=True,
        )

    @property
    def failed(self) -> StepResult | None:
        return next((r for r in self.results if not r.ok), None)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--require-audio",
        action="store_true",
        help="fail when no audio input and output device is found (default: only report it)",
    )
    parser.add_argument(
        "--call-seconds",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="how long the loopback call carries its tone (default: 3)",
    )


def run(args: argparse.Namespace) -> int:
    seconds = float(args.call_seconds)
    if not 0.5 <= seconds <= 60:
        from app.errors import ConfigError

        raise ConfigError(f"--call-seconds must be between 0.5 and 60, got {seconds:g}")
    report = Report(sys.stdout)
    checker = SelfCheck(report, require_audio=bool(args.require_audio), call_seconds=seconds)
    return checker.run()


class SelfCheck:
    """The steps, run in order; a failed step stops the ones that depend on it."""

    def __init__(self, report: Report, *, require_audio: bool, call_seconds: float) -> None:
        self.report = report
        self.require_audio = require_audio
        self.call_seconds = call_seconds
        self._qt_app: Any = None

    def _step(self, name: str, action: Callable[[], str]) -> bool:
        start = time.monotonic()
        try:
            outcome: str | Exception = action()
        except Exception as exc:  # a self-check reports every failure, whatever its type
            outcome = exc
        return self._record(name, start, outcome)

    async def _astep(self, name: str, action: Callable[[], Awaitable[str]]) -> bool:
        start = time.monotonic()
        try:
            outcome: str | Exception = await action()
        except Exception as exc:
            outcome = exc
        return self._record(name, start, outcome)

    def _record(self, name: str, start: float, outcome: str | Exception) -> bool:
        """Print one step's line: its detail string, or the one-line form of its exception."""
        if isinstance(outcome, StepFailed):
            detail = str(outcome)
        elif isinstance(outcome, Exception):
            logger.debug("self-check step %s failed", name, exc_info=outcome)
            detail = f"{type(outcome).__name__}: {outcome}"
        else:
            detail = outcome
        ok = isinstance(outcome, str)
        self.report.add(StepResult(name, ok, time.monotonic() - start, detail))
        return ok

    def run(self) -> int:
        total = time.monotonic()
        from app import __version__

        print(f"peercall {__version__} self-check (Python {sys.version.split()[0]})", flush=True)
        # The three groups are independent: run them all so one report names every problem.
        self._step("qt window", self.check_qt)
        self._step("audio devices", self.check_audio)
        asyncio.run(self._network_steps())
        failed = self.report.failed
        elapsed = time.monotonic() - total
        if failed is not None:
            print(f"self-check failed at step '{failed.name}' ({elapsed:.2f} s)", flush=True)
            return 1
        print(f"self-check passed: {len(self.report.results)} steps in {elapsed:.2f} s", flush=True)
        return 0

    # -- Qt ------------------------------------------------------------------------------

    def check_qt(self) -> str:
        """Open a real top-level window and paint it (offscreen when there is no display)."""
        has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        if not has_display and not os.environ.get("QT_QPA_PLATFORM"):
            # With no display Qt would abort the process on the xcb plugin: stay offscreen.
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        qt_core = importlib.import_module("PySide6.QtCore")
        qt_widgets = importlib.import_module("PySide6.QtWidgets")
        # The GUI's own modules (pyqtgraph, the main window) must import too: a bundle that
        # forgot one of them would open this window and still fail on `peercall gui`.
        importlib.import_module("app.ui.mainwindow")
        app = qt_widgets.QApplication.instance() or qt_widgets.QApplication(["peercall"])
        self._qt_app = app
        window = qt_widgets.QWidget()
        window.setWindowTitle("PeerCall self-check")
        layout = qt_widgets.QVBoxLayout(window)
        layout.addWidget(qt_widgets.QLabel("PeerCall self-check"))
        window.resize(320, 120)
        window.show()
        app.processEvents()
        if not window.isVisible():
            raise StepFailed("the window did not become visible")
        pixmap = window.grab()
        if pixmap.isNull():
            raise StepFailed("the window could not be painted")
        window.close()
        app.processEvents()
        platform = app.platformName()
        return (
            f"window shown and painted {pixmap.width()}x{pixmap.height()} "
            f"(Qt {qt_core.qVersion()}, platform {platform})"
        )

    # -- audio ---------------------------------------------------------------------------

    def check_audio(self) -> str:
        """List PortAudio's devices; PortAudio itself must load."""
        from app.errors import MediaError
        from app.media.devices import list_audio_devices

        try:
            devices = list_audio_devices()
        except MediaError as exc:
            raise StepFailed(str(exc)) from None
        inputs = [d for d in devices if d.supports("input")]
        outputs = [d for d in devices if d.supports("output")]
        summary = f"{len(inputs)} input, {len(outputs)} output device(s)"
        if not inputs or not outputs:
            if self.require_audio:
                raise StepFailed(f"{summary}: --require-audio needs at least one of each")
            return f"{summary} (calls can still send a tone or a WAV file)"
        default = next((d.name for d in inputs if d.is_default_input), inputs[0].name)
        return f"{summary}; default input {default!r}"

    # -- relay and call ------------------------------------------------------------------

    async def _network_steps(self) -> None:
        from nat.service import RelayServer

        relay: RelayServer | None = None
        user = f"selfcheck-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(16)
        started = False

        async def start_relay() -> str:
            nonlocal relay, started
            relay = self._relay(user, password)
            await relay.start()
            started = True
            return ", ".join(relay.turn_uris())

        try:
            if not await self._astep("relay", start_relay):
                return
            assert relay is not None
            uris = relay.turn_uris()

            async def call() -> str:
                uri = next((u for u in uris if u.endswith("transport=udp")), None)
                if uri is None:
                    raise StepFailed(f"the relay offers no UDP TURN address: {', '.join(uris)}")
                return await self._call(uri, user, password)

            await self._astep("call", call)
        finally:
            if started and relay is not None:
                running = relay

                async def stop() -> str:
                    await running.stop()
                    return "relay stopped"

                await self._astep("shutdown", stop)

    @staticmethod
    def _relay(user: str, password: str) -> Any:
        from nat.auth import long_term_key
        from nat.config import RelayConfig
        from nat.service import RelayServer

        realm = "peercall-selfcheck"
        config = RelayConfig(
            listening_ips=("127.0.0.1",),
            listening_port=0,
            realm=realm,
            users=((user, long_term_key(user, realm, password)),),
            # Both peers' relayed addresses are on 127.0.0.1: the relay must forward to them.
            allow_loopback_peers=True,
            no_tls=True,
        )
        return RelayServer(config)

    async def _call(self, uri: str, user: str, password: str) -> str:
        """A relay-only call through the embedded relay carrying a tone, heard at the far end."""
        from app.call.session import CallOptions, CallSession
        from app.iceservers import IceServer
        from app.media.synthetic import ToneTrack
        from signaling.memory import memory_pair

        options = CallOptions(relay_only=True, ice_servers=(IceServer((uri,), user, password),))
        sink = ToneSink()
        caller = CallSession(options, audio_source=ToneTrack(TONE_HZ, TONE_AMPLITUDE))
        callee = CallSession(options, audio_sink=sink)
        caller_channel, callee_channel = memory_pair()

        async def answer() -> None:
            offer = await callee.wait_for_offer(callee_channel)
            await callee.answer(callee_channel, offer)

        try:
            start = time.monotonic()
            try:
                await asyncio.wait_for(
                    asyncio.gather(caller.dial(caller_channel), answer()), CONNECT_TIMEOUT
                )
            except TimeoutError:
                raise StepFailed(f"not connected after {CONNECT_TIMEOUT:g} s") from None
            connect_ms = (time.monotonic() - start) * 1000
            selected = caller.selected
            if selected is None or not selected.relayed:
                raise StepFailed("connected, but not through the relay")
            sink.reset()  # count only what arrives during the measured seconds
            await asyncio.sleep(self.call_seconds)
            frames, power = sink.frames, sink.tone_power()
            expected = int(self.call_seconds * 50)  # one 20 ms frame every 20 ms
            if frames < expected // 2:
                raise StepFailed(f"only {frames} audio frames arrived in {self.call_seconds:g} s")
            if power < TONE_MIN_POWER:
                raise StepFailed(f"{frames} audio frames arrived but the tone is missing")
            return (
                f"relayed call connected in {connect_ms:.0f} ms; {frames} audio frames "
                f"({frames * 20 / 1000:.1f} s) with the {TONE_HZ:g} Hz tone at {power:.3f}"
            )
        finally:
            for session in (caller, callee):
                with contextlib.suppress(Exception):
                    await session.hangup()
            for channel in (caller_channel, callee_channel):
                with contextlib.suppress(Exception):
                    await channel.close()


class ToneSink:
    """A sink that keeps the received audio (mono, 48 kHz) to measure the tone in it."""

    def __init__(self) -> None:
        from app.media.consumer import TrackConsumer
        from app.media.convert import MonoConverter

        outer = self

        class _Consumer(TrackConsumer):
            def handle(self, frame: Any) -> None:
                outer._blocks.append(outer._converter.convert(frame))

        self._consumer = _Consumer()
        self._converter = MonoConverter()
        self._blocks: list[Any] = []
        self._frames_at_reset = 0

    async def start(self, track: Any) -> None:
        await self._consumer.start(track)

    async def stop(self) -> None:
        await self._consumer.stop()

    def reset(self) -> None:
        self._blocks.clear()
        self._frames_at_reset = self._consumer.frames

    @property
    def frames(self) -> int:
        return self._consumer.frames - self._frames_at_reset

    def tone_power(self) -> float:
        import numpy as np

        from app.media.analysis import tone_power

        if not self._blocks:
            return 0.0
        return tone_power(np.concatenate(self._blocks), TONE_HZ)
