"""Turning settings into engine objects: call options, media sources and sinks (no Qt here)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import MediaError
from app.iceservers import IceServer
from app.session import CallOptions, CallSession
from app.settings import Settings

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


def call_options(settings: Settings, *, loopback: bool = False) -> CallOptions:
    """CallOptions from the settings; ``loopback`` adds 127.0.0.1 candidates (same machine)."""
    return CallOptions(
        ice_servers=ice_servers(settings),
        relay_only=bool(settings["relay_only"]),
        loopback_candidates=loopback,
        gather_timeout=float(settings["gather_timeout"]),
        video=bool(settings["video.enabled"]),
    )


def block_level(samples: Any) -> float:
    """Peak level 0..1 of an int16 block (for the input level meter)."""
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


def synthetic_media() -> CallMedia:
    """Silence out, nothing played: for machines without a sound card and for tests."""
    from app.media.synthetic import NullSink, SilenceTrack

    return CallMedia(audio_source=SilenceTrack(), audio_sink=NullSink())


def new_session(options: CallOptions, media: CallMedia) -> CallSession:
    return CallSession(
        options,
        audio_source=media.audio_source,
        audio_sink=media.audio_sink,
        video_source=media.video_source,
        video_sink=media.video_sink,
    )
