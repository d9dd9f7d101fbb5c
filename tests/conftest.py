"""Suite-wide fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import pytest

from tests.audio import VirtualAudio, virtual_audio_env

# Qt must never try to open a display in tests.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# `peercall call` records its calls in the per-user history (platformdirs follows XDG): tests
# and the processes they start write into a throw-away directory, never the real one.
_CONFIG_HOME = tempfile.mkdtemp(prefix="peercall-test-config-")
os.environ.setdefault("XDG_CONFIG_HOME", _CONFIG_HOME)
atexit.register(shutil.rmtree, _CONFIG_HOME, True)


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now on ``host`` (for servers that need a number)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


@pytest.fixture
def tcp_port() -> int:
    return free_port(socket.SOCK_STREAM)


# --- Virtual sound card (media) -------------------------------------------------------------
@pytest.fixture(scope="session")
def virtual_audio() -> Iterator[VirtualAudio]:
    """A private PulseAudio server for the whole session; mark tests that use it ``audio``.

    Offers the null sink ``vspeaker`` (default sink) whose monitor ``vspeaker.monitor`` is the
    default source, so a ``MicrophoneTrack`` hears what a ``SpeakerSink`` plays; and the silent
    null source ``vmic``. ``os.environ`` gets ``PULSE_SERVER``/``XDG_RUNTIME_DIR`` (subprocesses
    inherit them) and PortAudio is restarted so sounddevice lists the ALSA ``pulse`` device.
    ``virtual_audio.pactl(...)`` runs pactl against it. See tests/audio.py.
    """
    with virtual_audio_env() as server:
        yield server
