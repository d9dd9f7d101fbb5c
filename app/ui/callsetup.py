"""Turning settings into engine objects: call options, media sources and sinks (no Qt here)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.errors import MediaError
from app.iceservers import IceServer
from app.settings import Settings

if TYPE_CHECKING:  # aiortc, PyAV and numpy load on the first call, not at start-up (12, bench)
    from app.call.session import CallOptions, CallSession

logger = logging.getLogger(__name__)

LevelHook = Callable[[float], None]


def ice_servers(settings: Settings) -> tuple[IceServer, ...]:
    """The configured ICE servers as engine objects (validated when they were saved)."""
    return tuple(
        IceServer(
            urls=tuple(entry["urls"]),
            username=entry.get("username") or None,
            credential=entry.get("credential") or None,
        )
        for entry in settings["ice_servers"]
    )


def call_options(
    settings: Settings, *, loopback: bool = False, video: bool | None = None
) -> CallOptions:
    """CallOptions from the settings; ``loopback`` adds 127.0.0.1 candidates (same machine).

    ``video`` negotiates a video stream both ways; the window always does (issue 12.4) so the
    camera can be switched on mid-call without renegotiating: while it is off the sender
    gates frames to black, as WebRTC does for a disabled track.
    """
    from app.call.session import CallOptions

    return CallOptions(
        ice_servers=ice_servers(settings),
        relay_only=bool(settings["relay_only"]),
        loopback_candidates=loopback,
        gather_timeout=float(settings["gather_timeout"]),
        video=bool(settings["video.enabled"]) if video is None else video,
    )


def block_level(samples: Any) -> float:
    """Peak level 0..1 of an int16 block (for the input level meter)."""
    import numpy as np

    array = np.asarray(samples)
    if array.size == 0:
        return 0.0
    return float(np.abs(array.astype(np.int32)).max()) / 32768.0


@dataclass
class CallMedia:
    """What one call sends and where the remote media goes."""

    audio_source: Any = None
    audio_sink: Any = None
    video_source: Any = None
    video_sink: Any = None


MediaFactory = Callable[[], CallMedia]


class _LevelTrack:
    """The remote audio on its way to the sink, peak-metered (duck-typed MediaStreamTrack:
    everything but ``recv`` goes to the wrapped track)."""

    def __init__(self, track: Any, sink: LevelSink) -> None:
        self._track = track
        self._sink = sink

    async def recv(self) -> Any:
        frame = await self._track.recv()
        self._sink.feed(frame)
        return frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._track, name)


class LevelSink:
    """Wraps the remote-audio sink and keeps the peak level of what it plays, for the debug
    panel's "audio level" (W3C audioLevel: 0..1 linear, 1.0 = full scale). aiortc reports no
    audio level, so it is measured here: every 5th 20 ms frame, the peak since the last read.
    """

    EVERY = 5

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._peak: float | None = None
        self._count = 0

    async def start(self, track: Any) -> None:
        await self.sink.start(_LevelTrack(track, self))

    async def stop(self) -> None:
        await self.sink.stop()

    def feed(self, frame: Any) -> None:
        self._count += 1
        if self._count % self.EVERY:
            return
        import numpy as np

        samples = np.asarray(frame.to_ndarray())
        if samples.size == 0:
            return
        if samples.dtype.kind == "f":
            level = float(np.abs(samples).max())
        else:
            level = float(np.abs(samples.astype(np.int32)).max()) / 32768.0
        self._peak = level if self._peak is None else max(self._peak, level)

    def read(self) -> float | None:
        """The peak since the last read (None before any audio), then start over."""
        peak, self._peak = self._peak, None
        return peak


def device_media(settings: Settings, on_level: LevelHook | None = None) -> CallMedia:
    """Microphone and speaker from the settings (raises MediaError with one line if absent)."""
    from app.media.audio import MicrophoneTrack, SpeakerSink

    hook = None
    if on_level is not None:
        level_hook = on_level

        def hook(samples: Any, at: float) -> None:
            level_hook(block_level(samples))

    from app.audio_processing import (
        disable_system_echo_cancel,
        enable_system_echo_cancel,
        from_settings,
    )

    # Echo cancellation by the sound server: set up before the streams open (they pick their
    # PulseAudio source/sink when they open). A failure costs the canceller, not the call.
    try:
        if settings["audio.echo_cancel"]:
            enable_system_echo_cancel()
        else:
            disable_system_echo_cancel()
    except MediaError as exc:
        logger.warning("%s; calling without it", exc)
    # Noise suppression / auto gain (webrtc-noise-gain) when the settings ask for it.
    source: Any = MicrophoneTrack(
        settings["audio.input"] or None, on_block=hook, process=from_settings(settings)
    )
    sink = SpeakerSink(settings["audio.output"] or None)
    return CallMedia(audio_source=source, audio_sink=sink)


VIDEO_SIZE = (640, 480)
VIDEO_FPS = 30


def video_source(camera: str, *, fps: int = VIDEO_FPS) -> Any:
    """The chosen camera, the first one found, or the test pattern when there is none.

    The settings promise the test pattern without a camera ("No camera found: calls send the
    test pattern"), so a machine without one still shows the other side moving video.
    """
    from app.media.video import CameraTrack, TestPatternTrack, list_cameras

    width, height = VIDEO_SIZE
    if camera or list_cameras():
        try:
            return CameraTrack(camera or None, width=width, height=height, fps=fps)
        except MediaError as exc:
            logger.warning("%s; sending the test pattern instead", exc)
    return TestPatternTrack(width, height, float(fps))


class PreviewTap:
    """Passes a video source's frames through and keeps the newest for the self-view.

    A MediaStreamTrack in duck type (kind, readyState, recv, stop) so the session can send it;
    the RGB conversion happens only when the view asks (at its paint rate, not per frame).
    """

    kind = "video"

    def __init__(self, source: Any) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        self.source = source
        self._latest: Any = None
        self._rgb: Any = None
        self.frames = 0
        # aiortc's sender wants a real track object: wrap ourselves in one.
        tap = self

        class _Track(MediaStreamTrack):
            kind = "video"

            async def recv(self) -> Any:
                frame = await tap.source.recv()
                tap._latest, tap._rgb = frame, None
                tap.frames += 1
                return frame

            def stop(self) -> None:
                super().stop()
                tap.source.stop()

        self.track = _Track()

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of what we send."""
        f = self._latest
        return None if f is None else (f.width, f.height)

    def latest_rgb(self) -> Any:
        if self._latest is None:
            return None
        if self._rgb is None:
            import numpy as np

            self._rgb = np.asarray(self._latest.to_ndarray(format="rgb24"), dtype=np.uint8)
        return self._rgb


def with_video(media: CallMedia, camera: str) -> tuple[CallMedia, PreviewTap, Any]:
    """``media`` plus a camera (or test pattern) source with a self-view tap and a sink that
    keeps the remote's newest frame; returns (media, tap, sink)."""
    from app.media.video import LatestFrameSink

    tap = PreviewTap(video_source(camera))
    sink = LatestFrameSink()
    media.video_source = tap.track
    media.video_sink = sink
    return media, tap, sink


class NamedChannel:
    """A SignalingChannel that carries display names: ours goes into the offer or answer we
    send, the peer's is read from theirs (or from the room's presence), so the ring, the chat
    and the history can say who it is (issue 12.8). Everything else is the wrapped channel."""

    def __init__(self, inner: Any, name: str) -> None:
        self.inner = inner
        # What the wire accepts (signaling.messages: printable, at most 64 characters).
        clean = "".join(c for c in name if c.isprintable()).strip()[:64]
        self.name = clean or None
        self._peer_name: str | None = None

    @property
    def supports_trickle(self) -> bool:
        return bool(self.inner.supports_trickle)

    @property
    def peer_name(self) -> str | None:
        """The other person's display name, once known."""
        return self._peer_name or getattr(self.inner, "peer_name", None) or None

    async def connect(self) -> None:
        await self.inner.connect()

    async def send(self, message: Any) -> None:
        from signaling.messages import Answer, Offer

        if isinstance(message, Offer | Answer) and message.name is None and self.name:
            message = type(message)(message.sdp, self.name)
        await self.inner.send(message)

    async def receive(self) -> Any:
        from signaling.messages import Answer, Offer

        message = await self.inner.receive()
        if isinstance(message, Offer | Answer) and message.name:
            self._peer_name = message.name
        return message

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:  # ice_servers, wait_for_peer, presence, ...
        return getattr(self.inner, name)


def pulse_device_names() -> dict[str, str]:
    """What PortAudio's ``pulse``/``default`` devices really are: the sound server's default
    sink and source descriptions ("Built-in Audio Analog Stereo"), by kind (issue 12.11).

    Empty when PulseAudio/PipeWire's pactl is missing or does not answer within 2 s.
    """
    import json
    import shutil
    import subprocess

    if shutil.which("pactl") is None:
        return {}
    names: dict[str, str] = {}
    for kind, listing, default in (
        ("output", "sinks", "get-default-sink"),
        ("input", "sources", "get-default-source"),
    ):
        try:
            chosen = subprocess.run(
                ["pactl", default], capture_output=True, text=True, timeout=2, check=True
            ).stdout.strip()
            found = json.loads(
                subprocess.run(
                    ["pactl", "-f", "json", "list", listing],
                    capture_output=True,
                    text=True,
                    timeout=2,
                    check=True,
                ).stdout
            )
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
        for device in found if isinstance(found, list) else []:
            if isinstance(device, dict) and device.get("name") == chosen:
                names[kind] = str(device.get("description") or chosen)
    return names


def synthetic_media() -> CallMedia:
    """Silence out, nothing played: for machines without a sound card and for tests."""
    from app.media.synthetic import NullSink, SilenceTrack

    return CallMedia(audio_source=SilenceTrack(), audio_sink=NullSink())


def new_session(options: CallOptions, media: CallMedia) -> CallSession:
    from app.call.session import CallSession

    return CallSession(
        options,
        audio_source=media.audio_source,
        audio_sink=media.audio_sink,
        video_source=media.video_source,
        video_sink=media.video_sink,
    )
