"""`peercall devices` as a user runs it: a subprocess, against the virtual sound card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.media.video import list_cameras
from tests.audio import VirtualAudio


def peercall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.audio
def test_devices_lists_the_pulse_device_both_ways(virtual_audio: VirtualAudio) -> None:
    proc = peercall("devices")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    inputs, rest = out.split("Output devices:")
    outputs, cameras = rest.split("Cameras:")
    assert inputs.startswith("Input devices:")
    for section in (inputs, outputs):
        assert "pulse  [ALSA, 32 ch," in section
        assert "*" in section  # the default is marked
    if not list_cameras():
        assert "(none)" in cameras
    for camera in list_cameras():
        assert camera.path in cameras


@pytest.mark.audio
def test_devices_json(virtual_audio: VirtualAudio) -> None:
    proc = peercall("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    names = [d["name"] for d in report["input"]]
    assert "pulse" in names
    pulse = report["output"][names.index("pulse")]
    assert set(pulse) >= {"index", "name", "hostapi", "max_output_channels", "default_samplerate"}
    assert [c["path"] for c in report["cameras"]] == [c.path for c in list_cameras()]


def test_missing_portaudio_is_a_one_line_error() -> None:
    """Simulates a machine without libportaudio2: sounddevice's real import path then fails."""
    code = (
        "import ctypes.util, sys\n"
        "ctypes.util.find_library = lambda name: None\n"
        "from app.cli import main\n"
        "sys.exit(main(['devices']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "peercall: error: audio is unavailable: PortAudio library not found (install libportaudio2"
    )
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
